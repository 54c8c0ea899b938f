"""Pure gate statistics: verdict rules, weak comparisons, ties, floors, SLO aggregation."""

from __future__ import annotations

import dataclasses
import math

import pytest

from capacity.analysis.gate import (
    GateConfig,
    Reference,
    RunMetrics,
    SloSpec,
    Verdict,
    check_slos,
    compare,
    evaluate,
    exit_code_for,
    min_attainable_p,
    missing_reference_data,
    overall_verdict,
)
from capacity.errors import EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS

BASE = [100.0, 102.0, 98.0, 101.0, 99.0, 100.5]
CONFIG = GateConfig()


def scaled(values: list[float], factor: float) -> list[float]:
    return [v * factor for v in values]


def test_clear_regression_has_evidence_with_ci_and_p() -> None:
    check = compare("operation", "graphql GetCustomer", "p95_ms", BASE, scaled(BASE, 1.25), CONFIG)
    assert check.verdict == Verdict.REGRESSION
    assert not check.weak
    assert check.change == pytest.approx(0.25, abs=1e-9)
    assert check.ci_low <= check.change <= check.ci_high
    assert check.p_greater == pytest.approx(1 / 924)
    assert check.evidence.startswith("+25.0% [CI +")
    assert "p=0.00108" in check.evidence


def test_same_values_pass_and_improvement_is_reported() -> None:
    assert compare("operation", "x", "p95_ms", BASE, list(BASE), CONFIG).verdict == Verdict.PASS
    faster = compare("operation", "x", "p95_ms", BASE, scaled(BASE, 0.7), CONFIG)
    assert faster.verdict == Verdict.IMPROVEMENT
    assert faster.change == pytest.approx(-0.3)


def test_significant_but_small_shift_passes() -> None:
    check = compare("operation", "x", "p95_ms", BASE, scaled(BASE, 1.05), CONFIG)
    assert check.p_greater < 0.05
    assert check.verdict == Verdict.PASS
    assert "below the minimum effect" in check.evidence


def test_big_but_not_significant_shift_is_inconclusive() -> None:
    current = [70.0, 75.0, 112.0, 115.0, 120.0, 125.0]
    check = compare("operation", "x", "p95_ms", BASE, current, CONFIG)
    assert check.change > CONFIG.min_effect
    assert check.p_greater > CONFIG.alpha
    assert check.verdict == Verdict.INCONCLUSIVE


@pytest.mark.parametrize(("n_base", "n_cur"), [(1, 1), (1, 6), (6, 1), (2, 2)])
def test_too_few_runs_make_a_weak_comparison_with_wider_tolerance(n_base: int, n_cur: int) -> None:
    base = BASE[:n_base]
    medium = compare("operation", "x", "p95_ms", base, scaled(BASE[:n_cur], 1.15), CONFIG)
    assert medium.weak
    assert medium.verdict == Verdict.PASS
    assert "weak" in medium.evidence
    big = compare("operation", "x", "p95_ms", base, scaled(BASE[:n_cur], 1.3), CONFIG)
    assert big.weak
    # Too few runs to reach alpha: a big shift is suspect (exit 3), not a regression (exit 1)...
    assert big.verdict == Verdict.SUSPECT and "suspect" in big.evidence
    # ... unless the user asks weak comparisons to fail the build.
    strict = dataclasses.replace(CONFIG, fail_weak=True)
    forced = compare("operation", "x", "p95_ms", base, scaled(BASE[:n_cur], 1.3), strict)
    assert forced.verdict == Verdict.REGRESSION


def test_three_runs_per_side_can_reach_alpha() -> None:
    assert min_attainable_p(3, 3) == pytest.approx(0.05)
    check = compare("operation", "x", "p95_ms", BASE[:3], scaled(BASE[:3], 1.3), CONFIG)
    assert not check.weak
    assert check.verdict == Verdict.REGRESSION


