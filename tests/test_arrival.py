"""Open-model load: the arrival schedule, the executor's late/dropped accounting, the
intended-start latency in the recorder, and a stalling server seen through both latencies."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import gevent
import numpy as np
import pytest
from helpers import OperationSlo, summarize
from servers import running_server

from capacity import runfolder
from capacity.drivers.arrival import (
    ArrivalExecutor,
    arrival_split,
    expected_iterations,
    intended_offsets_s,
)
from capacity.errors import ConfigError
from capacity.recorder import INTENDED_START_KEY, SliceRecorder
from capacity.runfolder.histograms import Counts, percentile_ms
from capacity.scenario import ArrivalStage

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_constant_rate_schedule_is_evenly_spaced() -> None:
    offsets = list(intended_offsets_s([ArrivalStage(rate_per_s=50.0, duration_s=4.0)]))
    assert len(offsets) == 200 == expected_iterations([ArrivalStage(50.0, 4.0)])
    assert np.allclose(np.diff(offsets), 1 / 50.0)
    assert offsets[0] == pytest.approx(0.01) and offsets[-1] < 4.0


def test_ramp_follows_the_linear_rate_and_then_holds() -> None:
    stages = [ArrivalStage(100.0, 10.0, ramp=True), ArrivalStage(100.0, 5.0)]
    offsets = np.array(list(intended_offsets_s(stages)))
    # ramp 0 -> 100/s over 10 s: 500 arrivals, a quarter of them in the first half
    assert len(offsets) == 500 + 500
    assert int((offsets < 5.0).sum()) == 125
    assert int((offsets < 10.0).sum()) == 500
    tail = np.diff(offsets[offsets > 10.0])
    assert np.allclose(tail, 0.01)
    down = np.array(list(intended_offsets_s([ArrivalStage(100, 2), ArrivalStage(0, 4, ramp=True)])))
    assert len(down) == 200 + 200 and int((down > 4.0).sum()) == 50


def test_split_processes_take_disjoint_shares_of_the_same_schedule() -> None:
    stages = [ArrivalStage(30.0, 3.0, ramp=True), ArrivalStage(90.0, 2.0)]
    whole = list(intended_offsets_s(stages))
    parts = [list(intended_offsets_s(stages, i, 3)) for i in range(3)]
    assert sorted(x for p in parts for x in p) == whole
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    assert arrival_split(None, None, None) == (0, 1)
    assert arrival_split("2/4", None, None) == (2, 4)
    assert arrival_split(None, 5, 3) == (2, 3)
    with pytest.raises(ConfigError, match="--arrival-split"):
        arrival_split("4/4", None, None)


def _run_pool(executor: ArrivalExecutor, users: int, work_s: float, run_s: float) -> list[float]:
    """Greenlet users taking iterations; returns each iteration's lateness in seconds."""
    lateness: list[float] = []

    def user() -> None:
        while True:
            intended = executor.take("A", timeout_s=0.2)
            if intended is None:
                if not executor.running:
                    return
                continue
            lateness.append(time.time() - intended)
            gevent.sleep(work_s)

    executor.start()
    pool = [gevent.spawn(user) for _ in range(users)]
    executor.join(timeout_s=run_s + 5.0)
    gevent.joinall(pool, timeout=5.0)
    gevent.killall(pool)
    return lateness


def test_a_free_pool_starts_every_iteration_on_time() -> None:
    executor = ArrivalExecutor([ArrivalStage(200.0, 1.0)], {"A": 1})
    lateness = _run_pool(executor, users=4, work_s=0.002, run_s=1.0)
    totals = executor.totals
    assert totals.scheduled == 200 == totals.started == len(lateness)
    assert totals.dropped == 0
    assert totals.late <= 2  # 10 ms late only when the machine hiccups
    assert float(np.median(lateness)) < 0.005


def test_a_saturated_pool_makes_iterations_late_and_drops_them() -> None:
    executor = ArrivalExecutor([ArrivalStage(100.0, 1.5)], {"A": 1}, drop_after_s=0.2)
    # one user at 50 ms per iteration serves 20/s of the 100/s scheduled
    lateness = _run_pool(executor, users=1, work_s=0.05, run_s=1.5)
    totals = executor.totals
    assert totals.scheduled == 150
    assert totals.started + totals.dropped == totals.scheduled
    assert 20 <= totals.started <= 45 and totals.dropped >= 100
    assert totals.late >= totals.started - 2
    assert max(lateness) <= 0.2 + 0.06
    counts = executor.take_counts()
    assert counts is not None and counts["dropped"] == totals.dropped
    assert executor.take_counts() == {"scheduled": 0, "started": 0, "late": 0, "dropped": 0}


