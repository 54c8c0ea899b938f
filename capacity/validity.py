"""Pure run-validity checks: can this run's numbers be trusted at all?

A load generator that saturates its CPU measures its own queueing, not the system under test;
a percentile over a handful of samples is noise; an open-model run that dropped iterations
did not send the load it claims. Each check returns plain reasons (one line each) that make
the verdict `inconclusive`, plus the evidence behind them for the summary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

# Fewest samples for a figure to be trusted: at least two samples beyond a percentile,
# and enough requests that a 1% error-rate limit is not decided by one failure.
MIN_SAMPLES = {"p50_ms": 5, "p95_ms": 40, "p99_ms": 200, "error_rate": 50}
SATURATED_CORE_FRACTION = 0.9
SATURATED_TIME_FRACTION = 0.1
MAX_DROPPED_FRACTION = 0.01
LOAD_GENERATOR_TARGET = re.compile(r"^locust(-master|-worker-\d+)?$")


def is_load_generator(source: str, target: str) -> bool:
    """A resources.csv row about a Locust process (`locust`, `locust-master`, `locust-worker-N`)."""
    return source == "process" and LOAD_GENERATOR_TARGET.match(target) is not None


def load_generator_cpu(
    resources: pd.DataFrame | None, start_s: float, end_s: float
) -> dict[str, dict[str, Any]]:
    """Per Locust process over [start_s, end_s]: CPU samples, their max, and the fraction of
    samples above `SATURATED_CORE_FRACTION` of a core (samples are evenly spaced, so this is
    the fraction of the run's time)."""
    if resources is None or resources.empty:
        return {}
    rows = resources[
        [
            is_load_generator(str(s), str(t))
            for s, t in zip(resources["source"], resources["target"], strict=True)
        ]
    ]
    ts = pd.to_numeric(rows["ts_unix_s"], errors="coerce")
    rows = rows[(ts >= start_s) & (ts <= end_s + 1.0)]
    out: dict[str, dict[str, Any]] = {}
    for target, group in rows.groupby("target", sort=True):
        cpu = pd.to_numeric(group["cpu_cores"], errors="coerce").dropna()
        if cpu.empty:
            continue
        above = int((cpu > SATURATED_CORE_FRACTION).sum())
        out[str(target)] = {
            "cpu_cores_max": round(float(cpu.max()), 4),
            "cpu_cores_mean": round(float(cpu.mean()), 4),
            "samples": int(len(cpu)),
            "saturated_fraction": round(above / len(cpu), 4),
        }
    return out


def saturation_reasons(load_generators: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One reason per Locust process above 90% of a core for more than 10% of the run."""
    reasons = []
    for target, stats in sorted(load_generators.items()):
        fraction = float(stats["saturated_fraction"])
        if fraction > SATURATED_TIME_FRACTION:
            reasons.append(
                f"load generator {target} was above {SATURATED_CORE_FRACTION:.0%} of a core for "
                f"{fraction:.0%} of the run (limit {SATURATED_TIME_FRACTION:.0%}): latencies "
                "include its own queueing; add workers or lower the load"
            )
    return reasons


def sample_reasons(slos: Iterable[Mapping[str, Any]]) -> list[str]:
    """Why SLO checks could not be judged (no value, too few samples, no resource samples)."""
    reasons: list[str] = []
    for s in slos:
        if s["passed"] is not None:
            continue
        if s["kind"] == "service" and s["metric"] == "samples":
            reasons.append(f"no resource samples for service pattern '{s['target']}'")
        elif s["value"] is None:
            reasons.append(f"{s['target']}: no value for {s['metric']}")
        else:
            need = MIN_SAMPLES.get(s["metric"], 1)
            reasons.append(f"{s['target']}: too few samples for {s['metric']} (need {need})")
    return reasons


def enough_samples(metric: str, count: int) -> bool:
    return count >= MIN_SAMPLES.get(metric, 1)


def arrival_totals(records: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Sum of the slices' `arrival` counters; None when no slice has any (closed model)."""
    totals = {"scheduled": 0, "started": 0, "late": 0, "dropped": 0}
    seen = False
    for record in records:
        counts = record.get("arrival")
        if not isinstance(counts, Mapping):
            continue
        seen = True
        for key in totals:
            totals[key] += int(counts.get(key, 0) or 0)
    if not seen:
        return None
    scheduled = totals["scheduled"]
    return {
        **totals,
        "late_fraction": round(totals["late"] / scheduled, 6) if scheduled else None,
        "dropped_fraction": round(totals["dropped"] / scheduled, 6) if scheduled else None,
    }


def arrival_reasons(arrival: Mapping[str, Any] | None) -> list[str]:
    """An open-model run that dropped more than 1% of its iterations did not send its load."""
    if not arrival:
        return []
    scheduled, dropped = int(arrival["scheduled"]), int(arrival["dropped"])
    if scheduled and dropped / scheduled > MAX_DROPPED_FRACTION:
        return [
            f"arrival rate not met: {dropped} of {scheduled} scheduled iterations dropped "
            f"({dropped / scheduled:.1%} > {MAX_DROPPED_FRACTION:.0%}); raise load.max_users "
            "or check the load generator's CPU"
        ]
    return []


def run_reasons(
    operations: Mapping[str, Mapping[str, Any]],
    slos: Sequence[Mapping[str, Any]],
    *,
    partial: bool,
    expected_operations: bool = True,
    load_generators: Mapping[str, Mapping[str, Any]] | None = None,
    arrival: Mapping[str, Any] | None = None,
) -> list[str]:
    """Every reason the run is inconclusive, most fundamental first."""
    reasons: list[str] = []
    if partial:
        reasons.append("the run did not finish (partial run folder)")
    if expected_operations and not any(op.get("count") for op in operations.values()):
        reasons.append("no requests were recorded in steady state")
    reasons += saturation_reasons(load_generators or {})
    reasons += arrival_reasons(arrival)
    reasons += sample_reasons(slos)
    return reasons