def test_ties_use_the_permutation_method_not_the_anticonservative_exact_one() -> None:
    base = [10.0, 10.0, 11.0, 12.0, 12.0, 13.0]
    current = [10.0, 12.0, 13.0, 13.0, 14.0, 15.0]
    check = compare("service", "gateway", "mem_mb_mean", base, current, CONFIG)
    assert 0.0 < check.p_greater < 1.0
    tie_free = compare("service", "gateway", "mem_mb_mean", BASE, scaled(BASE, 1.3), CONFIG)
    assert check.p_greater > tie_free.p_greater


def test_absolute_floor_keeps_tiny_latencies_from_regressing() -> None:
    base = [0.30, 0.31, 0.29, 0.30, 0.32, 0.28]
    check = compare("operation", "health gateway", "p95_ms", base, scaled(base, 1.5), CONFIG)
    assert check.p_greater < 0.05
    assert check.verdict == Verdict.PASS
    assert "absolute floor" in check.evidence


def test_idle_service_cpu_wander_is_below_the_cpu_floor() -> None:
    # Seen in CI: the idle Temporal server of a rules-only gate run, three runs a side.
    base = [0.0057, 0.0041, 0.0068]
    current = [0.0267, 0.0049, 0.0301]
    check = compare("service", "temporal", "cpu_cores_mean", base, current, CONFIG)
    assert check.verdict == Verdict.PASS
    assert "absolute floor 0.05 cores" in check.evidence
    # The same relative shift on a loaded service (0.3 -> 1.4 cores) is still judged.
    loaded = compare(
        "service", "temporal", "cpu_cores_mean", scaled(base, 50), scaled(current, 50), CONFIG
    )
    assert loaded.verdict != Verdict.PASS


def test_zero_baseline_is_an_infinite_change_not_a_crash() -> None:
    base = [0.0] * 6
    current = [0.2, 0.21, 0.19, 0.2, 0.22, 0.18]
    check = compare("service", "temporal", "cpu_cores_mean", base, current, CONFIG)
    assert math.isinf(check.change)
    assert check.verdict == Verdict.REGRESSION
    assert "+inf%" in check.evidence
    assert check.ci_low == check.ci_high == math.inf


def test_bootstrap_is_deterministic() -> None:
    a = compare("operation", "x", "p95_ms", BASE, scaled(BASE, 1.12), CONFIG)
    b = compare("operation", "x", "p95_ms", BASE, scaled(BASE, 1.12), CONFIG)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)


def test_config_validates() -> None:
    with pytest.raises(ValueError):
        GateConfig(alpha=0.0)
    with pytest.raises(ValueError):
        GateConfig(min_effect=0.3, weak_min_effect=0.2)


def run_metrics(
    run_id: str, p95_ms: float, error_rate: float = 0.0, count: float = 100
) -> RunMetrics:
    return RunMetrics(
        run_id=run_id,
        scenario="smoke",
        operations={
            "graphql GetCustomer": {"p95_ms": p95_ms, "error_rate": error_rate, "count": count},
            "rules vat": {"p95_ms": 5.0, "error_rate": 0.0, "count": count},
        },
        services={
            "gateway": {"cpu_cores_mean": 0.1, "mem_mb_max": 600.0 if run_id == "r2" else 60}
        },
    )


def test_slo_patterns_aggregate_over_runs() -> None:
    runs = [run_metrics("r1", 400.0), run_metrics("r2", 450.0, 0.05, 300), run_metrics("r3", 600.0)]
    ceilings = [
        SloSpec("operation", "graphql *", "p95_ms", 500.0),
        SloSpec("operation", "graphql *", "error_rate", 0.01),
        SloSpec("operation", "workflow complete *", "p95_ms", 2000.0),
        SloSpec("service", "*", "mem_mb_max", 512.0),
    ]
    checks = {(c.target, c.metric): c for c in check_slos(ceilings, runs)}
    assert set(checks) == {
        ("graphql GetCustomer", "p95_ms"),
        ("graphql GetCustomer", "error_rate"),
        ("gateway", "mem_mb_max"),
    }
    assert checks[("graphql GetCustomer", "p95_ms")].value == 450.0  # median
    assert checks[("graphql GetCustomer", "p95_ms")].verdict == Verdict.PASS
    assert checks[("graphql GetCustomer", "error_rate")].value == pytest.approx(0.03)  # pooled
    assert checks[("graphql GetCustomer", "error_rate")].verdict == Verdict.FAIL
    assert checks[("gateway", "mem_mb_max")].value == 600.0  # worst run
    assert checks[("gateway", "mem_mb_max")].verdict == Verdict.FAIL


