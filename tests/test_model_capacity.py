"""Knee detection, SLO-limited capacity, demand lines, projections and the first bottleneck."""

from __future__ import annotations

import math

import numpy as np
import pytest

from capacity.analysis.model import (
    detect_knee,
    fit_usl,
    slo_limited_capacity,
    usl_throughput,
)
from capacity.analysis.planning import (
    DemandModel,
    ServiceDemand,
    estimate_demand,
    first_bottleneck,
    project,
)
from capacity.analysis.steps import StepStats
from capacity.errors import CapacityError


def step(
    users: float,
    throughput_rps: float,
    p95_ms: float = 10.0,
    error_rate: float = 0.0,
    cpu: dict[str, float] | None = None,
    mem: dict[str, float] | None = None,
    mem_limit: dict[str, float] | None = None,
) -> StepStats:
    nan = math.nan
    return StepStats(
        users=users,
        start_s=0.0,
        end_s=60.0,
        duration_s=60.0,
        n_slices=12,
        requests=int(throughput_rps * 60),
        failures=int(throughput_rps * 60 * error_rate),
        throughput_rps=throughput_rps,
        ok_throughput_rps=throughput_rps * (1 - error_rate),
        error_rate=error_rate,
        p50_ms=nan,
        p95_ms=p95_ms,
        p99_ms=nan,
        mean_ms=nan,
        cpu_cores_mean=cpu or {},
        mem_mb_mean=mem or {},
        mem_limit_mb=mem_limit or {},
    )


# --- knee -------------------------------------------------------------------------------


def broken_line(users: np.ndarray, knee_users: float) -> np.ndarray:
    return np.where(users <= knee_users, 10.0 * users, 10.0 * knee_users + (users - knee_users))


@pytest.mark.parametrize("method", ["kneedle", "slope"])
@pytest.mark.parametrize("knee_users", [12.0, 20.0, 28.0])
def test_knee_of_a_broken_throughput_line(method: str, knee_users: float) -> None:
    users = np.arange(1.0, 41.0)
    knee = detect_knee(users, broken_line(users, knee_users), "throughput", method)  # type: ignore[arg-type]
    assert knee.found, knee.reason
    assert knee.users == knee_users
    assert knee.value == pytest.approx(10.0 * knee_users)


def test_knee_uses_sorted_users() -> None:
    users = np.arange(1.0, 41.0)
    shuffled = np.random.default_rng(1).permutation(users.size)
    knee = detect_knee(users[shuffled], broken_line(users, 20.0)[shuffled])
    assert knee.users == 20.0 and knee.index == 19


def test_knee_of_a_latency_hockey_stick() -> None:
    users = np.arange(5.0, 105.0, 5.0)
    p95_ms = np.where(users <= 60, 40.0 + 0.1 * users, 46.0 + 12.0 * (users - 60))
    knee = detect_knee(users, p95_ms, curve="latency")
    assert knee.found and knee.users == 60.0


def test_knee_of_a_usl_curve_lies_before_the_peak() -> None:
    sigma, kappa = 0.05, 0.001
    peak = math.sqrt((1 - sigma) / kappa)
    users = np.arange(1.0, 2 * peak)
    knee = detect_knee(users, usl_throughput(users, sigma, kappa, 100.0))
    assert knee.found
    assert 3.0 < knee.users < peak


@pytest.mark.parametrize("method", ["kneedle", "slope"])
def test_straight_line_has_no_knee(method: str) -> None:
    users = np.arange(1.0, 30.0)
    knee = detect_knee(users, 7.0 * users, method=method)  # type: ignore[arg-type]
    assert not knee.found and knee.reason


def test_knee_needs_three_steps() -> None:
    knee = detect_knee([1.0, 2.0], [10.0, 20.0])
    assert not knee.found and "at least 3" in (knee.reason or "")


# --- SLO-limited capacity ---------------------------------------------------------------


