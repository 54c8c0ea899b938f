"""A stepped run's capacity analysis: slice records and resources in, steps and models out.

I/O-free glue between the run folder's data (`capacity.runfolder`) and the models
(`steps`, `model`, `planning` in `capacity.analysis`), so the report builder only reads
files and renders. A run gets a capacity analysis when its load had at least two stages;
with fewer than `MIN_DISTINCT_POINTS` steps everything but the USL fit is still computed,
and the fit says why it could not be made.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from capacity.analysis.model import (
    Knee,
    SloCapacity,
    UslFit,
    detect_knee,
    fit_usl,
    slo_limited_capacity,
)
from capacity.analysis.planning import (
    Bottleneck,
    DemandModel,
    Projection,
    estimate_demand,
    first_bottleneck,
    project,
)
from capacity.analysis.steps import (
    StepStats,
    find_steady_windows,
    slices_frame,
    steps_by_users,
    summarize_steps,
    window_histograms,
)
from capacity.slos import SloSpec, applicable

CAPACITY_SCHEMA = 1
DEFAULT_HEADROOM = 0.3
# Without a target, project for twice the highest measured throughput.
DEFAULT_TARGET_FACTOR = 2.0
PREFERRED_SLO_PATTERN = "graphql *"
# Resource targets of the load generator itself (`locust`, `locust-master`, `locust-worker-N`):
# sampled for the record, but not part of the system whose capacity is planned.
LOAD_GENERATOR_PREFIX = "locust"
HOST_SATURATED_FRACTION = 0.9
DEFAULT_CPU_LIMIT_CORES = 1.0


@dataclass(frozen=True)
class SloChoice:
    """The latency objective capacity is measured against, and the operations it covers."""

    pattern: str
    p95_limit_ms: float
    error_rate_limit: float | None
    operations: tuple[str, ...]


@dataclass(frozen=True)
class Saturation:
    """The throughput the deployment saturates at, and which bound gave it.

    Two bounds: the USL's maximum, fitted to the measured curve, and the utilization law
    X <= (cores - base) / CPU-seconds per request of each service. The USL alone overshoots
    when the data bend only a little and sags when one step was starved by a noisy
    neighbour; the utilization bound ignores contention the service does not see in its own
    CPU time (a starved core). When the service that sets the bound was measured at its limit
    the bound was reached and is the estimate; otherwise the lower of the two is.
    """

    rps: float
    basis: str
    usl_rps: float
    utilization_bound_rps: float
    utilization_service: str | None


@dataclass(frozen=True)
class SweepResult:
    """Everything the report says about capacity; `slo_steps` cover the SLO's operations."""

    steps: tuple[StepStats, ...]
    slo: SloChoice | None
    slo_steps: tuple[StepStats, ...]
    usl: UslFit
    throughput_knee: Knee
    latency_knee: Knee
    slo_capacity: SloCapacity | None
    bottleneck: Bottleneck
    demand: DemandModel
    saturation: Saturation
    projection: Projection | None
    think_time_s: float | None
    warnings: tuple[str, ...]


def choose_slo(slos: Sequence[SloSpec], operation_names: Iterable[str]) -> SloChoice | None:
    """The "graphql *" P95 objective if it covers recorded operations, else the tightest P95.

    Only limits that apply to at least one recorded operation count (by the one precedence
    rule, `capacity.slos.applicable`): an objective on traffic the sweep did not send says
    nothing about its capacity.
    """
    covered: dict[tuple[str, float], list[str]] = {}
    errors: dict[tuple[str, float], float | None] = {}
    for name in sorted(set(operation_names)):
        limits = applicable(slos, "operation", name)
        p95 = limits.get("p95_ms")
        if p95 is None:
            continue
        key = (p95.pattern, p95.limit)
        covered.setdefault(key, []).append(name)
        error = limits.get("error_rate")
        errors.setdefault(key, error.limit if error is not None else None)
    candidates = [
        SloChoice(pattern, limit, errors[(pattern, limit)], tuple(ops))
        for (pattern, limit), ops in covered.items()
    ]
    if not candidates:
        return None
    preferred = [c for c in candidates if c.pattern == PREFERRED_SLO_PATTERN]
    return preferred[0] if preferred else min(candidates, key=lambda c: c.p95_limit_ms)


def utilization_bound(
    demand: DemandModel,
    cpu_limit_cores: Mapping[str, float] | None = None,
    default_cpu_limit_cores: float = DEFAULT_CPU_LIMIT_CORES,
) -> tuple[float, str | None]:
    """Highest req/s the CPU demand allows, and the service that sets it (utilization law)."""
    best_rps, best_service = math.inf, None
    for name, d in demand.services.items():
        limit = (cpu_limit_cores or {}).get(name, default_cpu_limit_cores)
        if not (d.cpu_s_per_request > 0 and limit > d.cpu_cores_base):
            continue
        rps = (limit - d.cpu_cores_base) / d.cpu_s_per_request
        if rps < best_rps:
            best_rps, best_service = rps, name
    return best_rps, best_service


