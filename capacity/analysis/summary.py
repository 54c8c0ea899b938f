"""Pure analysis of one run: exact percentiles, resource statistics, SLO checks, the verdict.

Slice records are consumed as a stream: each operation's histogram is merged as it arrives
(dense counts, never one object per slice), and the latency-over-time series is reduced to at
most `MAX_TIMELINE_POINTS` buckets as it goes, so memory stays flat whatever the run's length.

Steady-state statistics exclude the warm-up window; percentiles come from merged HDR
histograms, never from averaged percentiles. A percentile backed by too few samples is not
trusted: its SLO check is inconclusive rather than a confident pass or fail. Run validity
(load generator saturation, dropped arrivals, thin samples) lives in `validity`.

In an open-model run each operation also has `*_intended_ms` percentiles, measured from each
iteration's intended start; its latency SLOs are judged on those (`"basis": "intended"`),
because the latency from the actual send hides the stalls the load generator waited out.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from capacity.analysis.resources import chart_bucket_s, digest_resources
from capacity.analysis.temporal import TemporalTap
from capacity.analysis.validity import (
    SATURATED_TIME_FRACTION,
    Reason,
    arrival_totals_add,
    arrival_totals_finish,
    run_reasons,
    trust_rows,
)
from capacity.analysis.wire_stats import ClientFigures, add_client_figures, overhead_warnings
from capacity.runfolder.histograms import Counts, counts_len, decode_flat, percentile_ms
from capacity.runfolder.meta import RunMeta
from capacity.runfolder.summary import SUMMARY_SCHEMA
from capacity.slos import check_run, verdict
from capacity.traces.analysis import ClientTap, traces_summary

PERCENTILES = {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "p999_ms": 99.9}
MAX_TIMELINE_POINTS = 600
TIMELINE_COLUMNS = ["t_s", "group", "users", "rps", "failures_per_s", "p50_ms", "p95_ms", "p99_ms"]


@dataclass(frozen=True)
class RunWindow:
    """Where steady state starts and ends, on the slices' clock (Unix seconds)."""

    load_start_s: float
    steady_start_s: float
    end_s: float

    @property
    def steady_duration_s(self) -> float:
        return max(0.0, self.end_s - self.steady_start_s)


def scheduled_end_s(meta: RunMeta, load_start_s: float) -> float:
    """When the load was planned to stop (inf when run.json has no duration: a run until
    stopped). The last slice is flushed as Locust shuts down, a second or so after the load
    stopped; the steady window ends at the schedule, so that idle tail does not dilute rates and
    CPU means (a 6 s probe read 20% low). Its requests, started before the stop, still count.
    Locust's `-t` takes whole seconds, so a closed model without stages runs to the next one."""
    load = meta.load
    if load.duration_s is None or load.duration_s <= 0:
        return math.inf
    duration_s = load.duration_s
    if not load.stages and not load.arrival and load.stage_count == 0:
        duration_s = math.ceil(duration_s)
    return load_start_s + duration_s


def in_steady_state(record: Mapping[str, Any], steady_start_s: float) -> bool:
    """A slice counts when it starts at or after the warm-up's end, so no sample of the
    warm-up counts: the warm-up is rounded up to a whole slice (`summarize` passes -inf when
    there is no warm-up, so every slice counts, a skewed worker clock's too)."""
    return float(record["t_start_s"]) >= steady_start_s


@functools.cache
def operation_group(name: str) -> str:
    """The kind of an operation, for charts of like with like: `graphql`, `rules`, ..."""
    return name.split(" ", 1)[0] if " " in name else name


@dataclass
class _Op:
    count: int = 0
    failures: int = 0
    partial: int = 0
    count_all: int = 0
    failures_all: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    hist: Counts = field(default_factory=Counts)
    intended: Counts | None = None


@dataclass
class _Bucket:
    users: dict[str, int] = field(default_factory=dict)
    count: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    hists: dict[str, Counts] = field(default_factory=dict)


