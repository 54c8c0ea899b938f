"""Per-step statistics: histogram merging, steady windows, resources, Little's law."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hdrh.histogram import HdrHistogram

from capacity.analysis.steps import (
    StepWindow,
    find_steady_windows,
    inconsistent_steps,
    latency_percentiles_ms,
    littles_law_check,
    merge_histograms,
    slices_frame,
    summarize_step,
    summarize_steps,
)
from capacity.errors import CapacityError

SLICE_S = 5.0


def new_hist() -> HdrHistogram:
    return HdrHistogram(1, 60_000_000, 3)


def hist_of(values_us: np.ndarray) -> HdrHistogram:
    hist = new_hist()
    for value in values_us:
        hist.record_value(int(value))
    return hist


# --- histograms -------------------------------------------------------------------------


def test_merged_slice_histograms_give_the_percentiles_of_all_samples() -> None:
    rng = np.random.default_rng(7)
    # Slices with different latency levels, so averaging per-slice percentiles would be wrong.
    slices_us = [
        np.round(rng.lognormal(np.log(20_000 * (1 + i % 4)), 0.6, 3000)).astype(int)
        for i in range(8)
    ]
    merged = latency_percentiles_ms([hist_of(s) for s in slices_us])
    everything = np.concatenate(slices_us)
    single = latency_percentiles_ms([hist_of(everything)])
    assert merged == single
    assert merged.count == everything.size
    for q, got in [(50, merged.p50_ms), (95, merged.p95_ms), (99, merged.p99_ms)]:
        exact_ms = float(np.percentile(everything, q, method="inverted_cdf")) / 1000.0
        assert got == pytest.approx(exact_ms, rel=1e-3), q
    assert merged.mean_ms == pytest.approx(everything.mean() / 1000.0, rel=1e-3)
    assert merged.max_ms == pytest.approx(everything.max() / 1000.0, rel=1e-3)


def test_merge_leaves_inputs_untouched_and_handles_none() -> None:
    a, b = hist_of(np.array([1000, 2000])), hist_of(np.array([3000]))
    merged = merge_histograms([a, b])
    assert merged is not None and merged.total == 3
    assert a.get_total_count() == 2 and b.get_total_count() == 1
    assert merge_histograms([]) is None
    empty = latency_percentiles_ms([])
    assert empty.count == 0 and math.isnan(empty.p95_ms)


# --- steady windows ---------------------------------------------------------------------


def slice_frame(rows: Sequence[tuple[float, float]], t0: float = 1_764_200_000.0) -> pd.DataFrame:
    """(users, rps) per slice -> a slices frame with histograms of a fixed 50 ms latency."""
    records = []
    for i, (users, rps) in enumerate(rows):
        count = int(round(rps * SLICE_S))
        records.append(
            {
                "t_start_s": t0 + i * SLICE_S,
                "t_end_s": t0 + (i + 1) * SLICE_S,
                "users": users,
                "count": count,
                "failures": count // 50,
                "hist": hist_of(np.full(min(count, 200), 50_000)),
            }
        )
    return pd.DataFrame(records)


STAIRS = [
    (10, 60.0),  # spawning: dropped as warm-up
    (10, 100.0),
    (10, 100.0),
    (10, 100.0),
    (15, 140.0),  # a ramp passing through: one slice only, skipped
    (20, 150.0),  # spawning
    (20, 120.0),  # still warming up: off the median by > 15%
    (20, 200.0),
    (20, 196.0),
    (20, 204.0),
    (0, 0.0),  # stopped
]


def test_steady_windows_drop_spawning_and_warming_slices() -> None:
    frame = slice_frame(STAIRS)
    windows = find_steady_windows(frame.sample(frac=1.0, random_state=3))
    assert [w.users for w in windows] == [10.0, 20.0]
    first, second = windows
    t0 = frame["t_start_s"].iloc[0]
    assert (first.start_s, first.end_s) == (t0 + SLICE_S, t0 + 4 * SLICE_S)
    assert first.n_slices == 3 and first.warmup_slices_dropped == 1
    assert (second.start_s, second.end_s) == (t0 + 7 * SLICE_S, t0 + 10 * SLICE_S)
    assert second.n_slices == 3 and second.warmup_slices_dropped == 2
    assert second.step_start_s == t0 + 5 * SLICE_S


def test_steady_windows_without_warmup_drop_keep_stable_steps_whole() -> None:
    frame = slice_frame([(5, 50.0)] * 4 + [(8, 80.0)] * 4)
    windows = find_steady_windows(frame, warmup_slices=0)
    assert [(w.users, w.n_slices) for w in windows] == [(5.0, 4), (8.0, 4)]


def test_duplicate_slices_and_missing_columns_are_reported() -> None:
    frame = slice_frame(STAIRS)
    with pytest.raises(CapacityError, match="t_start_s"):
        find_steady_windows(pd.concat([frame, frame]))
    with pytest.raises(CapacityError, match="missing column"):
        find_steady_windows(frame.drop(columns=["count"]))


# --- step statistics --------------------------------------------------------------------


def resource_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """1 Hz samples over the run: gateway CPU = users/50, container beats process for it."""
    rows: list[tuple[Any, ...]] = []
    for _, s in frame.iterrows():
        for ts in np.arange(s["t_start_s"] + 1.0, s["t_end_s"] + 0.5, 1.0):
            users = s["users"]
            rows.append((ts, "container", "gateway", users / 50.0, 100.0 + users, 512.0))
            rows.append((ts, "process", "gateway", 9.0, 9999.0, None))
            rows.append((ts, "process", "rules-engine", 0.1, 60.0, None))
            rows.append((ts, "host", "host", 1.5, 8000.0, None))
    return pd.DataFrame(
        rows, columns=["ts_unix_s", "source", "target", "cpu_cores", "mem_mb", "mem_limit_mb"]
    )


def test_summarize_steps_measures_throughput_errors_latency_and_resources() -> None:
    frame = slice_frame(STAIRS)
    windows = find_steady_windows(frame)
    steps = summarize_steps(windows, frame, resource_frame(frame))
    assert len(steps) == 2
    second = steps[1]
    assert second.users == 20
    assert second.duration_s == pytest.approx(15.0)
    assert second.requests == 1000 + 980 + 1020
    assert second.throughput_rps == pytest.approx(3000 / 15.0)
    assert second.failures == 20 + 19 + 20
    assert second.error_rate == pytest.approx(59 / 3000)
    assert second.ok_throughput_rps == pytest.approx((3000 - 59) / 15.0)
    assert second.p95_ms == pytest.approx(50.0, rel=1e-3)
    # Only samples inside the window count: the warm-up slices had other user counts.
    assert second.cpu_cores_mean == {
        "gateway": pytest.approx(0.4),
        "rules-engine": pytest.approx(0.1),
    }
    assert second.mem_mb_mean["gateway"] == pytest.approx(120.0)
    assert second.mem_limit_mb == {"gateway": 512.0}
    assert second.host_cpu_cores_mean == pytest.approx(1.5)
    assert second.cpu_s_per_request["gateway"] == pytest.approx(0.4 / 200.0)
    assert second.mem_mb_per_user["gateway"] == pytest.approx(120.0 / 20)
    doc = second.to_dict()
    json.dumps(doc, allow_nan=False)
    assert doc["users"] == 20


def test_step_without_histograms_or_resources_still_summarises() -> None:
    frame = slice_frame([(4, 40.0)] * 3).drop(columns=["hist"])
    outside = StepWindow(
        4, start_s=0.0, end_s=1.0, step_start_s=0.0, n_slices=0, warmup_slices_dropped=0
    )
    assert summarize_step(outside, frame).requests == 0
    assert summarize_steps([outside], frame) == []
    window = find_steady_windows(frame)[0]
    stats = summarize_step(window, frame)
    assert stats.throughput_rps == pytest.approx(40.0)
    assert math.isnan(stats.p95_ms) and stats.littles_law_ok is None
    assert stats.cpu_cores_mean == {}
    assert stats.to_dict()["p95_ms"] is None


# --- Little's law -----------------------------------------------------------------------


def closed_loop_frame(users: float, rps: float, latency_ms: float) -> pd.DataFrame:
    records = []
    for i in range(4):
        count = int(rps * SLICE_S)
        records.append(
            {
                "t_start_s": 100.0 + i * SLICE_S,
                "t_end_s": 100.0 + (i + 1) * SLICE_S,
                "users": users,
                "count": count,
                "failures": 0,
                "hist": [hist_of(np.full(count, int(latency_ms * 1000)))],
            }
        )
    return pd.DataFrame(records)


def test_littles_law_accepts_a_consistent_step_and_flags_an_impossible_one() -> None:
    # 10 users, 500 ms response + 500 ms think: 10 req/s is consistent, 40 req/s is not.
    good = closed_loop_frame(10, 10.0, 500.0)
    bad = closed_loop_frame(10, 40.0, 500.0)
    [ok_step] = summarize_steps(find_steady_windows(good), good, think_time_s=0.5)
    [bad_step] = summarize_steps(find_steady_windows(bad), bad, think_time_s=0.5)
    assert ok_step.littles_law_concurrency == pytest.approx(10.0, rel=1e-3)
    assert ok_step.littles_law_ok is True
    assert bad_step.littles_law_ratio == pytest.approx(4.0, rel=1e-3)
    assert bad_step.littles_law_ok is False
    assert inconsistent_steps([ok_step, bad_step]) == [bad_step]


def test_littles_law_without_think_time_only_bounds_concurrency_from_above() -> None:
    # Unknown think time: 10 users at 10 req/s and 500 ms is 5 in flight, possible.
    assert littles_law_check(10, 10.0, 500.0, None) == (pytest.approx(5.0), 0.5, True)
    # 10 users cannot keep 30 requests in flight.
    concurrency, ratio, ok = littles_law_check(10, 60.0, 500.0, None)
    assert concurrency == pytest.approx(30.0) and ok is False
    # With the think time known, too few in flight is inconsistent as well.
    assert littles_law_check(10, 10.0, 500.0, 2.0)[2] is False


# --- slice records ----------------------------------------------------------------------


def b64(hist: HdrHistogram) -> str:
    return base64.b64encode(hist.encode()).decode("ascii")


def record(worker: str, t_start_s: float, users: int, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "schema": 1,
        "t_start_s": t_start_s,
        "t_end_s": t_start_s + SLICE_S,
        "worker": worker,
        "users": users,
        "ops": {
            name: {
                "count": count,
                "failures": 1,
                "partial": 0,
                "hist": b64(hist_of(np.full(count, 10_000 * (i + 1)))),
                "errors": {"HTTP 500": 1},
            }
            for i, (name, count) in enumerate(counts.items())
        },
    }


def test_slices_frame_sums_operations_of_one_worker() -> None:
    records = [record("w1", 100.0 + i * SLICE_S, 5, {"a": 10, "b": 30}) for i in range(3)]
    frame = slices_frame(records)
    assert list(frame["count"]) == [40, 40, 40]
    assert list(frame["failures"]) == [2, 2, 2]
    assert latency_percentiles_ms(frame["hist"].iloc[0]).p50_ms == pytest.approx(20.0, rel=1e-3)
    only_a = slices_frame(records, operations={"a"})
    assert list(only_a["count"]) == [10, 10, 10]
    assert latency_percentiles_ms(only_a["hist"].iloc[0]).p95_ms == pytest.approx(10.0, rel=1e-3)


def test_slices_frame_buckets_workers_on_their_own_clocks() -> None:
    # Two workers 1.3 s apart, 4 and 6 users: each bucket has both, 10 users in total.
    records = [record("w1", 100.0 + i * SLICE_S, 4, {"a": 20}) for i in range(4)]
    records += [record("w2", 101.3 + i * SLICE_S, 6, {"a": 30}) for i in range(4)]
    frame = slices_frame(records)
    assert len(frame) == 4
    assert list(frame["users"]) == [10.0] * 4
    assert list(frame["count"]) == [50] * 4
    assert all(len(h) == 2 for h in frame["hist"])
    windows = find_steady_windows(frame, warmup_slices=0)
    assert len(windows) == 1 and windows[0].users == 10.0
    assert slices_frame([]).empty


def test_merge_accepts_histograms_with_different_ranges() -> None:
    narrow = hist_of(np.array([1000, 2000]))
    wide = HdrHistogram(1, 3_600_000_000, 3)
    wide.record_value(120_000_000)
    for order in ([narrow, wide], [wide, narrow]):
        merged = latency_percentiles_ms(order)
        assert merged.count == 3
        assert merged.max_ms == pytest.approx(120_000.0, rel=1e-3)
