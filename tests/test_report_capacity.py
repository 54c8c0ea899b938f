"""`capacity report` on stepped runs: capacity section, models, projections, --compare.

The run folders are synthetic but complete (run.json, slices.jsonl, resources.csv), built
from a closed-loop queue with a known single-core service, so the expected figures follow
from the queue, not from the code under test.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO_ROOT
from hdrh.histogram import HdrHistogram
from markupsafe import escape

from capacity.cli import main
from capacity.report.build import build_report

T0 = 1_764_200_000.0
OPERATION = "rules vat"


def mva_throughput_rps(users: int, service_s: float, think_s: float) -> float:
    """Exact mean-value analysis of one single-server queue with `users` closed-loop users."""
    queue = 0.0
    throughput = 0.0
    for n in range(1, users + 1):
        response_s = service_s * (1.0 + queue)
        throughput = n / (response_s + think_s)
        queue = throughput * response_s
    return throughput


def _histogram(rng: np.random.Generator, count: int, mean_s: float) -> str:
    hist = HdrHistogram(1, 60_000_000, 3)
    for value in rng.gamma(2.0, mean_s / 2.0, count):
        hist.record_value(max(1, int(value * 1e6)))
    return base64.b64encode(hist.encode()).decode("ascii")


def write_sweep_run(
    root: Path,
    user_steps: list[int],
    *,
    name: str = "sweep",
    service_ms: float = 8.0,
    think_s: float = 0.1,
    p95_limit_ms: float = 100.0,
    hold_slices: int = 6,
    slice_s: float = 2.0,
    seed: int = 7,
) -> Path:
    """A complete run folder of a stepped run against a rules engine of `service_ms` per request."""
    rng = np.random.default_rng(seed)
    run_dir = root / name
    run_dir.mkdir(parents=True)
    service_s = service_ms / 1000.0
    slices, samples = [], []
    t = T0
    for users in user_steps:
        rps = mva_throughput_rps(users, service_s, think_s)
        response_s = users / rps - think_s
        for i in range(hold_slices):
            count = int(round(rps * slice_s * (0.5 if i == 0 else 1.0)))
            op = {
                "count": count,
                "failures": 0,
                "partial": 0,
                "hist": _histogram(rng, count, response_s),
                "errors": {},
            }
            slices.append(
                {
                    "schema": 1,
                    "t_start_s": t,
                    "t_end_s": t + slice_s,
                    "worker": "w1",
                    "users": users,
                    "ops": {OPERATION: op},
                }
            )
            for ts in np.arange(t + 1.0, t + slice_s + 0.5, 1.0):
                busy = rps * service_s * float(rng.normal(1.0, 0.02))
                samples += [
                    (ts, "process", "rules-engine", busy, 60.0 + 0.2 * users, ""),
                    (ts, "process", "gateway", 0.02, 80.0, ""),
                    (ts, "host", "host", busy + 0.3, 4000.0, ""),
                ]
            t += slice_s
    with (run_dir / "slices.jsonl").open("w") as fh:
        fh.writelines(json.dumps(s) + "\n" for s in slices)
    with (run_dir / "resources.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "ts_unix_s",
                "source",
                "target",
                "cpu_cores",
                "mem_mb",
                "mem_limit_mb",
                "cpu_throttled_s",
            ]
        )
        writer.writerows([*row, ""] for row in samples)
    meta = {
        "schema": 1,
        "run_id": name,
        "scenario": "capacity-sweep",
        "scenario_path": "",
        "started_at": "2025-11-26T22:13:20Z",
        "status": "complete",
        "warmup_s": 0.0,
        "slice_s": slice_s,
        "load_started_at": T0,
        "load": {"users": max(user_steps), "duration_s": t - T0, "stages": len(user_steps)},
        "slos": {
            "operations": [
                {"pattern": "rules *", "p95_ms": p95_limit_ms, "p99_ms": None, "error_rate": 0.01}
            ],
            "services": [],
        },
    }
    (run_dir / "run.json").write_text(json.dumps(meta))
    return run_dir


def capacity_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capacity", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


STEPS = [2, 4, 8, 12, 16, 20, 24, 32]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sweep_run(tmp_path_factory.mktemp("runs"), STEPS)


@pytest.fixture(scope="module")
def sweep_summary(sweep_dir: Path) -> dict[str, Any]:
    return build_report(sweep_dir)


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`capacity ARGS` in this process (no interpreter start-up): exit code and stderr."""
    code = main(list(args))
    return code, capsys.readouterr().err


