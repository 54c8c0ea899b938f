"""Pure: the answer of `capacity find` from its probes: capacity, interval, bottleneck, JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from capacity.analysis.planning import Bottleneck, first_bottleneck
from capacity.find.probe import Probe
from capacity.find.search import FAIL, PASS, Decision

FIND_SCHEMA = 1


@dataclass(frozen=True)
class ProbeStep:
    """A valid probe as a load step for `capacity.planning` (the load axis is the rate)."""

    users: float
    throughput_rps: float
    p95_ms: float
    error_rate: float
    cpu_cores_mean: Mapping[str, float]
    mem_mb_mean: Mapping[str, float]
    mem_limit_mb: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FindResult:
    scenario: str
    status: str
    reason: str
    capacity_rps: float | None
    upper_rps: float | None
    bottleneck: Bottleneck
    probes: tuple[Probe, ...]
    elapsed_s: float
    settings: Mapping[str, Any]
    slos: Sequence[Mapping[str, Any]]


def probe_steps(probes: Sequence[Probe]) -> list[ProbeStep]:
    return [
        ProbeStep(
            users=p.outcome.rate_per_s,
            throughput_rps=p.outcome.throughput_rps,
            p95_ms=p.p95_ms if p.p95_ms is not None else math.nan,
            error_rate=p.error_rate if p.error_rate is not None else math.nan,
            cpu_cores_mean=p.outcome.cpu_cores_mean,
            mem_mb_mean=p.mem_mb_mean,
        )
        for p in probes
        if p.outcome.outcome in (PASS, FAIL)
    ]


def find_bottleneck(probes: Sequence[Probe], cpu_limit_cores: Mapping[str, float]) -> Bottleneck:
    """The first service to saturate as the rate grows (`capacity.planning.first_bottleneck`)."""
    steps = probe_steps(probes)
    if not steps:
        return Bottleneck(None, None, math.inf, "no valid probe", ())
    return first_bottleneck(steps, cpu_limit_cores=dict(cpu_limit_cores))


def bottleneck_sentence(b: Bottleneck) -> str:
    if b.service is None or b.resource is None:
        return b.reason or "no service's CPU or memory neared its limit"
    trend = next(t for t in b.evidence if t.service == b.service and t.resource == b.resource)
    resource = "CPU" if b.resource == "cpu" else b.resource
    how = "reached" if trend.measured else "extrapolated to reach"
    return (
        f"first bottleneck: {b.service}'s {resource} ({how} 90% of {trend.limit:g} at "
        f"~{b.users_at_saturation:.0f}/s; {trend.utilization_at_top:.0%} at the highest rate)"
    )


def objective(slos: Sequence[Mapping[str, Any]]) -> str:
    """The scenario's SLO limits in a few words, grouped by pattern."""
    words = {"p50_ms": "P50", "p95_ms": "P95", "p99_ms": "P99", "p999_ms": "P99.9", "max_ms": "max"}
    groups: dict[tuple[str, str], list[str]] = {}
    for spec in slos:
        metric, limit = str(spec["metric"]), float(spec["limit"])
        if metric.endswith("_ms") and spec["kind"] != "service":
            text = f"{words.get(metric, metric)} < {limit:g} ms"
        elif metric == "error_rate":
            text = f"errors < {100 * limit:g}%"
        elif metric.startswith("cpu_cores"):
            text = f"CPU < {limit:g} cores"
        elif metric.startswith("mem_mb"):
            text = f"memory < {limit:g} MB"
        else:
            text = f"{metric} < {limit:g}"
        groups.setdefault((str(spec["kind"]), str(spec["pattern"])), []).append(text)
    parts = [f"{' and '.join(texts)} ({pattern})" for (_kind, pattern), texts in groups.items()]
    return "; ".join(parts) or "its SLOs"


def headline(result: FindResult) -> str:
    tail = bottleneck_sentence(result.bottleneck)
    goal = objective(result.slos)
    if result.status == "found" and result.capacity_rps is not None:
        return (
            f"Holds {goal} up to {result.capacity_rps:.0f} arrivals/s (fails at "
            f"{result.upper_rps:.0f}/s; open model, {len(result.probes)} probes); {tail}."
        )
    bounds = []
    if result.capacity_rps is not None:
        bounds.append(f"holds at {result.capacity_rps:.0f}/s")
    if result.upper_rps is not None:
        bounds.append(f"fails at {result.upper_rps:.0f}/s")
    so_far = f" (so far: {', '.join(bounds)})" if bounds else ""
    return f"Inconclusive: {result.reason}{so_far}; {tail}."


def make_result(
    scenario: str,
    decision: Decision,
    probes: Sequence[Probe],
    *,
    elapsed_s: float,
    settings: Mapping[str, Any],
    slos: Sequence[Mapping[str, Any]],
    cpu_limit_cores: Mapping[str, float],
) -> FindResult:
    return FindResult(
        scenario=scenario,
        status=decision.status or "inconclusive",
        reason=decision.reason,
        capacity_rps=decision.lower_rps,
        upper_rps=decision.upper_rps,
        bottleneck=find_bottleneck(probes, cpu_limit_cores),
        probes=tuple(probes),
        elapsed_s=elapsed_s,
        settings=dict(settings),
        slos=tuple(slos),
    )


def _number(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def result_to_json(result: FindResult) -> dict[str, Any]:
    """find.json."""
    b = result.bottleneck
    return {
        "schema": FIND_SCHEMA,
        "scenario": result.scenario,
        "status": result.status,
        "reason": result.reason,
        "headline": headline(result),
        "capacity_rps": _number(result.capacity_rps),
        "interval_rps": [_number(result.capacity_rps), _number(result.upper_rps)],
        "elapsed_s": round(result.elapsed_s, 1),
        "slos": list(result.slos),
        "bottleneck": {
            "service": b.service,
            "resource": b.resource,
            "rate_at_saturation_per_s": _number(b.users_at_saturation),
            "sentence": bottleneck_sentence(b),
            "evidence": [
                {
                    "service": t.service,
                    "resource": t.resource,
                    "limit": t.limit,
                    "utilization_at_top": _number(t.utilization_at_top),
                    "rate_at_saturation_per_s": _number(t.users_at_saturation),
                    "measured": t.measured,
                }
                for t in b.evidence
            ],
        },
        "settings": result.settings,
        "probes": [
            {
                "index": p.index,
                "rate_per_s": p.outcome.rate_per_s,
                "outcome": p.outcome.outcome,
                "verdict": p.verdict,
                "throughput_rps": _number(round(p.outcome.throughput_rps, 2)),
                "p95_ms": p.p95_ms,
                "p99_ms": p.p99_ms,
                "error_rate": p.error_rate,
                "cpu_cores_mean": dict(p.outcome.cpu_cores_mean),
                "slo_failures": list(p.slo_failures),
                "reasons": list(p.outcome.reasons),
                "duration_s": p.duration_s,
                "wall_s": round(p.wall_s, 1),
                "run_dir": p.run_dir,
                "scenario_path": p.scenario_path,
            }
            for p in result.probes
        ],
    }