def _measured_at_limit(bottleneck: Bottleneck | None, service: str | None) -> bool:
    if bottleneck is None or service is None:
        return False
    return any(
        t.service == service and t.resource == "cpu" and t.measured for t in bottleneck.evidence
    )


def saturation_estimate(
    usl: UslFit,
    demand: DemandModel,
    cpu_limit_cores: Mapping[str, float] | None = None,
    bottleneck: Bottleneck | None = None,
) -> Saturation:
    """The saturation throughput from the USL and the utilization law (see `Saturation`).

    `bottleneck` carries each service's CPU trend; a trend that reached the saturated
    fraction of its limit in a measured step makes the utilization bound the estimate.
    """
    usl_rps = usl.max_throughput_rps if usl.ok else math.nan
    bound_rps, service = utilization_bound(demand, cpu_limit_cores)
    if math.isfinite(bound_rps) and _measured_at_limit(bottleneck, service):
        return Saturation(bound_rps, "utilization law, reached", usl_rps, bound_rps, service)
    if math.isfinite(usl_rps) and not usl_rps > bound_rps:
        return Saturation(usl_rps, "usl", usl_rps, bound_rps, service)
    if math.isfinite(bound_rps):
        return Saturation(bound_rps, "utilization law", usl_rps, bound_rps, service)
    return Saturation(math.nan, "none", usl_rps, bound_rps, service)


def system_resources(resources: pd.DataFrame | None) -> pd.DataFrame | None:
    """Resource rows without the load generator's own processes."""
    if resources is None or resources.empty:
        return resources
    generator = resources["target"].astype(str).str.startswith(LOAD_GENERATOR_PREFIX)
    return resources[~generator]


def host_saturation_warning(steps: Sequence[StepStats], host_cores: float | None) -> str | None:
    """Say so when the machine itself ran out of CPU: then the limit measured is partly its own."""
    if not host_cores:
        return None
    hot = [
        s
        for s in steps_by_users(steps)
        if math.isfinite(s.host_cpu_cores_mean)
        and s.host_cpu_cores_mean >= HOST_SATURATED_FRACTION * host_cores
    ]
    if not hot:
        return None
    return (
        f"the host's CPU was saturated from {hot[0].users:g} users "
        f"({hot[0].host_cpu_cores_mean:.2f} of {host_cores:g} cores): the services and the load "
        "generator (and anything else on the machine) competed for CPU, so the limit measured "
        "is partly the machine's"
    )


def analyse_sweep(
    records: Iterable[Mapping[str, Any]],
    resources: pd.DataFrame | None,
    *,
    slos: Sequence[SloSpec] = (),
    think_time_s: float | None = None,
    target_rps: float | None = None,
    headroom: float = DEFAULT_HEADROOM,
    cpu_limit_cores: Mapping[str, float] | None = None,
    host_cores: float | None = None,
) -> SweepResult | None:
    """Steps, USL fit, knees, SLO-limited capacity, bottleneck and projection of a sweep.

    `cpu_limit_cores` overrides the 1-core limit per service (a multi-threaded server);
    `host_cores` lets the analysis say when the machine itself was saturated. Returns None
    when fewer than two steady steps are found: one load level has no curve.

    `records` is iterated up to four times (a `capacity.runfolder.SliceReader` re-reads the
    file each time): counts first, then one histogram per step, never all slices at once.
    """
    frame = slices_frame(records, with_hist=False)
    if frame.empty:
        return None
    windows = find_steady_windows(frame, min_steady_slices=2)
    system = system_resources(resources)
    operation_names = {name for r in records for name in r.get("ops", {})}
    hists = window_histograms(records, windows)
    steps = tuple(summarize_steps(windows, frame, system, think_time_s, hists=hists))
    if len({s.users for s in steps}) < 2:
        return None
    users = [s.users for s in steps]
    throughput = [s.throughput_rps for s in steps]
    usl = fit_usl(users, throughput)
    throughput_knee = detect_knee(users, throughput, curve="throughput")
    slo = choose_slo(slos, operation_names)
    slo_steps: tuple[StepStats, ...] = ()
    slo_capacity = None
    if slo is not None:
        covered = set(slo.operations)
        slo_frame = slices_frame(records, operations=covered, with_hist=False)
        slo_hists = window_histograms(records, windows, operations=covered)
        slo_steps = tuple(summarize_steps(windows, slo_frame, None, None, hists=slo_hists))
        slo_capacity = _slo_capacity(steps, slo_steps, slo)
    latency_source = slo_steps or steps
    latency_knee = detect_knee(
        [s.users for s in latency_source], [s.p95_ms for s in latency_source], curve="latency"
    )
    bottleneck = first_bottleneck(steps, cpu_limit_cores=cpu_limit_cores)
    demand = estimate_demand(steps)
    saturation = saturation_estimate(usl, demand, cpu_limit_cores, bottleneck)
    warnings = [
        f"Little's law does not hold at {s.users:g} users: throughput x (response + think "
        f"time) accounts for {s.littles_law_concurrency:.1f} users (ratio "
        f"{s.littles_law_ratio:.2f}); the step was not steady or the loop not closed"
        for s in steps
        if s.littles_law_ok is False
    ]
    host_warning = host_saturation_warning(steps, host_cores)
    if host_warning:
        warnings.append(host_warning)
    projection = None
    measured_max = max(throughput)
    target = target_rps or DEFAULT_TARGET_FACTOR * measured_max
    if demand.services and math.isfinite(target) and target > 0:
        projection = project(target, demand, headroom=headroom, usl=usl, cores_per_replica=1.0)
    return SweepResult(
        steps=steps,
        slo=slo,
        slo_steps=slo_steps,
        usl=usl,
        throughput_knee=throughput_knee,
        latency_knee=latency_knee,
        slo_capacity=slo_capacity,
        bottleneck=bottleneck,
        demand=demand,
        saturation=saturation,
        projection=projection,
        think_time_s=think_time_s,
        warnings=tuple(warnings),
    )