def test_slo_without_any_value_fails() -> None:
    run = RunMetrics("r1", "smoke", {"graphql GetCustomer": {"p95_ms": None}}, {})
    (check,) = check_slos([SloSpec("operation", "graphql *", "p95_ms", 500.0)], [run])
    assert check.verdict == Verdict.FAIL
    assert "missing data" in check.evidence


def test_missing_reference_data_is_listed_and_evaluate_refuses_it() -> None:
    reference = Reference(
        scenario="smoke",
        run_ids=("a", "b"),
        operations={"graphql Gone": {"p95_ms": (1.0, 2.0)}, "rules vat": {"p95_ms": (5.0, 5.0)}},
        services={"temporal": {"cpu_cores_mean": (0.1, 0.1)}},
    )
    runs = [run_metrics("r1", 400.0)]
    missing = missing_reference_data(reference, runs)
    assert missing == (
        "operation 'graphql Gone' p95_ms (missing in r1)",
        "service 'temporal' cpu_cores_mean (missing in r1)",
    )
    with pytest.raises(ValueError, match="graphql Gone"):
        evaluate([], reference, runs, CONFIG)


def test_overall_verdict_and_exit_codes() -> None:
    assert overall_verdict([Verdict.PASS, Verdict.IMPROVEMENT]) == Verdict.PASS
    assert overall_verdict([Verdict.INCONCLUSIVE, Verdict.PASS]) == Verdict.INCONCLUSIVE
    assert overall_verdict([Verdict.INCONCLUSIVE, Verdict.REGRESSION]) == Verdict.REGRESSION
    assert overall_verdict([Verdict.REGRESSION, Verdict.FAIL]) == Verdict.FAIL
    assert exit_code_for(Verdict.PASS) == EXIT_PASS
    assert exit_code_for(Verdict.REGRESSION) == EXIT_FAIL
    assert exit_code_for(Verdict.FAIL) == EXIT_FAIL
    assert exit_code_for(Verdict.INCONCLUSIVE) == EXIT_INCONCLUSIVE


def test_evaluate_orders_slos_then_relative_and_notes_extras() -> None:
    reference = Reference(
        scenario="smoke",
        run_ids=tuple(f"b{i}" for i in range(6)),
        operations={"graphql GetCustomer": {"p95_ms": tuple(BASE)}},
        services={},
    )
    runs = [run_metrics(f"c{i}", v) for i, v in enumerate(scaled(BASE, 1.3))]
    report = evaluate([SloSpec("operation", "*", "p95_ms", 500.0)], reference, runs, CONFIG)
    assert [c.verdict for c in report.slo_checks] == [Verdict.PASS, Verdict.PASS]
    assert [c.verdict for c in report.relative_checks] == [Verdict.REGRESSION]
    assert report.verdict == Verdict.REGRESSION
    assert report.exit_code == EXIT_FAIL
    assert any("rules vat" in note for note in report.notes)


def test_slo_on_too_few_requests_is_inconclusive_either_way() -> None:
    few = [run_metrics("r1", 400.0, count=30), run_metrics("r2", 900.0, 0.2, count=30)]
    ceilings = [
        SloSpec("operation", "graphql *", "p95_ms", 500.0),
        SloSpec("operation", "graphql *", "error_rate", 0.01),
    ]
    checks = check_slos(ceilings, few)
    assert [c.verdict for c in checks] == [Verdict.INCONCLUSIVE, Verdict.FAIL]  # 60 pooled
    assert "a run has 30 requests (need 40 per run)" in checks[0].evidence
    assert check_slos(ceilings[1:], few[1:])[0].verdict == Verdict.INCONCLUSIVE
