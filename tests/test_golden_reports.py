"""Reports of existing run folders keep their figures (issue 14).

`tests/data/golden/` holds schema-1 run folders as the toolkit wrote them before the streaming
analysis, with the summary that code (commit 04ee093) made of each. Today's analysis must give
the same figures: every operation's counts and percentiles, every resource statistic, the
load generators, arrivals, workers and the verdict. What changed on purpose is named here:
SLO rows carry the scenario's pattern and the sample count and use the summary's metric names
(`cpu_cores_mean`, `mem_mb_max`), and a sweep step's percentiles use the one nearest-rank
definition (`capacity.runfolder.histograms.percentile_ms`) instead of hdrh's own lookup.
The folders' warm-ups end on a slice boundary, where the old rule (a slice counts once its
midpoint is past the warm-up) and today's (once it starts after it) agree.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

from capacity.report.build import build_report

GOLDEN = REPO_ROOT / "tests" / "data" / "golden"
RENAMED = {"cpu_cores": "cpu_cores_mean", "mem_mb": "mem_mb_max"}
STEP_PERCENTILES = {"p50_ms", "p95_ms", "p99_ms", "mean_ms", "littles_law_concurrency",
                    "littles_law_ratio"}  # fmt: skip


def slo_key(row: dict[str, Any]) -> tuple[Any, ...]:
    metric = RENAMED.get(row["metric"], row["metric"])
    return (row["kind"], row["target"], metric, row["limit"], row["value"], row["passed"])


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()))
def test_figures_equal_those_of_the_earlier_code(name: str, tmp_path: Path) -> None:
    folder = tmp_path / name
    shutil.copytree(GOLDEN / name, folder)
    expected = json.loads((folder / "expected-summary.json").read_text())
    got = build_report(folder)
    for key in ("resources", "load_generators", "arrival", "workers", "verdict", "status",
                "duration_s", "steady_duration_s"):  # fmt: skip
        assert got[key] == expected[key], key
    # Every figure an operation had is unchanged; new ones (the latency basis) are additions.
    assert set(got["operations"]) == set(expected["operations"])
    for name, old in expected["operations"].items():
        assert {k: got["operations"][name][k] for k in old} == old, name
    assert sorted(got["reasons"]) == sorted(expected["reasons"])
    assert sorted(map(slo_key, got["slos"])) == sorted(map(slo_key, expected["slos"]))
    if "capacity" in expected:
        for old, new in zip(expected["capacity"]["steps"], got["capacity"]["steps"], strict=True):
            same = {k: v for k, v in old.items() if k not in STEP_PERCENTILES}
            assert {k: new[k] for k in same} == same
            # hdrh's lookup rounded the rank to the nearest count and could land a sample
            # low; the one nearest-rank definition never reads lower than it did.
            for key in ("p50_ms", "p95_ms", "p99_ms"):
                assert new[key] >= old[key] - 1e-9, key
