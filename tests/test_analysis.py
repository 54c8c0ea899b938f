"""Pure analysis: steady-state window, SLO checks with sample minimums, verdicts."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import OperationSlo, ServiceSlo, flatten, summarize

from capacity.recorder import SliceRecorder
from capacity.slos import check_run, verdict


def make_slices(
    latencies_by_second: list[tuple[float, int, float]], t0: float = 1000.0
) -> list[dict]:
    """One 1-second slice per (latency_ms, count, failures fraction) entry."""
    clock = {"t": t0}
    out: list[dict] = []
    rec = SliceRecorder(out.append, worker="w", users=lambda: 5, clock=lambda: clock["t"])
    for latency_ms, count, fail_frac in latencies_by_second:
        for i in range(count):
            exc = "HTTP 500" if i < int(count * fail_frac) else None
            rec.on_request(name="graphql Q", response_time=latency_ms, exception=exc)
        clock["t"] += 1.0
        rec.close_slice()
    return out


META = {
    "run_id": "r",
    "scenario": "s",
    "status": "complete",
    "warmup_s": 2.0,
    "load_started_at": 1000.0,
}


def test_warmup_is_excluded_from_steady_state() -> None:
    slices = make_slices([(900.0, 50, 0.0)] * 2 + [(10.0, 50, 0.0)] * 8)
    s = summarize(
        slices,
        None,
        run_meta=META,
        operation_slos=[OperationSlo("graphql *", p95_ms=500)],
        service_slos=[],
    )
    op = s["operations"]["graphql Q"]
    assert op["count"] == 400 and op["count_all"] == 500
    assert op["p95_ms"] == pytest.approx(10.0, rel=1e-3)
    assert op["rps"] == pytest.approx(50.0)
    assert s["verdict"] == "pass"


def test_no_sample_of_the_warmup_counts_even_when_its_slice_is_mostly_after_it() -> None:
    """2 s slices and a 3 s warm-up: the slice [1002, 1004) holds 1 s of warm-up, so it does
    not count (its midpoint is past the warm-up); steady state starts at the next boundary."""
    out: list[dict] = []
    clock = {"t": 1000.0}
    rec = SliceRecorder(out.append, worker="w", clock=lambda: clock["t"])
    for latency_ms in (900.0, 900.0, 10.0, 10.0, 10.0):  # slices from 1000, 1002, ... 1008
        for _ in range(40):
            rec.on_request(name="graphql Q", response_time=latency_ms)
        clock["t"] += 2.0
        rec.close_slice()
    s = summarize(out, None, run_meta={**META, "warmup_s": 3.0}, operation_slos=[], service_slos=[])
    op = s["operations"]["graphql Q"]
    assert (op["count"], op["count_all"]) == (120, 200)
    assert op["max_ms"] == pytest.approx(10.0, rel=1e-3)
    assert s["steady_duration_s"] == pytest.approx(6.0)  # from the boundary at 1004
    assert op["rps"] == pytest.approx(20.0)


def test_slo_failure_and_error_rate() -> None:
    slices = make_slices([(700.0, 100, 0.05)] * 4, t0=1000.0)
    s = summarize(
        slices,
        None,
        run_meta={**META, "warmup_s": 0.0},
        operation_slos=[OperationSlo("graphql *", p95_ms=500, error_rate=0.01)],
        service_slos=[],
    )
    by_metric = {x["metric"]: x for x in s["slos"]}
    assert by_metric["p95_ms"]["passed"] is False
    assert by_metric["error_rate"]["value"] == pytest.approx(0.05)
    assert by_metric["error_rate"]["passed"] is False
    assert s["verdict"] == "fail"


def test_thin_data_is_inconclusive_not_pass() -> None:
    slices = make_slices([(10.0, 5, 0.0)] * 4)
    s = summarize(
        slices,
        None,
        run_meta={**META, "warmup_s": 0.0},
        operation_slos=[OperationSlo("graphql *", p95_ms=500)],
        service_slos=[],
    )
    assert s["verdict"] == "inconclusive"
    assert any("too few samples" in r for r in s["reasons"])


def test_partial_run_is_inconclusive() -> None:
    slices = make_slices([(10.0, 100, 0.0)] * 4)
    s = summarize(
        slices,
        None,
        run_meta={**META, "status": "running", "warmup_s": 0.0},
        operation_slos=[],
        service_slos=[],
    )
    assert s["status"] == "partial" and s["verdict"] == "inconclusive"


def test_service_slos_use_mean_cpu_and_max_memory() -> None:
    resources = pd.DataFrame(
        {
            "ts_unix_s": [1003.0, 1004.0, 1005.0],
            "source": ["process"] * 3,
            "target": ["gateway"] * 3,
            "cpu_cores": [0.2, 0.4, 0.6],
            "mem_mb": [100.0, 600.0, 200.0],
        }
    )
    slices = make_slices([(10.0, 100, 0.0)] * 6)
    s = summarize(
        slices,
        resources,
        run_meta=META,
        operation_slos=[],
        service_slos=[ServiceSlo("gateway", cpu_cores=0.5, mem_mb=512)],
    )
    res = s["resources"]["gateway"]
    assert res["cpu_cores_mean"] == pytest.approx(0.4)
    assert res["mem_mb_max"] == 600.0
    results = {x["metric"]: x["passed"] for x in s["slos"]}
    assert results == {"cpu_cores_mean": True, "mem_mb_max": False}


def test_missing_service_samples_make_slo_inconclusive() -> None:
    slos = check_run(flatten([ServiceSlo("rules-engine", cpu_cores=0.5)]), {}, {})
    assert slos[0]["passed"] is None
    assert verdict(slos, []) == "inconclusive"


def test_the_steady_window_ends_when_the_load_was_scheduled_to_stop() -> None:
    """The last slice is flushed as Locust shuts down, about a second after the load stopped:
    that idle tail is not part of the window rates and CPU means are taken over (a 6 s probe
    of `capacity find` read its throughput 20% low), while its requests still count."""
    import math

    from helpers import meta_of

    from capacity.analysis.summary import scheduled_end_s

    arrival = {"arrival": [{"rate_per_s": 75.0, "duration_s": 6.0}], "duration_s": 6.0}
    assert scheduled_end_s(meta_of({"load": arrival}), 100.0) == 106.0
    # closed model: Locust's -t takes whole seconds
    assert scheduled_end_s(meta_of({"load": {"users": 5, "duration_s": 22.5}}), 100.0) == 123.0
    # no duration (a run until stopped): no end
    assert scheduled_end_s(meta_of({"load": {"users": 5}}), 100.0) == math.inf