def test_iterations_are_split_across_classes_by_weight() -> None:
    executor = ArrivalExecutor([ArrivalStage(400.0, 1.0)], {"A": 3, "B": 1, "C": 0}, seed=7)
    taken = {"A": 0, "B": 0}

    def user(name: str) -> None:
        while executor.take(name, timeout_s=0.3) is not None:
            taken[name] += 1

    executor.start()
    pool = [gevent.spawn(user, n) for n in ("A", "A", "B")]
    executor.join(timeout_s=5.0)
    gevent.joinall(pool, timeout=5.0)
    assert taken["A"] + taken["B"] == 400 and executor.class_names == ["A", "B"]
    assert 0.68 < taken["A"] / 400 < 0.82


def test_recorder_keeps_latency_from_the_intended_start_beside_the_actual() -> None:
    out: list[dict] = []
    fields: dict = {}
    rec = SliceRecorder(out.append, worker="w", on_close=lambda record: record.update(fields))
    intended = 1000.0
    for i in range(1000):
        late_s = 0.8 if i < 20 else 0.0  # 2% waited 800 ms for a free user
        rec.on_request(
            name="op",
            response_time=5.0,
            start_time=intended + late_s,
            context={INTENDED_START_KEY: intended},
        )
    rec.on_request(name="closed", response_time=5.0, context={})
    fields["arrival"] = {"scheduled": 1000}
    record = rec.close_slice()
    assert record is not None and record["arrival"] == {"scheduled": 1000}
    op = record["ops"]["op"]
    actual, corrected = Counts.decode(op["hist"]), Counts.decode(op["hist_intended"])
    assert percentile_ms(actual, 99.0) == pytest.approx(5.0, rel=1e-3)
    assert percentile_ms(corrected, 99.0) == pytest.approx(805.0, rel=1e-3)
    assert percentile_ms(corrected, 50.0) == pytest.approx(5.0, rel=1e-3)
    assert "hist_intended" not in record["ops"]["closed"]
    rec.on_request(name="op", response_time=5.0)
    fields.clear()
    rec._on_close = lambda record: record.pop("ops")
    with pytest.raises(ValueError, match="reserved"):
        rec.close_slice()


STALL_SCENARIO = """
[scenario]
name = "stall"
[targets]
rules_engine = "{url}"
embedded_stack = false
[load]
slice_s = 2
max_users = {users}
[[load.arrival]]
rate_per_s = {rate}
duration_s = {duration}
[users.rules]
[[users.rules.rule_sets]]
file = "stall-cases.json"
[slos.operations."rules *"]
p99_ms = 500
"""


def test_stalling_server_shows_in_corrected_p99_only(tmp_path: Path) -> None:
    """Stall 1 s every 10 s, 100 arrivals/s, a pool of 4: 2 stalls in 20 s.

    Only the 4 requests in flight at each stall see it from their actual send (0.4% of
    about 2000), so P99 from the send stays fast; the ~100 iterations scheduled during each
    stall wait for a user, so about 5% of intended-start latencies exceed 500 ms.
    """
    rate, users, duration = 100, 4, 20
    with running_server("stall", "--stall-every-s", "10", "--stall-s", "1") as server:
        (tmp_path / "stall-cases.json").write_text('{"ruleSet": "stall", "cases": [{"facts": {}}]}')
        scenario = tmp_path / "stall.toml"
        scenario.write_text(
            STALL_SCENARIO.format(url=server.url, users=users, rate=rate, duration=duration)
        )
        run_dir = tmp_path / "run"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAPACITY_")}
        proc = subprocess.run(
            [
                sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "rules.py"),
                "--headless", "--scenario", str(scenario), "--run-dir", str(run_dir),
                "--no-preflight", "--only-summary", "--loglevel", "WARNING",
            ],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=duration + 40,
        )  # fmt: skip
        # A plain `locust -f` run judges its scenario's SLOs and exits with the verdict.
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "capacity: verdict fail" in proc.stderr
        server_ms = np.array(server.samples_ms())
    slices = list(runfolder.iter_slices(run_dir))
    meta = runfolder.read_json(run_dir / runfolder.RUN_JSON)
    summary = summarize(
        slices, None, run_meta=meta, operation_slos=[OperationSlo("rules *", p99_ms=500)],
        service_slos=[],
    )  # fmt: skip
    op = summary["operations"]["rules stall"]
    arrival = summary["arrival"]
    print(
        f"\nstall: {op['count']} requests, server max {server_ms.max():.0f} ms, "
        f"held {(server_ms > 500).sum()}; P99 from send {op['p99_ms']} ms, "
        f"P99 from intended start {op['p99_intended_ms']} ms; arrival {arrival}"
    )
    assert (server_ms > 500).sum() >= 2 * users - 1, "the server did not stall twice"
    assert op["p99_ms"] < 500.0
    assert op["p99_intended_ms"] >= 500.0
    assert 0.97 * rate * duration <= arrival["scheduled"] <= rate * duration
    assert arrival["late"] >= rate // 2 and arrival["dropped_fraction"] <= 0.01
    assert op["count_intended"] == op["count"] >= arrival["started"] - users
    (slo,) = summary["slos"]
    assert slo["basis"] == "intended" and slo["passed"] is False
    assert summary["verdict"] == "fail"
