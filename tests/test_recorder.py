"""The recorder: exact percentiles, exact merging across slices and workers, lossless slices."""

from __future__ import annotations

import numpy as np
import pytest

from capacity.recorder import SliceRecorder
from capacity.runfolder.histograms import Counts, merge_counts, new_histogram, percentile_ms


def exact_percentile_ms(samples_ms: np.ndarray, pct: float) -> float:
    """Nearest-rank percentile, the definition HDR histograms use."""
    ordered = np.sort(samples_ms)
    rank = max(1, int(np.ceil(pct / 100.0 * len(ordered))))
    return float(ordered[rank - 1])


@pytest.mark.parametrize("median_ms", [1.0, 105.0, 2000.0])
def test_percentiles_within_hdr_precision(median_ms: float) -> None:
    rng = np.random.default_rng(1)
    samples = rng.lognormal(np.log(median_ms), 0.6, 50_000)
    recorded: list[dict] = []
    rec = SliceRecorder(recorded.append, worker="w")
    for ms in samples:
        rec.on_request(name="op", response_time=float(ms))
    rec.close_slice()
    hist = Counts.decode(recorded[0]["ops"]["op"]["hist"])
    ordered = np.sort(samples)
    for pct in (50.0, 95.0, 99.0, 99.9):
        got = percentile_ms(hist, pct)
        # HDR rounds the rank where nearest-rank takes its ceiling: allow one rank either side,
        # then the histogram's own precision (3 significant digits).
        rank = int(np.ceil(pct / 100.0 * len(ordered)))
        low, high = ordered[rank - 2], ordered[rank]
        assert low * (1 - 1e-3) - 1e-3 <= got <= high * (1 + 1e-3) + 1e-3, pct
        assert got == pytest.approx(exact_percentile_ms(samples, pct), rel=5e-3), pct


def test_merged_slices_equal_one_histogram_of_all_samples() -> None:
    rng = np.random.default_rng(2)
    samples = rng.exponential(20.0, 30_000) + 0.5
    slices: list[dict] = []
    workers = [SliceRecorder(slices.append, worker=f"w{i}") for i in range(3)]
    single = new_histogram()
    for i, ms in enumerate(samples):
        workers[i % 3].on_request(name="op", response_time=float(ms))
        single.record_value(int(ms * 1000 + 0.5))
        if i % 7000 == 0:
            workers[i % 3].close_slice()
    for w in workers:
        w.close_slice()
    hists = [Counts.decode(s["ops"]["op"]["hist"]) for s in slices if "op" in s["ops"]]
    merged = merge_counts(hists)
    assert merged.total == len(samples)
    assert sum(s["ops"]["op"]["count"] for s in slices if "op" in s["ops"]) == len(samples)
    for pct in (50.0, 95.0, 99.0, 99.9):
        assert percentile_ms(merged, pct) == percentile_ms(single, pct)


def test_failures_partials_and_errors_are_counted() -> None:
    out: list[dict] = []
    rec = SliceRecorder(out.append, worker="w", users=lambda: 7)
    rec.on_request(name="graphql A", response_time=5.0)
    rec.on_request(
        name="graphql A",
        response_time=6.0,
        exception="GraphQL error [X]: boom",
        context={"partial": True},
    )
    rec.on_request(name="graphql A", response_time=7.0, exception=ConnectionError("refused"))
    record = rec.close_slice()
    assert record is not None
    op = record["ops"]["graphql A"]
    assert (op["count"], op["failures"], op["partial"]) == (3, 2, 1)
    assert op["errors"] == {"GraphQL error [X]: boom": 1, "ConnectionError: refused": 1}
    assert record["users"] == 7
    assert record["t_end_s"] >= record["t_start_s"]


def test_empty_slice_has_no_ops_and_clamps_extremes() -> None:
    out: list[dict] = []
    rec = SliceRecorder(out.append, worker="w")
    empty = rec.close_slice()
    assert empty is not None and empty["ops"] == {}
    rec.on_request(name="op", response_time=0.0)
    rec.on_request(name="op", response_time=10_000_000.0)
    record = rec.close_slice()
    assert record is not None
    hist = Counts.decode(record["ops"]["op"]["hist"])
    assert hist.total == 2