def test_slo_capacity_interpolates_p95_between_pass_and_fail() -> None:
    steps = [
        step(10, 100, p95_ms=100),
        step(20, 190, p95_ms=150),
        step(30, 270, p95_ms=250),
        step(40, 300, p95_ms=400),
    ]
    cap = slo_limited_capacity(steps[::-1], p95_limit_ms=200)
    # P95 crosses 200 ms halfway from 20 (150 ms) to 30 users (250 ms): 25 users, 230 req/s.
    assert cap.max_users == pytest.approx(25.0)
    assert cap.max_rps == pytest.approx(230.0)
    assert cap.limited_by == "p95" and cap.interpolated and not cap.lower_bound
    assert (cap.last_pass_users, cap.first_fail_users) == (20, 30)
    assert "interpolated" in cap.note


def test_slo_capacity_takes_the_earlier_of_p95_and_error_rate_crossings() -> None:
    steps = [
        step(10, 100, p95_ms=100, error_rate=0.0),
        step(20, 200, p95_ms=210, error_rate=0.04),
    ]
    cap = slo_limited_capacity(steps, p95_limit_ms=200, error_rate_limit=0.01)
    # P95 would cross at 10 + 100/110 * 10 = 19.09 users; errors cross at 10 + 0.25 * 10 = 12.5.
    assert cap.limited_by == "error_rate"
    assert cap.max_users == pytest.approx(12.5)
    assert cap.max_rps == pytest.approx(125.0)


def test_slo_never_breached_is_a_lower_bound() -> None:
    cap = slo_limited_capacity([step(10, 100), step(20, 180), step(30, 170)], p95_limit_ms=50)
    assert cap.lower_bound and not cap.interpolated
    assert cap.max_users == 30 and cap.max_rps == 180
    assert "at least" in cap.note


def test_slo_breached_at_the_first_step_gives_zero() -> None:
    cap = slo_limited_capacity([step(10, 100, p95_ms=900), step(20, 150)], p95_limit_ms=500)
    assert cap.max_users == 0.0 and cap.first_fail_users == 10
    assert "smallest step" in cap.note


# --- demand and projection --------------------------------------------------------------


def test_estimate_demand_separates_base_from_per_load_cost() -> None:
    steps = [
        step(
            u,
            rps,
            cpu={"gateway": 0.05 + 0.003 * rps},
            mem={"gateway": 80.0 + 0.25 * u},
        )
        for u, rps in [(10, 90.0), (20, 170.0), (40, 300.0), (60, 330.0)]
    ]
    demand = estimate_demand(steps)
    gw = demand.services["gateway"]
    assert gw.cpu_cores_base == pytest.approx(0.05)
    assert gw.cpu_s_per_request == pytest.approx(0.003)
    assert gw.mem_mb_base == pytest.approx(80.0)
    assert gw.mem_mb_per_user == pytest.approx(0.25)
    assert demand.measured_max_rps == 330.0 and demand.users_at_max_rps == 60


def test_estimate_demand_with_one_step_says_how_it_split() -> None:
    demand = estimate_demand([step(10, 200.0, cpu={"w": 0.4}, mem={"w": 120.0})])
    assert demand.services["w"].cpu_s_per_request == pytest.approx(0.002)
    assert demand.services["w"].mem_mb_base == 120.0
    assert any("one step" in note for note in demand.notes)


def hand_demand() -> DemandModel:
    return DemandModel(
        services={
            "gateway": ServiceDemand("gateway", 0.1, 0.002, 100.0, 0.5),
            "rules-engine": ServiceDemand("rules-engine", 0.0, 0.0001, 200.0, 2.0),
        },
        measured_max_rps=300.0,
        users_at_max_rps=120.0,
    )


