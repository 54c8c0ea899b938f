"""capacity.analysis.sweep's pure pieces: the SLO it judges by, think time, saturation, warnings."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hdrh.histogram import HdrHistogram
from helpers import OperationSlo, flatten

from capacity.analysis.model import UslFit
from capacity.analysis.planning import Bottleneck, DemandModel, ResourceTrend, ServiceDemand
from capacity.analysis.steps import StepStats, merge_histograms
from capacity.analysis.sweep import (
    choose_slo,
    host_saturation_warning,
    saturation_estimate,
    system_resources,
    utilization_bound,
)
from capacity.report.compare import compare_summaries, pct_change
from capacity.runfolder.histograms import Counts, new_histogram
from capacity.scenario import UserClass, think_time_s

OPS = ["graphql GetCustomer", "graphql ListInvoices", "rules vat", "workflow start X"]


def test_graphql_objective_is_preferred_when_it_covers_traffic() -> None:
    slos = [OperationSlo("rules *", p95_ms=50), OperationSlo("graphql *", p95_ms=500)]
    chosen = choose_slo(flatten(slos), OPS)
    assert chosen is not None and chosen.pattern == "graphql *"
    assert chosen.operations == ("graphql GetCustomer", "graphql ListInvoices")


def test_otherwise_the_tightest_p95_among_patterns_that_match() -> None:
    slos = [
        OperationSlo("graphql *", p95_ms=500),
        OperationSlo("rules *", p95_ms=80, error_rate=0.01),
        OperationSlo("workflow *", p95_ms=20),
        OperationSlo("*", error_rate=0.01),
    ]
    chosen = choose_slo(flatten(slos), ["rules vat", "workflow start X"])
    assert chosen is not None and (chosen.pattern, chosen.p95_limit_ms) == ("workflow *", 20)
    assert choose_slo(flatten(slos[:2]), ["health gateway"]) is None  # nothing the sweep sent
    assert choose_slo(flatten([OperationSlo("*", error_rate=0.01)]), OPS) is None  # no P95


def test_think_time_only_for_one_request_per_iteration_users() -> None:
    rules = UserClass("rules", weight=3, wait_s=(0.1, 0.3))
    graphql = UserClass("graphql", weight=1, wait_s=(0.5, 0.5))
    assert think_time_s({"rules": rules}) == pytest.approx(0.2)
    assert think_time_s({"rules": rules, "graphql": graphql}) == pytest.approx(
        (3 * 0.2 + 1 * 0.5) / 4
    )
    assert think_time_s({"rules": rules, "workflows": UserClass("workflows")}) is None
    health = UserClass("health", fixed_count=1, rate_per_s=0.5)
    assert think_time_s({"rules": rules, "health": health}) is None
    assert think_time_s({}) is None


def demand(**services: tuple[float, float]) -> DemandModel:
    return DemandModel(
        {n: ServiceDemand(n, base, per_req, 50.0, 0.1) for n, (base, per_req) in services.items()},
        measured_max_rps=100.0,
        users_at_max_rps=20.0,
    )


def fit(max_rps: float) -> UslFit:
    return UslFit(ok=True, reason=None, n_points=6, n_distinct=6, max_throughput_rps=max_rps)


def test_utilization_bound_is_set_by_the_largest_demand() -> None:
    d = demand(gateway=(0.05, 0.002), **{"rules-engine": (0.02, 0.008), "temporal": (0.1, 0.01)})
    bound_rps, service = utilization_bound(d, {"temporal": 2.0})
    assert service == "rules-engine" and bound_rps == pytest.approx((1 - 0.02) / 0.008)
    bound_rps, service = utilization_bound(d)  # temporal limited to one core as well
    assert service == "temporal" and bound_rps == pytest.approx(0.9 / 0.01)
    assert utilization_bound(demand(idle=(0.01, 0.0))) == (math.inf, None)


def test_saturation_is_the_lower_bound() -> None:
    d = demand(**{"rules-engine": (0.0, 0.008)})  # 125 req/s by the utilization law
    over = saturation_estimate(fit(180.0), d)
    assert (over.basis, over.rps, over.utilization_service) == (
        "utilization law",
        pytest.approx(125.0),
        "rules-engine",
    )
    under = saturation_estimate(fit(60.0), d)
    assert (under.basis, under.rps) == ("usl", 60.0)
    no_fit = UslFit(ok=False, reason="too few", n_points=3, n_distinct=3)
    assert saturation_estimate(no_fit, d).basis == "utilization law"
    nothing = saturation_estimate(no_fit, demand())
    assert nothing.basis == "none" and math.isnan(nothing.rps)


def trend(service: str, measured: bool) -> ResourceTrend:
    return ResourceTrend(service, "cpu", 1.0, (0.5, 0.95), 0.95, 0.05, 16.0, measured)


def test_a_bound_reached_in_a_step_beats_a_sagging_fit() -> None:
    d = demand(**{"rules-engine": (0.0, 0.008)})
    reached = Bottleneck("rules-engine", "cpu", 16.0, "", (trend("rules-engine", True),))
    sat = saturation_estimate(fit(90.0), d, bottleneck=reached)
    assert (sat.basis, sat.rps, sat.usl_rps) == ("utilization law, reached", 125.0, 90.0)
    extrapolated = Bottleneck("rules-engine", "cpu", 30.0, "", (trend("rules-engine", False),))
    assert saturation_estimate(fit(90.0), d, bottleneck=extrapolated).basis == "usl"
    other = Bottleneck("gateway", "cpu", 16.0, "", (trend("gateway", True),))
    assert saturation_estimate(fit(90.0), d, bottleneck=other).basis == "usl"


def step(users: float, host_cores: float) -> StepStats:
    nan = math.nan
    return StepStats(users, 0.0, 10.0, 10.0, 5, 100, 0, 10.0, 10.0, 0.0, nan, nan, nan, nan,
                     host_cpu_cores_mean=host_cores)  # fmt: skip


def test_host_saturation_is_reported_from_the_first_hot_step() -> None:
    steps = [step(16, 1.95), step(4, 0.6), step(8, 1.85)]
    warning = host_saturation_warning(steps, 2.0)
    assert warning is not None and warning.startswith("the host's CPU was saturated from 8 users")
    assert host_saturation_warning([step(4, 0.6), step(8, 1.2)], 2.0) is None
    assert host_saturation_warning(steps, None) is None


def test_load_generator_rows_are_not_the_system() -> None:
    frame = pd.DataFrame(
        {
            "ts_unix_s": [1.0] * 4,
            "source": ["process"] * 3 + ["host"],
            "target": ["gateway", "locust", "locust-worker-1", "host"],
            "cpu_cores": [0.1, 0.2, 0.3, 1.0],
            "mem_mb": [1.0, 2.0, 3.0, 4.0],
        }
    )
    kept = system_resources(frame)
    assert kept is not None and list(kept["target"]) == ["gateway", "host"]
    assert system_resources(None) is None


def test_fast_mean_equals_hdrh_mean() -> None:
    rng = np.random.default_rng(3)
    hists = []
    for scale_us in (300.0, 20_000.0, 2_000_000.0):
        h = new_histogram()
        for value in rng.gamma(2.0, scale_us, 2000):
            h.record_value(max(1, int(value)))
        hists.append(HdrHistogram.decode(h.encode()))
    merged = merge_histograms(hists)
    assert merged is not None
    total = sum(h.get_total_count() for h in hists)
    merged_mean = sum(h.get_mean_value() * h.get_total_count() for h in hists) / total
    for h in hists:
        mean_ms = Counts.from_hdr(h).mean_ms()
        assert mean_ms is not None and mean_ms * 1000 == pytest.approx(
            h.get_mean_value(), rel=1e-12
        )
    assert merged.mean_ms() == pytest.approx(merged_mean / 1000, rel=1e-12)
    assert Counts().mean_ms() is None


def test_percent_change_without_a_verdict() -> None:
    """A single pair of runs shows where they differ; it never calls a change better or worse."""
    assert pct_change(120.0, 100.0) == pytest.approx(20.0)
    assert pct_change(1.0, 0.0) is None and pct_change(None, 1.0) is None
    this = {"operations": {"a": {"rps": 110.0, "p95_ms": 90.0}}, "resources": {}}
    other = {"operations": {"a": {"rps": 100.0, "p95_ms": 100.0}, "b": {"rps": 1.0}},
             "resources": {}}  # fmt: skip
    out = compare_summaries(this, other)
    a = out["operations"]["a"]
    assert "better" not in a["rps"] and "better" not in a["p95_ms"]
    assert a["p95_ms"]["change_pct"] == pytest.approx(-10.0)
    assert out["operations"]["b"]["only_in"] == "other" and out["capacity"] is None
    assert "capacity check" in out["note"]