def test_sweep_summary_has_the_capacity_answer(
    sweep_dir: Path, sweep_summary: dict[str, Any]
) -> None:
    summary = sweep_summary
    on_disk = json.loads((sweep_dir / "summary.json").read_text())
    assert on_disk == summary
    for key in ("schema", "verdict", "operations", "resources", "slos"):
        assert key in summary  # summarize's keys stay as they were
    cap = summary["capacity"]
    assert [s["users"] for s in cap["steps"]] == STEPS
    saturation_rps = 1000.0 / 8.0
    measured = max(s["throughput_rps"] for s in cap["steps"])
    assert measured == pytest.approx(mva_throughput_rps(32, 0.008, 0.1), rel=0.03)
    assert cap["usl"]["ok"]
    assert cap["usl"]["max_throughput_rps"] == pytest.approx(saturation_rps, rel=0.15)
    assert cap["bottleneck"]["service"] == "rules-engine"
    assert cap["bottleneck"]["resource"] == "cpu"
    assert cap["slo"]["pattern"] == "rules *"
    slo_cap = cap["slo_capacity"]
    assert slo_cap["interpolated"] and 8 < slo_cap["max_users"] < 32
    assert cap["throughput_knee"]["found"]
    rules = cap["demand"]["services"]["rules-engine"]
    assert rules["cpu_s_per_request"] == pytest.approx(0.008, rel=0.05)
    assert rules["mem_mb_per_user"] == pytest.approx(0.2, rel=0.05)
    head = cap["headline"]
    assert head.startswith("Holds P95 < 100 ms")
    assert f"~{slo_cap['max_users']:.0f} users / {slo_cap['max_rps']:.0f} req/s" in head
    assert head.endswith("first bottleneck: rules-engine's CPU.")
    # A think time was not known (no scenario file): the check is X R <= N only.
    assert all(s["littles_law_ok"] for s in cap["steps"])
    json.dumps(summary, allow_nan=False)  # strict JSON: no NaN or Infinity


def test_html_and_markdown_open_with_the_answer(
    sweep_dir: Path, sweep_summary: dict[str, Any]
) -> None:
    summary = sweep_summary
    head = summary["capacity"]["headline"]
    html = (sweep_dir / "report.html").read_text()
    md = (sweep_dir / "report.md").read_text()
    assert html.index(escape(head)) < html.index("Capacity model") < html.index("Service-level")
    assert md.splitlines()[4] == f"**{head}**"
    for title in (
        "Throughput against concurrency",
        "CPU per service against load",
        "Memory per service against load",
        "Latency over time",
    ):
        assert f'alt="{title}"' in html
    assert html.count('src="data:image/png;base64,') >= 8
    assert "http://" not in html and "https://" not in html  # nothing fetched: offline
    for section in (
        "## Capacity",
        "### Scalability model (USL)",
        "### Steps",
        "### Demand per service",
        "### Projection for",
    ):
        assert section in md


def test_target_rps_projection(tmp_path: Path) -> None:
    summary = build_report(write_sweep_run(tmp_path, STEPS), target_rps=500.0, headroom=0.25)
    cap = summary["capacity"]
    proj = cap["projection"]
    assert proj["target_rps"] == 500.0 and proj["headroom"] == 0.25
    rules = cap["demand"]["services"]["rules-engine"]
    needed = (rules["cpu_cores_base"] + rules["cpu_s_per_request"] * 500.0) / 0.75
    assert proj["services"]["rules-engine"]["cpu_cores_needed"] == pytest.approx(needed)
    assert proj["services"]["rules-engine"]["replicas"] == math.ceil(needed)
    assert any("fitted maximum" in w for w in proj["warnings"])


def test_three_steps_render_and_say_why_no_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = write_sweep_run(tmp_path, [4, 8, 16])
    code, err = in_process(capsys, "report", str(run_dir))
    assert code in (0, 1, 3), err
    summary = json.loads((run_dir / "summary.json").read_text())
    usl = summary["capacity"]["usl"]
    assert not usl["ok"] and "got 3" in usl["reason"]
    html = (run_dir / "report.html").read_text()
    assert 'id="model-reason"' in html and usl["reason"] in html
    assert 'alt="Throughput against concurrency"' in html
    assert f"No scalability fit: {usl['reason']}." in (run_dir / "report.md").read_text()


def test_one_stage_run_has_no_capacity_section(tmp_path: Path) -> None:
    run_dir = write_sweep_run(tmp_path, [10])
    summary = build_report(run_dir)
    assert "capacity" not in summary
    html = (run_dir / "report.html").read_text()
    assert "Capacity model" not in html and 'class="answer"' in html
    assert html.count('src="data:image/png;base64,') >= 2


