"""`capacity find`: the search's steps on a simulated system, probe scenarios that load and
keep the user's scenario, probe judging that never blames the system for our own fault, and
(slow, real stack) an answer within 10% of the shipped sweep's in a third of its time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SCENARIOS, reset_tuning, write_scenario

from capacity.find.probe import classify, dumps_scenario, probe_scenario
from capacity.find.search import FAIL, INVALID, PASS, ProbeOutcome, SearchConfig, decide
from capacity.scenario import load_scenario
from capacity.stack.supervisor import StackState

CONFIG = SearchConfig(min_rate_per_s=10, max_rate_per_s=1000, start_rate_per_s=20)


def simulate(capacity_rps: float, config: SearchConfig = CONFIG, cpu_s_per_req: float = 0.008):
    """Run the search against a system that holds every rate up to `capacity_rps`."""
    probes: list[ProbeOutcome] = []
    decision = decide(probes, config)
    while decision.next_rate_per_s is not None:
        rate = decision.next_rate_per_s
        outcome = PASS if rate <= capacity_rps else FAIL
        cpu = {"rules-engine": min(1.0, 0.02 + cpu_s_per_req * rate), "gateway": 0.05}
        probes.append(ProbeOutcome(rate, outcome, min(rate, 1 / cpu_s_per_req), cpu))
        decision = decide(probes, config)
    return decision, probes


def test_search_brackets_by_the_measured_cpu_then_bisects_to_the_resolution() -> None:
    decision, probes = simulate(104.0)
    assert decision.status == "found"
    assert decision.lower_rps is not None and decision.upper_rps is not None
    assert decision.lower_rps <= 104.0 < decision.upper_rps
    assert decision.upper_rps / decision.lower_rps - 1 <= CONFIG.resolution
    rates = [round(p.rate_per_s, 1) for p in probes]
    # First probe at the start rate; the second aims at 90% of the CPU-predicted saturation
    # (one probe: all CPU per request, 1 / ((0.02 + 0.16) / 20) = 111/s), but grows at most
    # 4x; the third aims with the fitted line (base 0.02 cores, 8 ms per request).
    assert rates[:3] == [20.0, 80.0, pytest.approx(0.9 * 0.98 / 0.008, abs=0.2)]
    # 20, 80, 110 (fail), 95, 103, 106 (fail), then the lower bound 103 again.
    assert rates[-1] == round(decision.lower_rps, 1)
    assert sum(r == rates[-1] for r in rates) == 2
    assert len(probes) == 7


def test_a_lucky_pass_at_the_boundary_is_not_the_answer() -> None:
    """The re-probe of the lower bound fails: that rate does not hold, the search goes on."""
    probes = [
        ProbeOutcome(20, PASS, 20, {"rules-engine": 0.18}),
        ProbeOutcome(100, FAIL, 95, {"rules-engine": 0.95}),
        ProbeOutcome(60, PASS, 60, {"rules-engine": 0.5}),
        ProbeOutcome(80, PASS, 80, {"rules-engine": 0.66}),
        ProbeOutcome(88, FAIL, 86, {"rules-engine": 0.8}),
        ProbeOutcome(85, PASS, 85, {"rules-engine": 0.7}),
    ]
    assert decide(probes, CONFIG).next_rate_per_s == 85  # 85..88 is narrow: confirm 85
    probes.append(ProbeOutcome(85, FAIL, 84, {"rules-engine": 0.7}))
    decision = decide(probes, CONFIG)
    assert (decision.lower_rps, decision.upper_rps) == (80, 85)
    assert decision.next_rate_per_s == 82.5  # 85 does not hold: bisect 80..85


def test_an_invalid_probe_stops_the_search() -> None:
    probes = [
        ProbeOutcome(20, PASS, 20, {}),
        ProbeOutcome(80, INVALID, 60, {}, ("load generator locust was above 90% of a core",)),
    ]
    decision = decide(probes, CONFIG)
    assert decision.next_rate_per_s is None and decision.status == "inconclusive"
    assert decision.reason == (
        "probe at 80/s was invalid: load generator locust was above 90% of a core"
    )
    assert decision.lower_rps == 20


def test_no_failure_up_to_the_maximum_and_failure_at_the_minimum_are_inconclusive() -> None:
    small = SearchConfig(min_rate_per_s=10, max_rate_per_s=50, start_rate_per_s=10)
    decision, _ = simulate(10_000.0, small)
    assert decision.status == "inconclusive" and decision.lower_rps == 50
    assert "capacity is at least that" in decision.reason
    decision, probes = simulate(5.0, small)
    assert decision.status == "inconclusive" and decision.lower_rps is None
    assert [p.rate_per_s for p in probes] == [10]
    assert decision.reason == "the SLOs fail already at the minimum rate 10/s"


def test_max_probes_is_inconclusive_with_the_interval_so_far() -> None:
    few = SearchConfig(min_rate_per_s=10, max_rate_per_s=1000, start_rate_per_s=20, max_probes=3)
    decision, probes = simulate(104.0, few)
    assert len(probes) == 3 and decision.status == "inconclusive"
    assert decision.lower_rps is not None and decision.upper_rps is not None


def test_the_last_probe_allowed_can_finish_the_search() -> None:
    """benchmarks/bench_find.py, 2026-12-02: the 10th probe confirmed 115/s against a failure
    at 120.7/s (within 5%), and the search still said inconclusive for --max-probes."""
    rates = [(75.0, PASS), (120.7, PASS), (137.4, FAIL), (129.0, FAIL), (124.9, FAIL)]
    rates += [(120.7, FAIL), (97.8, PASS), (109.2, PASS), (115.0, PASS), (115.0, PASS)]
    probes = [ProbeOutcome(rate, outcome) for rate, outcome in rates]
    decision = decide(probes, SearchConfig(min_rate_per_s=75, max_rate_per_s=2000,
                                           start_rate_per_s=75, max_probes=10))  # fmt: skip
    assert decision.status == "found", decision.reason
    assert (decision.lower_rps, decision.upper_rps) == (115.0, 120.7)
    # one probe short of the confirmation: the budget is spent, so inconclusive
    decision = decide(probes[:-1], SearchConfig(75, 2000, 75, max_probes=9))
    assert decision.status == "inconclusive"


def test_judging_a_probe_blames_the_system_only_for_its_own_slowness() -> None:
    saturated = "load generator locust was above 90% of a core for 30% of the run (limit 10%)"
    dropped = "arrival rate not met: 50 of 800 scheduled iterations dropped (6.2% > 1%)"
    assert classify({"verdict": "pass", "reasons": []}) == (PASS, ())
    failed = [{"metric": "p95_ms", "value": 300.0, "limit": 100.0, "passed": False}]
    assert classify({"verdict": "fail", "reasons": [dropped], "slos": failed}) == (
        FAIL,
        (dropped,),
    )
    assert classify({"verdict": "fail", "reasons": [dropped, saturated], "slos": failed}) == (
        INVALID,
        (saturated,),
    )
    assert classify({"verdict": "inconclusive", "reasons": [dropped]}) == (INVALID, (dropped,))
    slow_row = {"metric": "p95_ms", "value": 900.0, "limit": 100.0, "passed": None}
    untrusted = {"verdict": "inconclusive", "reasons": [dropped], "slos": [slow_row]}
    assert classify(untrusted) == (INVALID, (dropped,))  # not marked untrusted: not broken
    untrusted["slos"] = [{**slow_row, "untrusted": True}]
    assert classify(untrusted) == (FAIL, (dropped,))
    busy = {
        "verdict": "fail",
        "reasons": [],
        "slos": [{"metric": "p95_ms", "value": 300.0, "limit": 100.0, "passed": False}],
        "resources": {
            "host": {"source": "host", "cpu_cores_mean": 1.95},
            "rules-engine": {"source": "process", "cpu_cores_mean": 0.3},
            "locust": {"source": "process", "cpu_cores_mean": 0.1},
        },
    }
    assert classify(busy, 2.0) == (
        INVALID,
        (
            "the host's CPU was saturated (1.95 of 2 cores), 1.55 cores of it by other work "
            "on this machine: the failure is partly the machine's",
        ),
    )
    busy["resources"]["rules-engine"]["cpu_cores_mean"] = 1.0  # type: ignore[index]
    busy["resources"]["locust"]["cpu_cores_mean"] = 0.8  # type: ignore[index]
    assert classify(busy, 2.0) == (FAIL, ())  # saturated by the system and the load itself


def test_a_probe_is_sized_for_its_judged_window_and_rerun_longer_only_when_short_of_samples() -> (
    None
):
    from capacity.commands.find import short_of_samples_only, steady_seconds

    # The warm-up is rounded up to a whole slice: 6 s with 1 s warm-up and 2 s slices is
    # judged on 3 s (the CI failure: a first probe sized for 5 s got too few samples).
    assert steady_seconds(6.0, 1.0, 2.0) == 3.0
    assert steady_seconds(6.0, 0.0, 2.0) == 6.0
    assert steady_seconds(2.0, 1.0, 2.0) == 1.0  # never below what is left after the warm-up
    short = "rules vat: too few samples for error_rate (need 50)"
    assert short_of_samples_only((short,))
    assert not short_of_samples_only(())
    saturated = "load generator locust was above 90% of a core for 30% of the run (limit 10%)"
    assert not short_of_samples_only((short, saturated))


def test_a_probe_scenario_keeps_the_users_slos_and_tuning(tmp_path: Path) -> None:
    source = SCENARIOS / "capacity-sweep.toml"
    text = probe_scenario(source, 87.5, duration_s=8, warmup_s=2)
    path = tmp_path / "elsewhere" / "probe.toml"
    path.parent.mkdir()
    path.write_text(text)
    probe = load_scenario(path)
    original = load_scenario(source)
    assert [(s.rate_per_s, s.duration_s) for s in probe.load.arrival] == [(87.5, 8.0)]
    assert probe.load.warmup_s == 2.0 and probe.load.stages == () and probe.load.max_users == 50
    assert probe.name == original.name and probe.users["rules"].rule_sets == (
        original.users["rules"].rule_sets
    )
    assert probe.slos == original.slos
    assert probe.stack_tuning == {"rules-engine": {"cpu_ms": 8.0}}


def test_the_scenario_writer_round_trips_nested_tables_and_arrays() -> None:
    for name in ("smoke.toml", "graphql.toml", "workflows.toml", "spike.toml"):
        raw = tomllib.loads((SCENARIOS / name).read_text())
        assert tomllib.loads(dumps_scenario(raw)) == raw, name


def test_find_refuses_a_scenario_without_slos(tmp_path: Path) -> None:
    text = (SCENARIOS / "rules.toml").read_text()
    scenario = tmp_path / "rules.toml"
    shutil_copy = (SCENARIOS / "rules").resolve()
    body = text.split("[slos", 1)[0].replace('file = "rules/', f'file = "{shutil_copy}/')
    body = body.replace('csv = "data/', f'csv = "{(SCENARIOS / "data").resolve()}/')
    scenario.write_text(body)
    proc = subprocess.run(
        [sys.executable, "-m", "capacity", "find", str(scenario), "--reports", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"capacity: error: {scenario}: no [slos.*]: nothing to find the capacity against"
    )


def capacity(*args: str, timeout_s: float) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "capacity", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO_ROOT,
    )
    return proc, time.monotonic() - started


@pytest.mark.stack
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_find_matches_the_sweep_in_a_third_of_its_time(
    erp_stack: StackState, tmp_path: Path
) -> None:
    """The shipped sweep (its 8 steps, holds halved by --time-scale 0.5 to keep the suite
    short) and `capacity find` on the same scenario, back to back on one stack: find's
    capacity within 10% of the sweep's, and find's wall time at most a third of the shipped
    sweep's 280 s of load (a lower bound of the sweep's own time). benchmarks/bench_find.py
    runs the unshortened sweep."""
    scenario = write_scenario(tmp_path / "s", "capacity-sweep.toml", erp_stack)
    state = ["--state-dir", str(erp_stack.state_dir)]
    try:
        sweep, _ = capacity(
            "run", str(scenario), "--reports", str(tmp_path / "sweep"), "--time-scale", "0.5",
            "--no-history", *state, timeout_s=400,
        )  # fmt: skip
        found, find_s = capacity(
            "find", str(scenario), "--reports", str(tmp_path / "find"), *state, timeout_s=300
        )
    finally:
        reset_tuning(erp_stack)
    assert sweep.stdout.strip(), sweep.stderr[-3000:]
    summary = json.loads((Path(sweep.stdout.split()[-1]).parent / "summary.json").read_text())
    sweep_rps = summary["capacity"]["slo_capacity"]["max_rps"]
    assert found.stdout.strip(), found.stderr[-3000:]
    data = json.loads((Path(found.stdout.split()[-1]).parent / "find.json").read_text())
    # On a machine other work keeps busy, find stops as inconclusive (never a number that is
    # the neighbours' load) and the sweep says its host was saturated: nothing to compare.
    busy = [r for p in data["probes"] for r in p["reasons"] if "other work on this machine" in r]
    host_busy = [w for w in summary["capacity"]["warnings"] if "host's CPU was saturated" in w]
    if busy or (host_busy and data["capacity_rps"] is not None and
                abs(data["capacity_rps"] / sweep_rps - 1) > 0.10):  # fmt: skip
        pytest.xfail(f"machine busy with other work: {(busy or host_busy)[0]}; {data['headline']}")
    assert found.returncode == 0, found.stderr[-3000:]
    shipped_load_s = load_scenario(SCENARIOS / "capacity-sweep.toml").load.total_duration_s
    print(
        f"sweep (x0.5) {sweep_rps:.1f} req/s: {summary['capacity']['headline']}\n"
        f"find {data['capacity_rps']:.1f} req/s {data['interval_rps']} in {find_s:.0f} s, "
        f"{len(data['probes'])} probes: {data['headline']}"
    )
    assert data["status"] == "found" and data["bottleneck"]["service"] == "rules-engine"
    assert data["capacity_rps"] == pytest.approx(sweep_rps, rel=0.10)
    assert find_s <= shipped_load_s / 3