def _slo_capacity(
    steps: Sequence[StepStats], slo_steps: Sequence[StepStats], slo: SloChoice
) -> SloCapacity:
    """SLO capacity judged on the SLO's operations, in users and in total req/s.

    Latency and errors come from the covered operations, throughput from all traffic: the
    question is how much load the stack holds while those operations stay within bounds.
    """
    total_rps = {s.users: s.throughput_rps for s in steps}
    merged = [
        dataclasses.replace(s, throughput_rps=total_rps.get(s.users, s.throughput_rps))
        for s in slo_steps
    ]
    return slo_limited_capacity(merged, slo.p95_limit_ms, slo.error_rate_limit)


def _plain(value: Any) -> Any:
    """JSON-ready data: dataclasses to dicts, tuples to lists, NaN and infinities to None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return value


def _usl_json(usl: UslFit) -> dict[str, Any]:
    data = _plain(usl)
    data.pop("covariance", None)
    data["lambda_rps"] = data.pop("lambda_")
    data["peak_concurrency_unbounded"] = usl.ok and math.isinf(usl.peak_concurrency)
    return data


def sweep_to_json(result: SweepResult) -> dict[str, Any]:
    """The `capacity` section of summary.json (schema `CAPACITY_SCHEMA`)."""
    return {
        "schema": CAPACITY_SCHEMA,
        "headline": headline(result),
        "n_steps": len(result.steps),
        "think_time_s": result.think_time_s,
        "steps": [s.to_dict() for s in result.steps],
        "slo": _plain(result.slo),
        "slo_steps": [s.to_dict() for s in result.slo_steps],
        "usl": _usl_json(result.usl),
        "throughput_knee": _plain(result.throughput_knee),
        "latency_knee": _plain(result.latency_knee),
        "slo_capacity": _plain(result.slo_capacity),
        "bottleneck": _plain(result.bottleneck),
        "demand": _plain(result.demand),
        "saturation": _plain(result.saturation),
        "projection": _plain(result.projection),
        "warnings": list(result.warnings),
    }


def _bottleneck_phrase(b: Bottleneck) -> str:
    if b.service is None or b.resource is None:
        if not b.evidence:
            return "no per-service resource samples to name a bottleneck"
        return "no service's CPU or memory neared its limit"
    resource = "CPU" if b.resource == "cpu" else b.resource
    return f"first bottleneck: {b.service}'s {resource}"


def headline(result: SweepResult) -> str:
    """The answer in one sentence: load held within the SLO, and what saturates first."""
    tail = _bottleneck_phrase(result.bottleneck)
    cap, slo = result.slo_capacity, result.slo
    if cap is None or slo is None:
        top = max(result.steps, key=lambda s: s.throughput_rps)
        return (
            f"Peaked at {top.throughput_rps:.0f} req/s measured ({top.users:g} users; "
            f"no P95 objective covers the traffic); {tail}."
        )
    objective = f"P95 < {slo.p95_limit_ms:g} ms"
    if slo.error_rate_limit is not None:
        objective += f" and errors < {100 * slo.error_rate_limit:g}%"
    if cap.first_fail_users is not None and cap.last_pass_users is None:
        return (
            f"Misses {objective} ({slo.pattern}) already at the smallest step "
            f"({cap.first_fail_users:g} users); {tail}."
        )
    if cap.lower_bound:
        return (
            f"Holds {objective} ({slo.pattern}) at every step, up to at least "
            f"{cap.max_users:g} users / {cap.max_rps:.0f} req/s; {tail}."
        )
    return (
        f"Holds {objective} ({slo.pattern}) up to ~{cap.max_users:.0f} users / "
        f"{cap.max_rps:.0f} req/s; {tail}."
    )
