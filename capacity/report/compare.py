"""Side-by-side figures of two runs' summaries: operations, resources, capacity figures.

Pure: two summary documents in, a JSON-ready comparison out. Percent change is relative to
the other (older or baseline) run, so "+20%" on p95_ms means this run's P95 is 20% higher.

What a single pair can show: where two runs differ, for a person to look at. What it cannot
show: whether a difference is more than run-to-run noise; one run against one run is a coin
toss at the sizes that matter (`capacity.analysis.gate`). So no change is called better or
worse here: `capacity check` with several runs per side gives that verdict (`CHECK_HINT`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

OPERATION_METRICS = ("rps", "p50_ms", "p95_ms", "p99_ms", "error_rate")
RESOURCE_METRICS = ("cpu_cores_mean", "mem_mb_max")
CHECK_HINT = (
    "One run against one run cannot tell a change from run-to-run noise: for a verdict, run "
    "each side with `capacity run --repeat 6` and compare with `capacity check`."
)


def pct_change(this: float | None, other: float | None) -> float | None:
    """(this - other) / other in percent; None when either is missing or other is 0."""
    if this is None or other is None:
        return None
    if not (math.isfinite(this) and math.isfinite(other)) or other == 0:
        return None
    return (this - other) / abs(other) * 100.0


def _row(metric: str, this: Any, other: Any) -> dict[str, Any]:
    return {"this": this, "other": other, "change_pct": pct_change(this, other)}


def _table(
    this: Mapping[str, Mapping[str, Any]],
    other: Mapping[str, Mapping[str, Any]],
    metrics: tuple[str, ...],
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(this) | set(other)):
        a, b = this.get(name, {}), other.get(name, {})
        out[name] = {
            "only_in": "this" if name not in other else ("other" if name not in this else None),
            **{m: _row(m, a.get(m), b.get(m)) for m in metrics},
        }
    return out


def _capacity_figures(summary: Mapping[str, Any]) -> dict[str, Any]:
    cap = summary.get("capacity") or {}
    slo = cap.get("slo_capacity") or {}
    steps = cap.get("steps") or []
    measured = [s["throughput_rps"] for s in steps if s.get("throughput_rps") is not None]
    return {
        "saturation_rps": (cap.get("saturation") or {}).get("rps"),
        "max_measured_rps": max(measured) if measured else None,
        "slo_max_users": slo.get("max_users"),
        "slo_max_rps": slo.get("max_rps"),
    }


def compare_summaries(this: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Per-operation and per-service figures of both runs with percent change."""
    cap_a, cap_b = _capacity_figures(this), _capacity_figures(other)
    capacity = None
    if this.get("capacity") or other.get("capacity"):
        capacity = {k: _row(k, cap_a[k], cap_b[k]) for k in cap_a}
    return {
        "this_run": this.get("run_id"),
        "other_run": other.get("run_id"),
        "other_scenario": other.get("scenario"),
        "other_verdict": other.get("verdict"),
        "operations": _table(
            this.get("operations", {}), other.get("operations", {}), OPERATION_METRICS
        ),
        "resources": _table(
            this.get("resources", {}), other.get("resources", {}), RESOURCE_METRICS
        ),
        "capacity": capacity,
        "note": CHECK_HINT,
    }