class Timeline:
    """Per time bucket and operation group: users, rates and P50/P95/P99, built as a stream.

    Buckets are finished (percentiles taken, histograms dropped) once records have moved
    `LAG_BUCKETS` past them: workers' slices arrive out of order by a slice or two at most.
    """

    LAG_BUCKETS = 8

    def __init__(self, bucket_s: float) -> None:
        self.bucket_s = bucket_s
        self._open: dict[int, _Bucket] = {}
        self._rows: list[dict[str, Any]] = []
        self._newest = -1

    def add(self, record: Mapping[str, Any]) -> int:
        """Add one slice record's counts; returns its bucket key (histograms come through
        `hist_of`, a batch at a time)."""
        key = int(float(record["t_end_s"]) // self.bucket_s)
        bucket = self._open.get(key)
        if bucket is None:
            bucket = self._open[key] = _Bucket()
        bucket.users[str(record.get("worker", ""))] = int(record.get("users", 0))
        for name, op in record["ops"].items():
            group = operation_group(name)
            bucket.count[group] += int(op.get("count", 0))
            bucket.failures[group] += int(op.get("failures", 0))
        return key

    @property
    def open_buckets(self) -> int:
        return len(self._open)

    def hist_of(self, key: int, group: str) -> Counts:
        bucket = self._open.get(key)
        if bucket is None:  # a late record for a finished bucket: counted into a new one
            bucket = self._open[key] = _Bucket()
        hist = bucket.hists.get(group)
        if hist is None:
            hist = bucket.hists[group] = Counts()
        return hist

    def finish_before(self, newest_key: int) -> None:
        """Finish the buckets records have moved `LAG_BUCKETS` past."""
        if newest_key <= self._newest:
            return
        self._newest = newest_key
        for old in [k for k in self._open if k < newest_key - self.LAG_BUCKETS]:
            self._finish(old)

    def _finish(self, key: int) -> None:
        bucket = self._open.pop(key)
        users = sum(bucket.users.values())
        for group in sorted(set(bucket.count) | set(bucket.hists)):
            hist = bucket.hists.get(group)
            row: dict[str, Any] = {
                "t_s": (key + 1) * self.bucket_s,
                "group": group,
                "users": users,
                "rps": bucket.count[group] / self.bucket_s,
                "failures_per_s": bucket.failures[group] / self.bucket_s,
            }
            for col, pct in (("p50_ms", 50.0), ("p95_ms", 95.0), ("p99_ms", 99.0)):
                row[col] = percentile_ms(hist, pct) if hist is not None else None
            self._rows.append(row)

    def frame(self) -> pd.DataFrame:
        for key in sorted(self._open):
            self._finish(key)
        rows = sorted(self._rows, key=lambda r: (r["t_s"], r["group"]))
        return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


def timeline_bucket_s(meta: RunMeta) -> float:
    """Chart bucket: the slice length, widened so a long run has at most MAX_TIMELINE_POINTS."""
    duration_s = meta.load.duration_s or 0.0
    return max(meta.slice_s, duration_s / MAX_TIMELINE_POINTS)


@dataclass
class RunStats:
    """Everything one pass over the slices collects."""

    ops: dict[str, _Op]
    first_start_s: float | None
    last_end_s: float | None
    steady_first_s: float | None  # the earliest start of a slice that counts
    client: ClientFigures
    arrival: dict[str, Any] | None
    workers: dict[str, dict[str, Any]]
    timeline: pd.DataFrame


BATCH_RECORDS = 256
MAX_OPEN_BUCKETS = 16


def collect(
    records: Iterable[Mapping[str, Any]], steady_start_s: float, bucket_s: float
) -> RunStats:
    """One pass over slice records: per-operation totals and histograms, timeline, workers.

    Histograms are decoded and added a batch of records at a time (`_Batch`): one numpy pass
    per batch instead of several per histogram, which is what makes a 24-hour run's report
    take seconds rather than minutes.
    """
    ops: dict[str, _Op] = {}
    first = last = steady_first = None
    client = ClientFigures()
    arrival: dict[str, int] | None = None
    workers: dict[str, dict[str, Any]] = {}
    timeline = Timeline(bucket_s)
    batch = _Batch()
    for record in records:
        t0, t1 = float(record["t_start_s"]), float(record["t_end_s"])
        first = t0 if first is None else min(first, t0)
        last = t1 if last is None else max(last, t1)
        steady = in_steady_state(record, steady_start_s)
        if steady:
            steady_first = t0 if steady_first is None else min(steady_first, t0)
        key = timeline.add(record)
        w = workers.setdefault(
            str(record.get("worker", "")), {"requests": 0, "last_slice_end_s": 0.0, "lost": False}
        )
        w["last_slice_end_s"] = max(w["last_slice_end_s"], t1)
        for name, raw in record["ops"].items():
            op = ops.get(name)
            if op is None:
                op = ops[name] = _Op()
            count, failures = int(raw.get("count", 0)), int(raw.get("failures", 0))
            w["requests"] += count
            op.count_all += count
            op.failures_all += failures
            text = raw.get("hist")
            if text:
                batch.add(text, op.hist if steady else None, (key, operation_group(name)))
            if not steady:
                continue
            op.count += count
            op.failures += failures
            op.partial += int(raw.get("partial", 0))
            errors = raw.get("errors")
            if errors:
                op.errors.update({str(k): int(v) for k, v in errors.items()})
            if raw.get("hist_intended"):
                if op.intended is None:
                    op.intended = Counts()
                op.intended.add_encoded(raw["hist_intended"])
        if steady:
            arrival = arrival_totals_add(arrival, record.get("arrival"))
            client.add_record(record)
        # A batch ends after BATCH_RECORDS records, or sooner when it spans many chart buckets
        # (short slices): each open bucket holds a dense histogram per kind of operation.
        if batch.records_seen(key) >= BATCH_RECORDS or timeline.open_buckets > MAX_OPEN_BUCKETS:
            batch.flush(timeline)
    batch.flush(timeline)
    return RunStats(
        ops,
        first,
        last,
        steady_first,
        client,
        arrival_totals_finish(arrival),
        workers,
        timeline.frame(),
    )


class _Batch:
    """Encoded histograms waiting to be decoded together, with where each one goes: an
    operation's steady-state total (or nowhere) and a timeline bucket of its kind."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.totals: list[Counts | None] = []
        self.slots: list[tuple[int, str]] = []
        self.records = 0
        self.newest_key = -1

    def add(self, text: str, total: Counts | None, slot: tuple[int, str]) -> None:
        self.texts.append(text)
        self.totals.append(total)
        self.slots.append(slot)

    def records_seen(self, key: int) -> int:
        self.records += 1
        self.newest_key = max(self.newest_key, key)
        return self.records

    def flush(self, timeline: Timeline) -> None:
        if self.texts:
            owner, index, values, foreign = decode_flat(self.texts)
            total_of, totals = _numbered(self.totals)
            slot_of, slots = _numbered(self.slots)
            buckets = [timeline.hist_of(key, group) for key, group in slots]
            _scatter(total_of[owner], index, values, totals)
            _scatter(slot_of[owner], index, values, buckets)
            for i in foreign:  # another tool's layout: the slow way, one at a time
                extra = Counts.decode(self.texts[i])
                if total_of[i] >= 0:
                    totals[total_of[i]].add(extra)
                buckets[slot_of[i]].add(extra)
        timeline.finish_before(self.newest_key)
        self.texts, self.totals, self.slots, self.records = [], [], [], 0


def _numbered(items: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """Each item's number among the distinct ones (-1 for None), and the distinct items."""
    numbers: dict[Any, int] = {}
    distinct: list[Any] = []
    out = []
    for item in items:
        if item is None:
            out.append(-1)
            continue
        key = id(item) if isinstance(item, Counts) else item
        number = numbers.get(key)
        if number is None:
            number = numbers[key] = len(distinct)
            distinct.append(item)
        out.append(number)
    return np.asarray(out, dtype=np.int64), distinct


SCATTER_TARGETS = 16  # histograms filled per bincount: bounds its dense scratch to ~3 MB


def _scatter(ids: np.ndarray, index: np.ndarray, values: np.ndarray, targets: list[Counts]) -> None:
    """Add each decoded count (bucket `index`, `values`) to the histogram `targets[ids]`;
    id -1 adds nowhere."""
    width = counts_len()
    for low in range(0, len(targets), SCATTER_TARGETS):
        chunk = targets[low : low + SCATTER_TARGETS]
        keep = (ids >= low) & (ids < low + len(chunk))
        if not keep.any():
            continue
        flat = np.bincount(
            (ids[keep] - low) * width + index[keep],
            weights=values[keep],
            minlength=len(chunk) * width,
        )
        for target, row in zip(chunk, flat.reshape(len(chunk), width), strict=True):
            target.counts += row.astype(np.int64)


def operation_entry(op: _Op, duration_s: float) -> dict[str, Any]:
    """One operation's row of summary.json."""
    entry: dict[str, Any] = {
        "count": op.count,
        "failures": op.failures,
        "partial": op.partial,
        "error_rate": (op.failures / op.count) if op.count else None,
        "rps": round(op.count / duration_s, 3) if duration_s > 0 else None,
    }
    for key, pct in PERCENTILES.items():
        value = percentile_ms(op.hist, pct)
        entry[key] = round(value, 3) if value is not None else None
    max_ms = op.hist.max_ms()
    entry["max_ms"] = round(max_ms, 3) if max_ms is not None else None
    if op.intended is not None:
        entry["count_intended"] = op.intended.total
        for key, pct in PERCENTILES.items():
            value = percentile_ms(op.intended, pct)
            entry[key.replace("_ms", "_intended_ms")] = (
                round(value, 3) if value is not None else None
            )
        intended_max = op.intended.max_ms()
        entry["max_intended_ms"] = round(intended_max, 3) if intended_max is not None else None
    entry["count_all"] = op.count_all
    entry["failures_all"] = op.failures_all
    entry["errors"] = dict(op.errors.most_common(5))
    return entry


@dataclass(frozen=True)
class Analysis:
    """A run analysed: the summary.json document and the timeline for charts."""

    summary: dict[str, Any]
    timeline: pd.DataFrame
    window: RunWindow
    resources_chart: pd.DataFrame | None = None


ResourceChunks = Callable[[], Iterable[pd.DataFrame]]


def summarize(
    records: Iterable[Mapping[str, Any]],
    resources: pd.DataFrame | ResourceChunks | None,
    meta: RunMeta,
    *,
    extra_reasons: Sequence[Reason] = (),
    first_start_s: float | None = None,
    spans: Iterable[Mapping[str, Any]] = (),
) -> Analysis:
    """Analyse one run from its slice records (a stream), resources and run.json.

    `resources` is a frame, or a function giving resources.csv in chunks (read after the
    slices, once the window is known, and never held whole). `first_start_s` (the earliest
    slice start) is needed only when run.json lacks `load_started_at` (run folders from
    before it was recorded).
    """
    load_start = meta.load_started_at if meta.load_started_at is not None else first_start_s
    # no sample of the warm-up counts (see in_steady_state); with none, every slice counts
    warmup_end = (load_start or 0.0) + meta.warmup_s if meta.warmup_s > 0 else float("-inf")
    tap = ClientTap(warmup_end)  # capacity.traces: sampled requests, read in the same pass
    # Temporal saturation (capacity.analysis.temporal), read in the same pass by the same rule
    temporal = TemporalTap(lambda record: in_steady_state(record, warmup_end))
    stats = collect(temporal.wrap(tap.wrap(records)), warmup_end, timeline_bucket_s(meta))
    if load_start is None:
        load_start = stats.first_start_s or 0.0
    end = stats.last_end_s if stats.last_end_s is not None else load_start + meta.warmup_s
    end = min(end, scheduled_end_s(meta, load_start))
    # steady state from the first slice that counts (the warm-up rounded up to a whole slice)
    steady_start = load_start
    if meta.warmup_s > 0:
        steady_start = stats.steady_first_s or max(load_start + meta.warmup_s, end)
    window = RunWindow(load_start, steady_start, end)
    operations = {
        name: operation_entry(stats.ops[name], window.steady_duration_s)
        for name in sorted(stats.ops)
    }
    add_client_figures(operations, stats.client)
    digest = digest_resources(
        _chunks(resources),
        steady_start_s=window.steady_start_s,
        load_start_s=window.load_start_s,
        end_s=window.end_s,
        chart_bucket_s=chart_bucket_s(meta.load.duration_s, meta.slice_s),
        host_cores=meta.host_cores,
    )
    res = digest.stats
    # --- traces: where the time goes, span SLOs (capacity.traces.analysis) ---
    traced = traces_summary(
        spans,
        tap,
        meta.slos,
        receiver=meta.get("traces"),
        steady_start_s=window.steady_start_s,
        end_s=window.end_s,
    )
    rows = check_run(meta.slos, operations, res, traced.targets) + traced.rows
    # --- end traces ---
    partial = meta.status != "complete"
    load_generators = digest.load_generators
    for worker in meta.lost_workers:
        entry = stats.workers.setdefault(
            worker, {"requests": 0, "last_slice_end_s": None, "lost": True}
        )
        entry["lost"] = True
    reasons = (
        run_reasons(
            meta,
            operations,
            rows,
            partial=partial,
            load_generators=load_generators,
            arrival=stats.arrival,
            last_slice_end_s=stats.last_end_s,
        )
        + [Reason(text) for text in traced.reasons]
        + list(extra_reasons)
    )
    # A saturated machine is marked, not a reason: the gate will not compare such runs as
    # regressions, while one run's verdict stays about its SLOs.
    machine = environment(meta, res, digest.host_saturated_fraction)
    rows = trust_rows(rows, reasons)
    texts = list(dict.fromkeys(r.text for r in reasons))
    summary = {
        "schema": SUMMARY_SCHEMA,
        "run_id": meta.run_id,
        "scenario": meta.scenario,
        "started_at": meta.started_at,
        "duration_s": (
            round(window.end_s - window.load_start_s, 3) if stats.last_end_s is not None else 0.0
        ),
        "warmup_s": meta.warmup_s,
        "steady_duration_s": round(window.steady_duration_s, 3),
        "status": "complete" if not partial else "partial",
        "verdict": verdict(rows, texts),
        "reasons": texts,
        "warnings": overhead_warnings(operations),
        "operations": operations,
        "resources": res,
        "slos": rows,
        "load_generators": load_generators,
        "arrival": stats.arrival,
        "workers": stats.workers,
        "schema_source": meta.get("schema_source"),
        "environment": machine,
        "repeat": meta.get("repeat"),
        "outages": [
            {**o, "to_s": o.get("to_s") if o.get("to_s") is not None else window.end_s}
            for o in meta.get("outages") or []
            if isinstance(o, dict) and isinstance(o.get("from_s"), int | float)
        ],
        "traces": traced.section,
    }
    saturation = temporal.summary(operations, res)
    if saturation is not None:  # runs that started workflows
        summary["temporal"] = saturation
    return Analysis(summary, stats.timeline, window, digest.chart)


def environment(
    meta: RunMeta, resources: Mapping[str, Mapping[str, Any]], saturated: float | None
) -> dict[str, Any]:
    """The machine during the steady state: how busy it was (the gate compares like with
    like), and whether it was saturated (`contended`: the figures include other work)."""
    host = resources.get("host", {})
    busy = None
    if meta.host_cores and host.get("cpu_cores_mean") is not None:
        busy = round(float(host["cpu_cores_mean"]) / meta.host_cores, 4)
    return {
        "host_cores": meta.host_cores,
        "host_busy_fraction": busy,
        "host_saturated_fraction": saturated,
        "contended": bool(saturated is not None and saturated > SATURATED_TIME_FRACTION),
    }


def _chunks(resources: pd.DataFrame | ResourceChunks | None) -> Iterable[pd.DataFrame]:
    if resources is None:
        return ()
    if isinstance(resources, pd.DataFrame):
        return (resources,)
    return resources()
