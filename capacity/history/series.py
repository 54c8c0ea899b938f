"""Pure: per-operation and per-service series over recorded runs, broken at fingerprint changes,
with change points found within each unbroken stretch.

Runs of one scenario are ordered by start time. Where two consecutive runs have different
environment fingerprints the series breaks: no change point is looked for across the break
(a new CPU limit is not a regression) and the break carries the fields that changed. Within
a stretch, E-Divisive means (`capacity.history.changepoints`) finds shifts, each with its size
and p-value. A run without a value for a metric leaves a gap and is skipped by the detector.
"""

from __future__ import annotations

import fnmatch
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from capacity.history.changepoints import ChangePointConfig, e_divisive
from capacity.history.fingerprint import changes

OPERATION_METRICS = ("p95_ms", "p99_ms", "error_rate")
SERVICE_METRICS = ("cpu_cores_mean", "mem_mb_mean")
HISTORY_SCHEMA = 1


class RunLike(Protocol):
    """What a series reads from a recorded run (`capacity.history.store.StoredRun`)."""

    @property
    def run_id(self) -> str: ...
    @property
    def scenario(self) -> str: ...
    @property
    def started_at(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def fingerprint(self) -> Mapping[str, Any]: ...
    @property
    def fingerprint_sha256(self) -> str: ...
    @property
    def operations(self) -> Mapping[str, Mapping[str, float | None]]: ...
    @property
    def resources(self) -> Mapping[str, Mapping[str, Any]]: ...


@dataclass(frozen=True)
class FingerprintBreak:
    """The series of a scenario break before run `index` (0-based): these fields changed."""

    index: int
    run_id: str
    previous_run_id: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class SeriesChangePoint:
    """A shift in one series: from run `run_id` (position `index`) on, the mean moved."""

    index: int
    run_id: str
    p_value: float
    mean_before: float
    mean_after: float
    relative_change: float


@dataclass(frozen=True)
class Series:
    """One metric of one operation or service over the runs of a scenario."""

    scenario: str
    kind: str
    target: str
    metric: str
    run_ids: tuple[str, ...]
    values: tuple[float | None, ...]
    breaks: tuple[FingerprintBreak, ...]
    change_points: tuple[SeriesChangePoint, ...]

    @property
    def name(self) -> str:
        return f"{self.target} {self.metric}"

    @property
    def last_value(self) -> float | None:
        return next((v for v in reversed(self.values) if v is not None), None)


@dataclass(frozen=True)
class ScenarioHistory:
    """The runs of one scenario, where they break, and every series."""

    scenario: str
    run_ids: tuple[str, ...]
    started_at: tuple[str, ...]
    verdicts: tuple[str, ...]
    breaks: tuple[FingerprintBreak, ...]
    series: tuple[Series, ...]


def fingerprint_breaks(runs: Sequence[RunLike]) -> tuple[FingerprintBreak, ...]:
    """Every place where consecutive runs differ in fingerprint, with the fields that changed."""
    out = []
    for i in range(1, len(runs)):
        before, after = runs[i - 1], runs[i]
        if before.fingerprint_sha256 != after.fingerprint_sha256:
            reasons = tuple(changes(before.fingerprint, after.fingerprint)) or (
                "fingerprint hash changed",
            )
            out.append(FingerprintBreak(i, after.run_id, before.run_id, reasons))
    return tuple(out)


def _seed(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def detect(
    values: Sequence[float | None],
    run_ids: Sequence[str],
    breaks: Sequence[FingerprintBreak],
    config: ChangePointConfig,
    seed_key: str,
) -> tuple[SeriesChangePoint, ...]:
    """Change points within each stretch between breaks, over the values that exist."""
    bounds = [0, *(b.index for b in breaks), len(values)]
    found: list[SeriesChangePoint] = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        positions = [i for i in range(start, end) if values[i] is not None]
        points = [float(values[i]) for i in positions]  # type: ignore[arg-type]
        if len(points) < 2 * config.min_size:
            continue
        stretch_config = replace(config, seed=_seed(config.seed, seed_key, start))
        for cp in e_divisive(points, stretch_config):
            position = positions[cp.index]
            found.append(
                SeriesChangePoint(
                    index=position,
                    run_id=run_ids[position],
                    p_value=cp.p_value,
                    mean_before=cp.mean_before,
                    mean_after=cp.mean_after,
                    relative_change=cp.relative_change,
                )
            )
    return tuple(found)


def _value(row: Mapping[str, Any] | None, metric: str) -> float | None:
    if row is None:
        return None
    value = row.get(metric)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def scenario_history(
    runs: Sequence[RunLike],
    *,
    targets: Sequence[str] = (),
    operation_metrics: Sequence[str] = OPERATION_METRICS,
    service_metrics: Sequence[str] = SERVICE_METRICS,
    config: ChangePointConfig | None = None,
) -> ScenarioHistory:
    """Series of every operation and service of one scenario's runs (oldest first).

    `targets`: shell patterns; only matching operations and services get a series. Load
    generator processes and the host are not services of the system under test.
    """
    from capacity.analysis.validity import is_load_generator

    if not runs:
        raise ValueError("no runs")
    scenarios = {run.scenario for run in runs}
    if len(scenarios) != 1:
        raise ValueError(f"runs of several scenarios: {sorted(scenarios)}")
    config = config or ChangePointConfig()
    scenario = runs[0].scenario
    breaks = fingerprint_breaks(runs)
    run_ids = tuple(run.run_id for run in runs)
    series: list[Series] = []
    operations = sorted({name for run in runs for name in run.operations})
    services = sorted(
        {
            name
            for run in runs
            for name, row in run.resources.items()
            if name != "host"
            and row.get("source") != "host"
            and not is_load_generator(str(row.get("source") or ""), name)
        }
    )
    plan = [("operation", name, operation_metrics) for name in operations] + [
        ("service", name, service_metrics) for name in services
    ]
    for kind, name, metrics in plan:
        if not _matches(name, targets):
            continue
        for metric in metrics:
            values = tuple(
                _value((run.operations if kind == "operation" else run.resources).get(name), metric)
                for run in runs
            )
            if all(v is None for v in values):
                continue
            points = detect(values, run_ids, breaks, config, f"{scenario}|{kind}|{name}|{metric}")
            series.append(Series(scenario, kind, name, metric, run_ids, values, breaks, points))
    return ScenarioHistory(
        scenario=scenario,
        run_ids=run_ids,
        started_at=tuple(run.started_at for run in runs),
        verdicts=tuple(run.verdict for run in runs),
        breaks=breaks,
        series=tuple(series),
    )


def history_to_json(histories: Sequence[ScenarioHistory]) -> dict[str, Any]:
    """The history as plain data (history.json)."""

    def number(value: float | None) -> float | None:
        return value if value is None or math.isfinite(value) else None

    return {
        "schema": HISTORY_SCHEMA,
        "scenarios": [
            {
                "scenario": h.scenario,
                "runs": [
                    {"run_id": r, "started_at": s, "verdict": v}
                    for r, s, v in zip(h.run_ids, h.started_at, h.verdicts, strict=True)
                ],
                "breaks": [
                    {
                        "index": b.index,
                        "run_id": b.run_id,
                        "previous_run_id": b.previous_run_id,
                        "reasons": list(b.reasons),
                    }
                    for b in h.breaks
                ],
                "series": [
                    {
                        "kind": s.kind,
                        "target": s.target,
                        "metric": s.metric,
                        "values": [number(v) for v in s.values],
                        "change_points": [
                            {
                                "index": c.index,
                                "run_id": c.run_id,
                                "p_value": c.p_value,
                                "mean_before": c.mean_before,
                                "mean_after": c.mean_after,
                                "relative_change": number(c.relative_change),
                            }
                            for c in s.change_points
                        ],
                    }
                    for s in h.series
                ],
            }
            for h in histories
        ],
    }