def test_projection_matches_hand_computation() -> None:
    proj = project(
        1000.0, hand_demand(), headroom=0.2, cores_per_replica=1.0, mem_mb_per_replica=512.0
    )
    assert proj.target_users == pytest.approx(400.0)  # 120 users / 300 rps x 1000 rps
    gw = proj.services["gateway"]
    assert gw.cpu_cores_demand == pytest.approx(2.1)  # 0.1 + 0.002 x 1000
    assert gw.cpu_cores_needed == pytest.approx(2.625)  # 2.1 / 0.8
    assert gw.replicas == 3 and gw.limited_by == "cpu"
    assert gw.cpu_cores_provisioned == 3.0
    assert gw.mem_mb_demand == pytest.approx(500.0)  # 3 x 100 + 0.5 x 400
    assert gw.mem_mb_needed == pytest.approx(625.0)
    assert gw.mem_mb_provisioned == pytest.approx(1536.0)
    rules = proj.services["rules-engine"]
    # 800 MB per-user memory over replicas with 0.8 x 512 - 200 = 209.6 MB room each: 4.
    assert rules.replicas == 4 and rules.limited_by == "memory"
    assert rules.mem_mb_demand == pytest.approx(1600.0)
    assert rules.cpu_cores_needed == pytest.approx(0.125)
    assert any("3.3x the measured maximum" in w for w in proj.warnings)


def test_projection_with_per_service_cores_and_explicit_users() -> None:
    proj = project(
        500.0,
        hand_demand(),
        headroom=0.0,
        cores_per_replica={"gateway": 2.0},
        target_users=50.0,
    )
    gw = proj.services["gateway"]
    assert gw.cpu_cores_needed == pytest.approx(1.1)
    assert gw.replicas == 1 and gw.cpu_cores_provisioned == 2.0
    assert gw.mem_mb_demand == pytest.approx(125.0)
    assert math.isnan(gw.mem_mb_provisioned)
    assert not any("measured maximum" in w for w in proj.warnings)
    assert not any("estimated" in w for w in proj.warnings)


def test_projection_warns_when_the_fit_never_curved() -> None:
    n = np.array([1.0, 2, 3, 4, 5])
    linear_fit = fit_usl(n, usl_throughput(n, 0.01, 0.0001, 60.0))
    proj = project(200.0, hand_demand(), usl=linear_fit)
    assert any("curved part" in w for w in proj.warnings)
    thin = fit_usl([1.0, 2.0], [60.0, 118.0])
    proj = project(200.0, hand_demand(), usl=thin)
    assert any("no scalability fit" in w for w in proj.warnings)


@pytest.mark.parametrize("headroom", [-0.1, 1.0, 1.5])
def test_projection_rejects_impossible_headroom(headroom: float) -> None:
    with pytest.raises(CapacityError, match="headroom"):
        project(100.0, hand_demand(), headroom=headroom)


# --- first bottleneck -------------------------------------------------------------------


def bottleneck_steps() -> list[StepStats]:
    users = [10.0, 20.0, 30.0, 40.0]
    return [
        step(
            u,
            10.0 * u,
            cpu={"gateway": 0.02 * u, "master-data": 0.01 * u},
            mem={"workflow": [200.0, 210.0, 220.0, 235.0][i]},
            mem_limit={"workflow": 256.0},
        )
        for i, u in enumerate(users)
    ]


def test_first_bottleneck_is_the_measured_memory_saturation() -> None:
    result = first_bottleneck(bottleneck_steps())
    assert (result.service, result.resource) == ("workflow", "memory")
    assert result.users_at_saturation == 40.0
    assert "reached" in result.reason
    assert {(t.service, t.resource) for t in result.evidence} == {
        ("gateway", "cpu"),
        ("master-data", "cpu"),
        ("workflow", "memory"),
    }


def test_first_bottleneck_extrapolates_cpu_against_its_limit() -> None:
    steps = bottleneck_steps()
    result = first_bottleneck(steps, mem_limit_mb={"workflow": 10_000.0})
    # gateway: 0.02 cores per user against 1 core -> 90% at 45 users; master-data at 90.
    assert (result.service, result.resource) == ("gateway", "cpu")
    assert result.users_at_saturation == pytest.approx(45.0)
    assert "extrapolated" in result.reason
    wider = first_bottleneck(
        steps, cpu_limit_cores={"gateway": 4.0}, mem_limit_mb={"workflow": 10_000.0}
    )
    assert wider.service == "master-data"
    assert wider.users_at_saturation == pytest.approx(90.0)


def test_first_bottleneck_without_resources_says_so() -> None:
    result = first_bottleneck([step(10, 100), step(20, 200)])
    assert result.service is None and "no per-service" in result.reason
