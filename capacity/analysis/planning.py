"""Resource planning from step statistics: demand per service, projections, first bottleneck.

Pure functions like `capacity.analysis.model`: steps in, frozen results out. The USL fit is
only read (to warn when a target lies beyond the fitted maximum), through `FitLike`, so
neither module imports the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from scipy import optimize

from capacity.errors import CapacityError

if TYPE_CHECKING:
    from capacity.analysis.steps import StepLike


class FitLike(Protocol):
    """What a projection reads of a scalability fit (`capacity.analysis.model.UslFit`)."""

    @property
    def ok(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def reached_curvature(self) -> bool: ...
    @property
    def kappa(self) -> float: ...
    @property
    def kappa_ci(self) -> tuple[float, float]: ...
    @property
    def max_throughput_rps(self) -> float: ...


EXTRAPOLATION_FACTOR = 2.0


@dataclass(frozen=True)
class ServiceDemand:
    """Resource demand of one service as a line in load: base + slope x load."""

    service: str
    cpu_cores_base: float
    cpu_s_per_request: float
    mem_mb_base: float
    mem_mb_per_user: float


@dataclass(frozen=True)
class DemandModel:
    """Per-service demand lines and the measured range they came from."""

    services: dict[str, ServiceDemand]
    measured_max_rps: float
    users_at_max_rps: float
    notes: tuple[str, ...] = ()


def _line_nonnegative(load: np.ndarray, used: np.ndarray) -> tuple[float, float]:
    """Intercept and slope >= 0 of used ~ a + b load (nonnegative least squares)."""
    coef, _ = optimize.nnls(np.column_stack([np.ones_like(load), load]), used)
    return float(coef[0]), float(coef[1])


def estimate_demand(steps: Sequence[StepLike]) -> DemandModel:
    """Fit cores = base + cpu_s_per_request x rps and memory = base + mb_per_user x users.

    Separating the base from the slope matters: idle CPU and a process's resident memory do
    not grow with load, and dividing them by a step's load overstates the per-request cost.
    With one step only, CPU is taken as all per-request and memory as all base.
    """
    usable = [s for s in steps if math.isfinite(s.throughput_rps) and s.throughput_rps > 0]
    notes: list[str] = []
    if not usable:
        return DemandModel({}, math.nan, math.nan, ("no step with throughput",))
    top = max(usable, key=lambda s: s.throughput_rps)
    services: dict[str, ServiceDemand] = {}
    for svc in sorted({k for s in usable for k in s.cpu_cores_mean}):
        cpu_rows = [
            (s.throughput_rps, s.cpu_cores_mean[svc]) for s in usable if svc in s.cpu_cores_mean
        ]
        mem_rows = [(s.users, s.mem_mb_mean[svc]) for s in usable if svc in s.mem_mb_mean]
        if len(cpu_rows) >= 2:
            cpu_base, cpu_slope = _line_nonnegative(*map(np.array, zip(*cpu_rows, strict=True)))
        else:
            cpu_base, cpu_slope = 0.0, cpu_rows[0][1] / cpu_rows[0][0]
            notes.append(f"{svc}: one step only, all CPU counted as per-request")
        if len(mem_rows) >= 2:
            mem_base, mem_slope = _line_nonnegative(*map(np.array, zip(*mem_rows, strict=True)))
        elif mem_rows:
            mem_base, mem_slope = mem_rows[0][1], 0.0
            notes.append(f"{svc}: one step only, memory taken as flat")
        else:
            mem_base, mem_slope = math.nan, math.nan
        services[svc] = ServiceDemand(svc, cpu_base, cpu_slope, mem_base, mem_slope)
    return DemandModel(services, top.throughput_rps, top.users, tuple(notes))


@dataclass(frozen=True)
class ServiceProjection:
    """What one service needs at the target load; `*_needed` include the headroom."""

    service: str
    replicas: int
    limited_by: str
    cpu_cores_demand: float
    cpu_cores_needed: float
    cpu_cores_provisioned: float
    mem_mb_demand: float
    mem_mb_needed: float
    mem_mb_provisioned: float


@dataclass(frozen=True)
class Projection:
    """Per-service needs for a target load, with warnings about how far it extrapolates."""

    target_rps: float
    target_users: float
    headroom: float
    services: dict[str, ServiceProjection]
    warnings: tuple[str, ...]


def _per_service(value: Mapping[str, float] | float | None, svc: str) -> float | None:
    if isinstance(value, Mapping):
        return value.get(svc)
    return value


def _ceil(value: float) -> int:
    return max(1, math.ceil(value - 1e-9))


def project(
    target_rps: float,
    demand: DemandModel,
    headroom: float = 0.3,
    cores_per_replica: Mapping[str, float] | float = 1.0,
    mem_mb_per_replica: Mapping[str, float] | float | None = None,
    target_users: float | None = None,
    usl: FitLike | None = None,
) -> Projection:
    """Replicas, cores and memory per service to serve `target_rps` with `headroom` spare.

    Headroom is the fraction of provisioned capacity left unused: needed = demand /
    (1 - headroom), so 0.3 means running at 70%. Each replica carries the base memory; the
    per-user part is spread over replicas. Without `target_users`, users scale with rps as at
    the highest measured step. `cores_per_replica` is 1 for single-process services.
    """
    if not 0.0 <= headroom < 1.0:
        raise CapacityError(f"headroom must be in [0, 1), got {headroom}")
    if not target_rps > 0:
        raise CapacityError(f"target_rps must be positive, got {target_rps}")
    warnings: list[str] = list(demand.notes)
    measured = demand.measured_max_rps
    if target_users is None and measured > 0:
        target_users = target_rps * demand.users_at_max_rps / measured
        warnings.append("target users estimated from users per req/s at the highest step")
    elif target_users is None:
        target_users = math.nan
        warnings.append("memory per user not projected: no measured step relates users to req/s")
    if math.isfinite(measured) and target_rps > EXTRAPOLATION_FACTOR * measured:
        warnings.append(
            f"target {target_rps:g} req/s is {target_rps / measured:.1f}x the measured maximum "
            f"{measured:.1f} req/s: beyond {EXTRAPOLATION_FACTOR:g}x, linear demand is a guess"
        )
    if usl is not None:
        if not usl.ok:
            warnings.append(f"no scalability fit: {usl.reason}")
        elif not usl.reached_curvature:
            warnings.append(
                "the measurements never reached the curved part of the throughput curve; "
                "contention effects at the target are unknown"
            )
        elif usl.kappa_ci[0] <= 0.0 < usl.kappa:
            warnings.append(
                "kappa's 95% interval includes 0: the throughput peak is not established"
            )
        if usl.ok and target_rps > usl.max_throughput_rps:
            warnings.append(
                f"target exceeds the fitted maximum {usl.max_throughput_rps:.1f} req/s of the "
                "measured deployment: it needs more replicas, not more users"
            )
    spare = 1.0 - headroom
    services: dict[str, ServiceProjection] = {}
    for svc, d in sorted(demand.services.items()):
        cores_each = _per_service(cores_per_replica, svc) or 1.0
        cpu_demand = d.cpu_cores_base + d.cpu_s_per_request * target_rps
        cpu_needed = cpu_demand / spare
        replicas_cpu = _ceil(cpu_needed / cores_each)
        replicas_mem = 1
        mem_each = _per_service(mem_mb_per_replica, svc)
        per_user_mb = d.mem_mb_per_user * target_users
        if not math.isfinite(per_user_mb):
            per_user_mb = 0.0
        if mem_each is not None and math.isfinite(d.mem_mb_base):
            room_mb = spare * mem_each - d.mem_mb_base
            if room_mb <= 0:
                warnings.append(
                    f"{svc}: base memory {d.mem_mb_base:.0f} MB exceeds {spare:.0%} of "
                    f"{mem_each:g} MB per replica"
                )
            elif per_user_mb > 0:
                replicas_mem = _ceil(per_user_mb / room_mb)
        replicas = max(replicas_cpu, replicas_mem)
        mem_demand = replicas * d.mem_mb_base + per_user_mb
        services[svc] = ServiceProjection(
            service=svc,
            replicas=replicas,
            limited_by="memory" if replicas_mem > replicas_cpu else "cpu",
            cpu_cores_demand=cpu_demand,
            cpu_cores_needed=cpu_needed,
            cpu_cores_provisioned=replicas * cores_each,
            mem_mb_demand=mem_demand,
            mem_mb_needed=mem_demand / spare,
            mem_mb_provisioned=replicas * mem_each if mem_each is not None else math.nan,
        )
    return Projection(target_rps, target_users, headroom, services, tuple(warnings))


@dataclass(frozen=True)
class ResourceTrend:
    """One service's use of one resource across steps, relative to its limit."""

    service: str
    resource: str
    limit: float
    utilization: tuple[float, ...]
    utilization_at_top: float
    slope_per_user: float
    users_at_saturation: float
    measured: bool


