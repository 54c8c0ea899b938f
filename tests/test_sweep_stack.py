"""The capacity sweep on the real embedded stack: the prediction holds past the knee.

Two shortened runs of scenarios/capacity-sweep.toml (rules engine tuned to 8 ms of CPU per
request): one up to the knee, one extended past it. The saturation throughput the first
report predicts must be within 20% of the highest throughput the second one measured, and
both must name the tuned stand-in as the first bottleneck.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, SCENARIOS, write_scenario

from capacity.stack.supervisor import StackState
from capacity.stack.tuning import DEFAULT_TUNING

pytestmark = [pytest.mark.stack, pytest.mark.slow]

HOLD_S = 14
TO_THE_KNEE = [2, 4, 8, 12, 16]
PAST_THE_KNEE = [4, 8, 16, 24, 32]
STAGES = re.compile(r"(\[\[load\.stages\]\]\nusers = \d+\nduration_s = \d+\n\n?)+")


def stages_block(users: list[int]) -> str:
    return "".join(f"[[load.stages]]\nusers = {n}\nduration_s = {HOLD_S}\n\n" for n in users)


def run_sweep(tmp: Path, state: StackState, users: list[int]) -> dict[str, Any]:
    """Run the shipped sweep with other steps; return the run's summary."""
    original = (SCENARIOS / "capacity-sweep.toml").read_text(encoding="utf-8")
    found = STAGES.search(original)
    assert found, "capacity-sweep.toml has no [[load.stages]] block"
    scenario = write_scenario(
        tmp / "s", "capacity-sweep.toml", state, replace={found.group(0): stages_block(users)}
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "capacity",
            "run",
            str(scenario),
            "--reports",
            str(tmp / "reports"),
            "--state-dir",
            str(state.state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO_ROOT,
    )
    report = Path(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    assert report is not None and report.is_file(), proc.stderr[-3000:]
    return json.loads((report.parent / "summary.json").read_text())


def reset_rules_engine(state: StackState) -> None:
    """Put the rules engine's knobs back: the session stack is shared with other tests."""
    knobs = DEFAULT_TUNING["rules-engine"].as_dict("rules-engine")
    request = urllib.request.Request(
        f"{state.services['rules-engine'].url}/admin/tuning",
        data=json.dumps(knobs).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10):
        pass


@pytest.fixture(scope="module")
def sweeps(
    erp_stack: StackState, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    try:
        knee = run_sweep(tmp_path_factory.mktemp("knee"), erp_stack, TO_THE_KNEE)
        past = run_sweep(tmp_path_factory.mktemp("past"), erp_stack, PAST_THE_KNEE)
        yield knee, past
    finally:
        reset_rules_engine(erp_stack)


@pytest.mark.timeout(540)
def test_predicted_saturation_holds_past_the_knee(sweeps) -> None:
    knee, past = sweeps
    assert [s["users"] for s in knee["capacity"]["steps"]] == TO_THE_KNEE
    assert [s["users"] for s in past["capacity"]["steps"]] == PAST_THE_KNEE
    predicted_rps = knee["capacity"]["saturation"]["rps"]
    measured_rps = max(s["throughput_rps"] for s in past["capacity"]["steps"])
    print(f"predicted {predicted_rps:.1f} req/s ({knee['capacity']['saturation']['basis']}), "
          f"measured past the knee {measured_rps:.1f} req/s")  # fmt: skip
    assert predicted_rps == pytest.approx(measured_rps, rel=0.2), (
        knee["capacity"]["saturation"],
        [(s["users"], s["throughput_rps"]) for s in past["capacity"]["steps"]],
    )


@pytest.mark.timeout(540)
def test_reports_name_the_tuned_stand_in(sweeps) -> None:
    for summary in sweeps:
        cap = summary["capacity"]
        assert cap["bottleneck"]["service"] == "rules-engine", cap["bottleneck"]["reason"]
        assert cap["bottleneck"]["resource"] == "cpu"
        assert cap["headline"].endswith("first bottleneck: rules-engine's CPU.")
        demand = cap["demand"]["services"]["rules-engine"]
        # The knob burns 8 ms of CPU time per request; parsing and the rules add a little.
        assert 0.007 < demand["cpu_s_per_request"] < 0.012
