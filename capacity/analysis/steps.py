"""Per-step statistics of a stepped load run: steady windows, latency, resources, Little's law.

Pure functions over plain data (pandas frames, HdrHistogram objects); reading the run folder
belongs to `capacity.runfolder`. A "step" is a run of consecutive slices with the same user
count; only its steady part (after the ramp into it) is summarised, because the slices in
which users are still being spawned under-count throughput and mix two load levels.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from hdrh.histogram import HdrHistogram

from capacity.errors import CapacityError
from capacity.runfolder.histograms import Counts, json_safe, percentile_ms

SLICE_COLUMNS = ("t_start_s", "t_end_s", "users", "count", "failures")
RESOURCE_COLUMNS = ("ts_unix_s", "source", "target", "cpu_cores", "mem_mb")
# When a target is reported by several sources, the most specific one wins.
SOURCE_PREFERENCE = ("container", "process")
US_PER_MS = 1000.0


class StepLike(Protocol):
    """What the models read from a step (`capacity.analysis.steps.StepStats` satisfies it)."""

    @property
    def users(self) -> float: ...
    @property
    def throughput_rps(self) -> float: ...
    @property
    def p95_ms(self) -> float: ...
    @property
    def error_rate(self) -> float: ...
    @property
    def cpu_cores_mean(self) -> Mapping[str, float]: ...
    @property
    def mem_mb_mean(self) -> Mapping[str, float]: ...
    @property
    def mem_limit_mb(self) -> Mapping[str, float]: ...


@dataclass(frozen=True)
class StepWindow:
    """The steady part of one load step: [start_s, end_s] at a constant user count."""

    users: float
    start_s: float
    end_s: float
    step_start_s: float
    n_slices: int
    warmup_slices_dropped: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class LatencyPercentiles:
    """Percentiles of a merged latency histogram, in milliseconds (NaN when nothing recorded)."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


@dataclass(frozen=True)
class StepStats:
    """What one steady step measured; per-service dicts are keyed by service name.

    `cpu_s_per_request` is mean cores / throughput (cores are CPU-seconds per second).
    `littles_law_ratio` is throughput x (mean response + think time) / users: 1.0 for a
    consistent closed-loop step. Treat the dicts as read-only.
    """

    users: float
    start_s: float
    end_s: float
    duration_s: float
    n_slices: int
    requests: int
    failures: int
    throughput_rps: float
    ok_throughput_rps: float
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    cpu_cores_mean: dict[str, float] = field(default_factory=dict)
    cpu_cores_max: dict[str, float] = field(default_factory=dict)
    mem_mb_mean: dict[str, float] = field(default_factory=dict)
    mem_limit_mb: dict[str, float] = field(default_factory=dict)
    cpu_s_per_request: dict[str, float] = field(default_factory=dict)
    mem_mb_per_user: dict[str, float] = field(default_factory=dict)
    host_cpu_cores_mean: float = math.nan
    littles_law_concurrency: float = math.nan
    littles_law_ratio: float = math.nan
    littles_law_ok: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""
        return {k: _json_safe(v) for k, v in asdict(self).items()}


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return json_safe(value)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CapacityError(f"{what}: missing column(s) {', '.join(missing)}")


