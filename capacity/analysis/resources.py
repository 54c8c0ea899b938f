"""Pure: a run's resource samples reduced as a stream of chunks.

resources.csv of a day at 1 Hz is ~700,000 rows; the analysis never needs them all at once:
per target, the steady-state mean and peak (the summary), each Locust process's CPU and how
often it was saturated (validity), and at most `MAX_CHART_POINTS` points per target for the
charts. Fed chunk by chunk, memory stays flat; a whole frame is one chunk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from capacity.analysis.validity import (
    LOAD_GENERATOR_TARGET,
    SATURATED_CORE_FRACTION,
)

MAX_CHART_POINTS = 600
CHART_COLUMNS = ["ts_unix_s", "source", "target", "cpu_cores", "mem_mb"]


@dataclass
class _Stats:
    source: str | None = None
    rows: int = 0
    cpu_sum: float = 0.0
    cpu_n: int = 0
    cpu_max: float = -np.inf
    mem_sum: float = 0.0
    mem_n: int = 0
    mem_max: float = -np.inf
    above: int = 0  # CPU samples above SATURATED_CORE_FRACTION (load generators)

    def add(self, rows: pd.DataFrame) -> None:
        if self.source is None and len(rows):
            self.source = str(rows["source"].iloc[0])
        self.rows += len(rows)
        cpu = rows["cpu_cores"].dropna().to_numpy(dtype=float)
        mem = rows["mem_mb"].dropna().to_numpy(dtype=float)
        if len(cpu):
            self.cpu_sum += float(cpu.sum())
            self.cpu_n += len(cpu)
            self.cpu_max = max(self.cpu_max, float(cpu.max()))
            self.above += int((cpu > SATURATED_CORE_FRACTION).sum())
        if len(mem):
            self.mem_sum += float(mem.sum())
            self.mem_n += len(mem)
            self.mem_max = max(self.mem_max, float(mem.max()))

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "cpu_cores_mean": round(self.cpu_sum / self.cpu_n, 4) if self.cpu_n else None,
            "cpu_cores_max": round(self.cpu_max, 4) if self.cpu_n else None,
            "mem_mb_mean": round(self.mem_sum / self.mem_n, 2) if self.mem_n else None,
            "mem_mb_max": round(self.mem_max, 2) if self.mem_n else None,
            "samples": self.rows,
        }


@dataclass
class ResourceDigest:
    """What the analysis and the charts take from resources.csv."""

    stats: dict[str, dict[str, Any]]
    load_generators: dict[str, dict[str, Any]]
    chart: pd.DataFrame | None
    sampled: bool = field(default=False)
    host_saturated_fraction: float | None = None  # steady-state host samples near all cores


def digest_resources(
    chunks: Iterable[pd.DataFrame],
    *,
    steady_start_s: float,
    load_start_s: float,
    end_s: float,
    chart_bucket_s: float,
    host_cores: float | None = None,
) -> ResourceDigest:
    """Steady-state stats per target (all rows when none fall in the window, as before),
    Locust processes' CPU over the whole load, and a chart series of at most one point per
    `chart_bucket_s` per target."""
    steady: dict[str, _Stats] = {}
    everything: dict[str, _Stats] = {}
    generators: dict[str, _Stats] = {}
    chart_parts: list[pd.DataFrame] = []
    sampled = False
    host_n = host_hot = 0
    for chunk in chunks:
        if chunk.empty:
            continue
        sampled = True
        ts = chunk["ts_unix_s"]
        _add_groups(everything, chunk)
        inside = chunk[(ts >= steady_start_s) & (ts <= end_s + 1.0)]
        _add_groups(steady, inside)
        if host_cores:
            host = inside.loc[inside["source"].astype(str) == "host", "cpu_cores"].dropna()
            host_n += len(host)
            host_hot += int((host > SATURATED_CORE_FRACTION * host_cores).sum())
        targets = chunk["target"].astype(str)
        is_generator = (chunk["source"].astype(str) == "process") & targets.str.match(
            LOAD_GENERATOR_TARGET
        )
        _add_groups(generators, chunk[is_generator & (ts >= load_start_s) & (ts <= end_s + 1.0)])
        chart_parts.append(_chart_points(chunk, chart_bucket_s))
    stats = steady if steady else everything
    load_generators = {
        target: {
            "cpu_cores_max": round(s.cpu_max, 4),
            "cpu_cores_mean": round(s.cpu_sum / s.cpu_n, 4),
            "samples": s.cpu_n,
            "saturated_fraction": round(s.above / s.cpu_n, 4),
        }
        for target, s in sorted(generators.items())
        if s.cpu_n
    }
    chart = _merge_chart(chart_parts) if chart_parts else None
    return ResourceDigest(
        {t: stats[t].summary() for t in sorted(stats)},
        load_generators,
        chart,
        sampled,
        round(host_hot / host_n, 4) if host_n else None,
    )


def _add_groups(into: dict[str, _Stats], rows: pd.DataFrame) -> None:
    if rows.empty:
        return
    for target, group in rows.groupby(rows["target"].astype(str), sort=False):
        into.setdefault(str(target), _Stats()).add(group)


def _chart_points(chunk: pd.DataFrame, bucket_s: float) -> pd.DataFrame:
    """Means per target per chart bucket (a chunk's partial sums are merged later)."""
    frame = chunk[CHART_COLUMNS].copy()
    frame["source"] = frame["source"].astype(str)
    frame["target"] = frame["target"].astype(str)
    frame["bucket"] = (frame["ts_unix_s"] // bucket_s).astype(np.int64)
    grouped = frame.groupby(["target", "source", "bucket"], sort=False)
    sums = grouped[["ts_unix_s", "cpu_cores", "mem_mb"]].sum(min_count=1)
    counts = grouped[["ts_unix_s", "cpu_cores", "mem_mb"]].count()
    return pd.concat([sums, counts.add_suffix("_n")], axis=1).reset_index()


def _merge_chart(parts: list[pd.DataFrame]) -> pd.DataFrame:
    merged = pd.concat(parts).groupby(["target", "source", "bucket"], sort=True).sum(min_count=1)

    def mean(column: str) -> pd.Series:
        counts = merged[f"{column}_n"]
        return merged[column] / counts.where(counts > 0)

    out = pd.DataFrame(
        {"ts_unix_s": mean("ts_unix_s"), "cpu_cores": mean("cpu_cores"), "mem_mb": mean("mem_mb")}
    ).reset_index()
    return out[CHART_COLUMNS].sort_values(["ts_unix_s"], kind="stable").reset_index(drop=True)


def chart_bucket_s(load_duration_s: float | None, slice_s: float) -> float:
    """One chart point per second (the sample rate) until a run is long enough to need wider
    buckets for MAX_CHART_POINTS."""
    return max(1.0, (load_duration_s or 0.0) / MAX_CHART_POINTS, slice_s / 2.0)
