"""Run validity: a saturated load generator, dropped arrivals and thin samples make the verdict
inconclusive with a reason; warm-up stays out of steady-state figures (synthetic data)."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import OperationSlo, summarize

from capacity.analysis.resources import digest_resources
from capacity.analysis.validity import (
    arrival_reasons,
    arrival_totals,
    is_load_generator,
    saturation_reasons,
)
from capacity.recorder import INTENDED_START_KEY, SliceRecorder

META = {"run_id": "r", "scenario": "s", "status": "complete", "warmup_s": 0.0}


def slices(
    seconds: int, per_s: int, *, t0: float = 1000.0, arrival: dict | None = None
) -> list[dict]:
    clock = {"t": t0}
    out: list[dict] = []
    on_close = (lambda record: record.update(arrival=dict(arrival))) if arrival else None
    rec = SliceRecorder(out.append, worker="w", clock=lambda: clock["t"], on_close=on_close)
    for _ in range(seconds):
        for _ in range(per_s):
            rec.on_request(name="graphql Q", response_time=10.0)
        clock["t"] += 1.0
        rec.close_slice()
    return out


def resources(cpu_by_target: dict[str, list[float]], t0: float = 1000.0) -> pd.DataFrame:
    rows = [
        {
            "ts_unix_s": t0 + i + 1,
            "source": "process",
            "target": target,
            "cpu_cores": cpu,
            "mem_mb": 100.0,
            "mem_limit_mb": None,
            "cpu_throttled_s": None,
        }
        for target, series in cpu_by_target.items()
        for i, cpu in enumerate(series)
    ]
    return pd.DataFrame(rows)


def run(slices_: list[dict], res: pd.DataFrame | None = None, **meta: object) -> dict:
    return summarize(
        slices_,
        res,
        run_meta={**META, "load_started_at": 1000.0, **meta},
        operation_slos=[OperationSlo("graphql *", p95_ms=500)],
        service_slos=[],
    )


def test_load_generator_rows_are_recognised() -> None:
    assert is_load_generator("process", "locust")
    assert is_load_generator("process", "locust-master")
    assert is_load_generator("process", "locust-worker-3")
    assert not is_load_generator("container", "locust")
    assert not is_load_generator("process", "gateway")
    assert not is_load_generator("process", "locust-workers")


def test_saturated_worker_makes_the_run_inconclusive() -> None:
    # worker-1 above 0.9 cores for 3 of 20 samples (15% > 10%); worker-0 busy but not saturated
    res = resources(
        {
            "locust-worker-0": [0.85] * 20,
            "locust-worker-1": [0.5] * 17 + [0.95, 0.99, 1.0],
            "gateway": [1.5] * 20,
        }
    )
    s = run(slices(20, 50), res)
    gens = s["load_generators"]
    assert set(gens) == {"locust-worker-0", "locust-worker-1"}
    assert gens["locust-worker-1"]["saturated_fraction"] == pytest.approx(0.15)
    assert gens["locust-worker-0"]["saturated_fraction"] == 0.0
    assert s["verdict"] == "inconclusive"
    assert len(s["reasons"]) == 1 and "locust-worker-1" in s["reasons"][0]
    assert "15%" in s["reasons"][0]


def test_load_generator_at_the_limit_is_still_valid() -> None:
    # exactly 10% of samples above 90% of a core is not "more than 10%"
    res = resources({"locust": [0.3] * 18 + [0.95, 0.95]})
    s = run(slices(20, 50), res)
    assert s["load_generators"]["locust"]["saturated_fraction"] == pytest.approx(0.1)
    assert s["verdict"] == "pass" and s["reasons"] == []
    # samples outside the run do not count
    late = resources({"locust": [1.0] * 5}, t0=2000.0)
    digest = digest_resources([late], steady_start_s=1000.0, load_start_s=1000.0, end_s=1020.0,
                              chart_bucket_s=1.0)  # fmt: skip
    assert digest.load_generators == {}
    assert saturation_reasons({}) == []


def test_more_than_one_percent_dropped_is_inconclusive() -> None:
    ok = run(slices(10, 50, arrival={"scheduled": 100, "started": 99, "late": 5, "dropped": 1}))
    assert ok["arrival"]["dropped"] == 10 and ok["arrival"]["dropped_fraction"] == 0.01
    assert ok["verdict"] == "pass"
    bad = run(slices(10, 50, arrival={"scheduled": 100, "started": 98, "late": 5, "dropped": 2}))
    assert bad["verdict"] == "inconclusive"
    assert bad["reasons"] == [
        "arrival rate not met: 20 of 1000 scheduled iterations dropped (2.0% > 1%); "
        "raise load.max_users or check the load generator's CPU"
    ]
    assert run(slices(10, 50))["arrival"] is None
    assert arrival_reasons(None) == [] and arrival_totals([{"ops": {}}]) is None


def test_warmup_arrivals_and_saturation_stay_apart() -> None:
    """Drops during warm-up do not count towards the steady-state arrival figures."""
    warm = slices(4, 50, arrival={"scheduled": 100, "started": 50, "late": 50, "dropped": 50})
    steady = slices(
        6, 50, t0=1004.0, arrival={"scheduled": 100, "started": 100, "late": 0, "dropped": 0}
    )
    s = run(warm + steady, warmup_s=4.0)
    assert s["arrival"]["scheduled"] == 600 and s["arrival"]["dropped"] == 0
    assert s["operations"]["graphql Q"]["count"] == 300
    assert s["operations"]["graphql Q"]["count_all"] == 500
    assert s["verdict"] == "pass"


def test_too_few_samples_for_a_percentile_is_inconclusive() -> None:
    s = run(slices(1, 30))
    assert s["verdict"] == "inconclusive"
    assert s["reasons"] == ["graphql Q: too few samples for p95_ms (need 40)"]


def test_intended_percentiles_are_summarised_and_judged() -> None:
    clock = {"t": 1000.0}
    out: list[dict] = []
    rec = SliceRecorder(out.append, worker="w", clock=lambda: clock["t"])
    for i in range(100):
        intended = clock["t"]
        late_s = 0.9 if i % 10 == 0 else 0.0
        rec.on_request(
            name="graphql Q",
            response_time=10.0,
            start_time=intended + late_s,
            context={INTENDED_START_KEY: intended},
        )
    clock["t"] += 2.0
    rec.close_slice()
    s = run(out)
    op = s["operations"]["graphql Q"]
    assert op["p95_ms"] == pytest.approx(10.0, rel=1e-3)
    assert op["p95_intended_ms"] == pytest.approx(910.0, rel=1e-3)
    assert op["count_intended"] == 100
    (slo,) = s["slos"]
    assert slo["basis"] == "intended" and slo["value"] == op["p95_intended_ms"]
    assert s["verdict"] == "fail"


def test_how_the_run_went_reaches_the_verdict() -> None:
    """A load generator that did not end cleanly, problems recorded during the run, a run
    shorter than planned: each is a reason, and none can be a pass (issue 11)."""
    ok = slices(20, 50)
    assert run(ok, load={"duration_s": 20.0})["verdict"] == "pass"
    killed = run(ok, load={"duration_s": 20.0}, locust_exit_code=-9)
    assert killed["verdict"] == "inconclusive"
    assert (
        "the load generator (Locust) exited with signal SIGKILL before a clean end"
        in (killed["reasons"])
    )
    legacy = run(ok, schema=1, load={"duration_s": 20.0}, locust_exit_code=1)
    assert legacy["verdict"] == "pass"  # schema 1: Locust exited 1 on any request failure
    died = run(ok, load={"duration_s": 20.0}, problems=["process temporal (pid 7) is gone"])
    assert (
        died["verdict"] == "inconclusive" and "process temporal (pid 7) is gone" in died["reasons"]
    )
    short = run(slices(8, 50), load={"duration_s": 20.0})
    assert short["verdict"] == "inconclusive"
    assert any(
        r.startswith("the run was shorter than planned: load ran 8.0 s") for r in short["reasons"]
    )


def test_a_breach_a_broken_run_may_have_caused_is_not_judged() -> None:
    """A saturated load generator inflates latency: its P95 breach is not a fail. A shared
    stack taints everything. A real error-rate breach still fails."""
    slow = [dict(s) for s in slices(20, 50)]
    for record in slow:
        record["ops"] = {
            name: {**op, "hist": slices_of_latency(900.0, op["count"])}
            for name, op in record["ops"].items()
        }
    saturated = resources({"locust": [0.99] * 20})
    judged = run(slow, saturated)
    (row,) = judged["slos"]
    assert row["passed"] is None and row.get("untrusted") is True
    assert judged["verdict"] == "inconclusive"
    shared = run(slow, problems=[{"text": "shared: another run used the stack", "scope": "all"}])
    assert shared["verdict"] == "inconclusive"


def slices_of_latency(latency_ms: float, count: int) -> str:
    from capacity.runfolder.histograms import encode_histogram, new_histogram

    hist = new_histogram()
    hist.record_value(int(latency_ms * 1000), count)
    return encode_histogram(hist)