def _slice_rates(frame: pd.DataFrame) -> np.ndarray:
    duration_s = (frame["t_end_s"] - frame["t_start_s"]).to_numpy(dtype=float)
    counts = frame["count"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(duration_s > 0, counts / duration_s, np.nan)


def _record_row(record: Mapping[str, Any], operations: Collection[str] | None) -> dict[str, Any]:
    count = failures = 0
    hists: list[Any] = []
    for name, op in record.get("ops", {}).items():
        if operations is not None and name not in operations:
            continue
        count += int(op.get("count", 0))
        failures += int(op.get("failures", 0))
        hist = op.get("hist")
        if hist:
            hists.append(hist)  # kept encoded: decoded only when a window is merged
    return {
        "t_start_s": float(record["t_start_s"]),
        "t_end_s": float(record["t_end_s"]),
        "worker": str(record.get("worker", "")),
        "users": float(record.get("users", 0)),
        "count": count,
        "failures": failures,
        "hist": hists,
    }


def slices_frame(
    records: Iterable[Mapping[str, Any]],
    operations: Collection[str] | None = None,
    bucket_s: float | None = None,
    *,
    with_hist: bool = True,
) -> pd.DataFrame:
    """Slice records (slices.jsonl objects) as one row per time slice, summed over operations.

    With one worker each record is a row. Workers close slices on their own clocks, so with
    several, records are put in buckets of `bucket_s` (default: the median slice length) by
    their midpoint, counts summed and users summed over workers (each reports its own).
    `hist` holds the list of the row's histograms as encoded in the slices (decoded only when
    a step's window is merged, so a long run's frame stays small).
    """
    rows = [_record_row(r, operations) for r in records]
    if not with_hist:
        for row in rows:
            row["hist"] = []
    columns = [*SLICE_COLUMNS, "hist"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows).sort_values("t_start_s").reset_index(drop=True)
    if frame["worker"].nunique() <= 1:
        return frame[columns]
    width_s = bucket_s or float((frame["t_end_s"] - frame["t_start_s"]).median())
    origin_s = float(frame["t_start_s"].min())
    mid_s = (frame["t_start_s"] + frame["t_end_s"]) / 2.0
    frame["bucket"] = ((mid_s - origin_s) // width_s).astype(int)
    out = []
    for bucket, group in frame.groupby("bucket", sort=True):
        start_s = origin_s + int(bucket) * width_s
        out.append(
            {
                "t_start_s": max(start_s, float(group["t_start_s"].min())),
                "t_end_s": min(start_s + width_s, float(group["t_end_s"].max())),
                "users": float(group.groupby("worker")["users"].max().sum()),
                "count": int(group["count"].sum()),
                "failures": int(group["failures"].sum()),
                "hist": [h for hists in group["hist"] for h in hists],
            }
        )
    return pd.DataFrame(out, columns=columns)


def find_steady_windows(
    slices: pd.DataFrame,
    warmup_slices: int = 1,
    stable_fraction: float = 0.85,
    min_steady_slices: int = 1,
) -> list[StepWindow]:
    """Split a per-slice series into steps of constant users and keep each step's steady part.

    `slices` has one row per time slice (already summed over workers and operations) with
    columns t_start_s, t_end_s, users, count. Per step, the first `warmup_slices` slices are
    dropped (users were being spawned in them), then further leading slices while their
    throughput is off the step's median by more than 1 - `stable_fraction` (connection set-up,
    caches warming). A step left with fewer than `min_steady_slices` slices is a ramp
    passing through and is skipped, as are steps at zero users.
    """
    _require_columns(slices, ("t_start_s", "t_end_s", "users", "count"), "slices")
    if slices["t_start_s"].duplicated().any():
        raise CapacityError(
            "slices: several rows share a t_start_s; sum them over workers and operations first"
        )
    ordered = slices.sort_values("t_start_s").reset_index(drop=True)
    users = ordered["users"].to_numpy(dtype=float)
    rates = _slice_rates(ordered)
    windows: list[StepWindow] = []
    boundaries = np.flatnonzero(np.diff(users) != 0) + 1
    for run in np.split(np.arange(len(ordered)), boundaries):
        if len(run) == 0 or users[run[0]] <= 0:
            continue
        kept = run[warmup_slices:]
        if len(kept) == 0 or len(kept) < min_steady_slices:
            continue
        median_rps = float(np.nanmedian(rates[kept]))
        first = 0
        tolerance = (1.0 - stable_fraction) * median_rps
        while (
            len(kept) - first > min_steady_slices
            and math.isfinite(median_rps)
            and not abs(rates[kept[first]] - median_rps) <= tolerance
        ):
            first += 1
        kept = kept[first:]
        windows.append(
            StepWindow(
                users=float(users[run[0]]),
                start_s=float(ordered["t_start_s"].iloc[kept[0]]),
                end_s=float(ordered["t_end_s"].iloc[kept[-1]]),
                step_start_s=float(ordered["t_start_s"].iloc[run[0]]),
                n_slices=len(kept),
                warmup_slices_dropped=len(run) - len(kept),
            )
        )
    return windows


def _flatten_histograms(cells: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for cell in cells:
        if cell is None or (isinstance(cell, float) and math.isnan(cell)):
            continue
        if isinstance(cell, str | Counts | HdrHistogram):
            out.append(cell)
        else:
            out.extend(h for h in cell if h is not None)
    return out


def merge_histograms(histograms: Iterable[Any]) -> Counts | None:
    """Add histograms (encoded text, `Counts` or HdrHistogram) into new counts; None if none.

    Merging counts, not averaging per-slice percentiles, is what makes a step's P95 exact.
    """
    merged: Counts | None = None
    for hist in histograms:
        merged = merged or Counts()
        if isinstance(hist, str):
            merged.add_encoded(hist)
        elif isinstance(hist, Counts):
            merged.add(hist)
        else:
            merged.add(Counts.from_hdr(hist))
    return merged


def latency_percentiles_ms(histograms: Iterable[Any]) -> LatencyPercentiles:
    """P50/P95/P99, mean and max in ms of histograms recorded in microseconds, merged; the
    percentiles are the project's one definition (`capacity.runfolder.histograms`)."""
    merged = merge_histograms(histograms)
    if merged is None or merged.total == 0:
        nan = math.nan
        return LatencyPercentiles(0, nan, nan, nan, nan, nan)

    def pct(p: float) -> float:
        value = percentile_ms(merged, p)
        return math.nan if value is None else value

    return LatencyPercentiles(
        count=merged.total,
        p50_ms=pct(50.0),
        p95_ms=pct(95.0),
        p99_ms=pct(99.0),
        mean_ms=merged.mean_ms() or math.nan,
        max_ms=merged.max_ms() or math.nan,
    )


def _service_rows(resources: pd.DataFrame) -> pd.DataFrame:
    """Per-service rows only, one source per target (container over process)."""
    rows = resources[resources["source"] != "host"]
    keep = []
    for _target, group in rows.groupby("target", sort=True):
        sources = set(group["source"])
        chosen = next((s for s in SOURCE_PREFERENCE if s in sources), sorted(sources)[0])
        keep.append(group[group["source"] == chosen])
    return pd.concat(keep) if keep else rows.iloc[0:0]


def _resource_means(
    resources: pd.DataFrame | None, start_s: float, end_s: float
) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, float], float]:
    """Mean/max cores, mean memory and memory limit per service, and host cores, in a window.

    A sample at ts covers the interval before it, so samples in (start_s, end_s] are used.
    """
    if resources is None or resources.empty:
        return {}, {}, {}, {}, math.nan
    ts = resources["ts_unix_s"].astype(float)
    inside = resources[(ts > start_s) & (ts <= end_s)]
    cpu_mean: dict[str, float] = {}
    cpu_max: dict[str, float] = {}
    mem_mean: dict[str, float] = {}
    mem_limit: dict[str, float] = {}
    for target, group in _service_rows(inside).groupby("target", sort=True):
        cpu = pd.to_numeric(group["cpu_cores"], errors="coerce").dropna()
        mem = pd.to_numeric(group["mem_mb"], errors="coerce").dropna()
        if len(cpu):
            cpu_mean[str(target)] = float(cpu.mean())
            cpu_max[str(target)] = float(cpu.max())
        if len(mem):
            mem_mean[str(target)] = float(mem.mean())
        if "mem_limit_mb" in group.columns:
            limit = pd.to_numeric(group["mem_limit_mb"], errors="coerce").dropna()
            if len(limit):
                mem_limit[str(target)] = float(limit.iloc[-1])
    host = inside[inside["source"] == "host"]
    host_cpu = pd.to_numeric(host["cpu_cores"], errors="coerce").dropna()
    host_mean = float(host_cpu.mean()) if len(host_cpu) else math.nan
    return cpu_mean, cpu_max, mem_mean, mem_limit, host_mean


def littles_law_check(
    users: float,
    throughput_rps: float,
    mean_response_ms: float,
    think_time_s: float | None,
    tolerance: float = 0.25,
) -> tuple[float, float, bool | None]:
    """Concurrency implied by Little's law, its ratio to users, and whether that is plausible.

    In a closed loop N = X (R + Z). With the think time Z known the ratio must be within
    `tolerance` of 1; without it only X R <= N can be checked (no more requests can be in
    flight than there are users), so a ratio above 1 + tolerance is flagged.
    Returns (concurrency, ratio, ok); ok is None when the inputs are not finite.
    """
    think_s = think_time_s or 0.0
    concurrency = throughput_rps * (mean_response_ms / US_PER_MS + think_s)
    if not (math.isfinite(concurrency) and users > 0):
        return concurrency, math.nan, None
    ratio = concurrency / users
    if think_time_s is None:
        return concurrency, ratio, ratio <= 1.0 + tolerance
    return concurrency, ratio, abs(ratio - 1.0) <= tolerance


def window_histograms(
    records: Iterable[Mapping[str, Any]],
    windows: Sequence[StepWindow],
    operations: Collection[str] | None = None,
) -> list[Counts]:
    """One merged histogram per window, streamed from slice records (a slice belongs to the
    window holding its midpoint), so a long run is never held in memory."""
    eps = 1e-6
    starts = [w.start_s for w in windows]
    out = [Counts() for _ in windows]
    for record in records:
        mid = (float(record["t_start_s"]) + float(record["t_end_s"])) / 2.0
        i = bisect.bisect_right(starts, mid + eps) - 1
        if i < 0 or mid > windows[i].end_s + eps:
            continue
        for name, op in record.get("ops", {}).items():
            if (operations is None or name in operations) and op.get("hist"):
                out[i].add_encoded(op["hist"])
    return out


def summarize_step(
    window: StepWindow,
    slices: pd.DataFrame,
    resources: pd.DataFrame | None = None,
    think_time_s: float | None = None,
    littles_tolerance: float = 0.25,
    hist: Counts | None = None,
) -> StepStats:
    """Statistics of one steady window: throughput, latency, errors, resources, Little's law.

    `slices` is as for `find_steady_windows`, plus `failures` and optionally `hist` (a
    histogram in microseconds: encoded text, Counts or HdrHistogram, a list of them, or None);
    `hist`, when given, replaces that column. `resources` follows resources.csv's columns.
    """
    _require_columns(slices, SLICE_COLUMNS, "slices")
    eps = 1e-6
    inside = slices[
        (slices["t_start_s"] >= window.start_s - eps) & (slices["t_end_s"] <= window.end_s + eps)
    ]
    duration_s = float((inside["t_end_s"] - inside["t_start_s"]).sum())
    requests = int(inside["count"].sum())
    failures = int(inside["failures"].sum())
    throughput = requests / duration_s if duration_s > 0 else math.nan
    ok_throughput = (requests - failures) / duration_s if duration_s > 0 else math.nan
    error_rate = failures / requests if requests else math.nan
    if hist is not None:
        latency = latency_percentiles_ms([hist])
    else:
        hist_cells = inside["hist"] if "hist" in inside.columns else []
        latency = latency_percentiles_ms(_flatten_histograms(hist_cells))
    if resources is not None:
        _require_columns(resources, RESOURCE_COLUMNS, "resources")
    cpu_mean, cpu_max, mem_mean, mem_limit, host_cpu = _resource_means(
        resources, window.start_s, window.end_s
    )
    cpu_per_req = {
        svc: cores / throughput
        for svc, cores in cpu_mean.items()
        if math.isfinite(throughput) and throughput > 0
    }
    mem_per_user = {svc: mb / window.users for svc, mb in mem_mean.items() if window.users > 0}
    concurrency, ratio, ok = littles_law_check(
        window.users, throughput, latency.mean_ms, think_time_s, littles_tolerance
    )
    return StepStats(
        users=window.users,
        start_s=window.start_s,
        end_s=window.end_s,
        duration_s=duration_s,
        n_slices=len(inside),
        requests=requests,
        failures=failures,
        throughput_rps=throughput,
        ok_throughput_rps=ok_throughput,
        error_rate=error_rate,
        p50_ms=latency.p50_ms,
        p95_ms=latency.p95_ms,
        p99_ms=latency.p99_ms,
        mean_ms=latency.mean_ms,
        cpu_cores_mean=cpu_mean,
        cpu_cores_max=cpu_max,
        mem_mb_mean=mem_mean,
        mem_limit_mb=mem_limit,
        cpu_s_per_request=cpu_per_req,
        mem_mb_per_user=mem_per_user,
        host_cpu_cores_mean=host_cpu,
        littles_law_concurrency=concurrency,
        littles_law_ratio=ratio,
        littles_law_ok=ok,
    )


def summarize_steps(
    windows: Sequence[StepWindow],
    slices: pd.DataFrame,
    resources: pd.DataFrame | None = None,
    think_time_s: float | None = None,
    littles_tolerance: float = 0.25,
    hists: Sequence[Counts] | None = None,
) -> list[StepStats]:
    """`summarize_step` for every window, in the windows' order; empty windows are skipped.

    `hists` (one per window, from `window_histograms`) replaces the frame's `hist` column."""
    stats = [
        summarize_step(
            w, slices, resources, think_time_s, littles_tolerance, hists[i] if hists else None
        )
        for i, w in enumerate(windows)
    ]
    return [s for s in stats if s.requests > 0]


def inconsistent_steps(steps: Sequence[StepStats]) -> list[StepStats]:
    """Steps whose Little's law check failed (for the report's warning list)."""
    return [s for s in steps if s.littles_law_ok is False]


def steps_by_users(steps: Iterable[StepStats]) -> list[StepStats]:
    """Steps sorted by user count (a run may step down as well as up)."""
    return sorted(steps, key=lambda s: s.users)


def per_service(steps: Sequence[StepStats], key: str) -> Mapping[str, list[float]]:
    """One list per service of a per-service field across steps (NaN where missing)."""
    services = sorted({svc for s in steps for svc in getattr(s, key)})
    return {svc: [getattr(s, key).get(svc, math.nan) for s in steps] for svc in services}