def test_compare_two_runs(tmp_path: Path) -> None:
    slow = write_sweep_run(tmp_path, STEPS, name="slow", service_ms=10.0)
    fast = write_sweep_run(tmp_path, STEPS, name="fast", service_ms=8.0)
    before = (slow / "run.json").read_text()
    proc = capacity_cli("report", str(fast), "--compare", str(slow))
    assert proc.returncode in (0, 1, 3), proc.stderr
    assert not (slow / "summary.json").exists() and (slow / "run.json").read_text() == before
    this = json.loads((fast / "summary.json").read_text())
    other = build_report(slow)
    row = this["comparison"]["operations"][OPERATION]
    expected = this["operations"][OPERATION]["rps"] / other["operations"][OPERATION]["rps"] - 1
    assert row["rps"]["change_pct"] == pytest.approx(100 * expected)
    assert "better" not in row["rps"]  # one run against one run: figures, no verdict
    assert "capacity check" in this["comparison"]["note"]
    cap = this["comparison"]["capacity"]
    assert cap["max_measured_rps"]["this"] > cap["max_measured_rps"]["other"]
    assert cap["saturation_rps"]["change_pct"] == pytest.approx(25.0, rel=0.05)  # 125 vs 100 req/s
    html = (fast / "report.html").read_text()
    assert 'id="comparison"' in html and 'alt="Overlay of the two runs"' in html
    assert "## Comparison with slow" in (fast / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target-rps", "-5"], "--target-rps: expected a positive number, got -5"),
        (["--headroom", "1.5"], "--headroom: expected a fraction in [0, 1), got 1.5"),
    ],
)
def test_bad_options_exit_2(
    sweep_dir: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = in_process(capsys, "report", str(sweep_dir), *args)
    assert code == 2 and err.strip() == f"capacity: error: {message}"


def test_compare_with_itself_or_a_missing_folder_exits_2(
    sweep_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = in_process(capsys, "report", str(sweep_dir), "--compare", str(sweep_dir))
    assert code == 2 and "needs a different run folder" in err
    code, err = in_process(capsys, "report", str(sweep_dir), "--compare", str(tmp_path / "nope"))
    assert (
        code == 2 and err.strip() == f"capacity: error: {tmp_path / 'nope'}: run folder not found"
    )


def test_littles_law_uses_the_think_time_recorded_in_run_json(tmp_path: Path) -> None:
    """The report reads the think time from run.json, never from the scenario file."""
    run_dir = write_sweep_run(tmp_path / "runs", [2, 4, 8, 12], think_s=0.1)
    meta = json.loads((run_dir / "run.json").read_text())

    def with_think_time(think_s: float) -> None:
        load = {**meta.get("load", {}), "think_time_s": think_s}
        (run_dir / "run.json").write_text(json.dumps({**meta, "load": load}))

    with_think_time(0.1)
    cap = build_report(run_dir)["capacity"]
    assert cap["think_time_s"] == pytest.approx(0.1)  # the shipped sweep waits 0.05-0.15 s
    assert all(s["littles_law_ok"] for s in cap["steps"])
    with_think_time(1.0)
    cap = build_report(run_dir)["capacity"]
    assert cap["think_time_s"] == pytest.approx(1.0)
    assert not any(s["littles_law_ok"] for s in cap["steps"])
    flagged = [w for w in cap["warnings"] if w.startswith("Little's law does not hold")]
    assert len(flagged) == 4
    assert "INCONSISTENT" in (run_dir / "report.html").read_text()


def test_sweep_without_resource_samples_still_reports(tmp_path: Path) -> None:
    run_dir = write_sweep_run(tmp_path, [2, 4, 8, 12, 16])
    (run_dir / "resources.csv").unlink()
    cap = build_report(run_dir)["capacity"]
    assert cap["usl"]["ok"] and cap["bottleneck"]["service"] is None
    assert cap["headline"].endswith("no per-service resource samples to name a bottleneck.")
    assert cap["projection"] is None and cap["saturation"]["basis"] == "usl"
    html = (run_dir / "report.html").read_text()
    assert 'alt="Throughput against concurrency"' in html
    assert 'alt="CPU per service against load"' not in html


def test_stages_too_short_for_steady_steps_say_so(tmp_path: Path) -> None:
    run_dir = write_sweep_run(tmp_path, [2, 4, 8, 16], hold_slices=2)
    summary = build_report(run_dir)
    assert "capacity" not in summary
    html = (run_dir / "report.html").read_text()
    assert 'id="model-reason"' in html and "fewer than 2 steady steps" in html
    assert "fewer than 2 steady steps" in (run_dir / "report.md").read_text()