@dataclass(frozen=True)
class Bottleneck:
    """The resource that saturates first as users grow, with every trend as evidence."""

    service: str | None
    resource: str | None
    users_at_saturation: float
    reason: str
    evidence: tuple[ResourceTrend, ...]


def _trend(
    svc: str, resource: str, limit: float, users: np.ndarray, used: np.ndarray, saturated: float
) -> ResourceTrend:
    util = used / limit
    hit = np.flatnonzero(util >= saturated)
    slope = float(np.polyfit(users, util, 1)[0]) if users.size >= 2 else math.nan
    if hit.size:
        at, measured = float(users[hit[0]]), True
    elif users.size >= 2 and slope > 0:
        intercept = float(np.polyfit(users, util, 1)[1])
        at, measured = (saturated - intercept) / slope, False
    else:
        at, measured = math.inf, False
    return ResourceTrend(svc, resource, limit, tuple(util), float(util[-1]), slope, at, measured)


def first_bottleneck(
    steps: Sequence[StepLike],
    cpu_limit_cores: Mapping[str, float] | None = None,
    default_cpu_limit_cores: float = 1.0,
    mem_limit_mb: Mapping[str, float] | None = None,
    saturated_fraction: float = 0.9,
) -> Bottleneck:
    """Name the service whose CPU or memory reaches `saturated_fraction` of its limit first.

    The CPU limit defaults to 1 core (a single-process Python service cannot use more); the
    memory limit comes from `mem_limit_mb` or the steps' measured container limits, and
    without one memory is not judged. The first step at or past the fraction decides; if
    none is, a straight line of utilization against users is extrapolated (`measured` False).
    """
    ordered = sorted((s for s in steps if math.isfinite(s.users)), key=lambda s: s.users)
    trends: list[ResourceTrend] = []
    for svc in sorted({k for s in ordered for k in s.cpu_cores_mean}):
        rows = [(s.users, s.cpu_cores_mean[svc]) for s in ordered if svc in s.cpu_cores_mean]
        limit = (cpu_limit_cores or {}).get(svc, default_cpu_limit_cores)
        if not limit > 0:
            continue
        users, used = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
        trends.append(_trend(svc, "cpu", limit, users, used, saturated_fraction))
    for svc in sorted({k for s in ordered for k in s.mem_mb_mean}):
        limits = (mem_limit_mb or {}).get(svc) or next(
            (s.mem_limit_mb[svc] for s in reversed(ordered) if svc in s.mem_limit_mb), None
        )
        if not limits or not limits > 0:
            continue
        rows = [(s.users, s.mem_mb_mean[svc]) for s in ordered if svc in s.mem_mb_mean]
        users, used = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
        trends.append(_trend(svc, "memory", limits, users, used, saturated_fraction))
    if not trends:
        return Bottleneck(None, None, math.inf, "no per-service resource samples", ())
    trends.sort(key=lambda t: (t.users_at_saturation, -t.utilization_at_top))
    first = trends[0]
    if not math.isfinite(first.users_at_saturation):
        return Bottleneck(
            None,
            None,
            math.inf,
            "no resource grows with load; highest utilization "
            f"{first.service} {first.resource} at {first.utilization_at_top:.0%}",
            tuple(trends),
        )
    how = "reached" if first.measured else "extrapolated to reach"
    reason = (
        f"{first.service} {first.resource} {how} {saturated_fraction:.0%} of "
        f"{first.limit:g} at {first.users_at_saturation:.0f} users "
        f"({first.utilization_at_top:.0%} at the top step)"
    )
    return Bottleneck(
        first.service, first.resource, first.users_at_saturation, reason, tuple(trends)
    )
