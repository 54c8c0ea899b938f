"""One SLO definition: which limit applies (the most specific pattern), and how it is judged."""

from __future__ import annotations

import pytest

from capacity.slos import SloSpec, applicable, check_run, judge, specificity, verdict


def op(pattern: str, metric: str, limit: float) -> SloSpec:
    return SloSpec("operation", pattern, metric, limit)


def test_an_exact_name_loosens_a_wildcard_for_that_metric_only() -> None:
    specs = [
        op("graphql *", "error_rate", 0.01),
        op("graphql *", "p95_ms", 500),
        op("graphql GetInvoice", "error_rate", 0.2),
    ]
    chosen = applicable(specs, "operation", "graphql GetInvoice")
    assert chosen["error_rate"].limit == 0.2 and chosen["p95_ms"].limit == 500
    other = applicable(specs, "operation", "graphql GetCustomer")
    assert other["error_rate"].limit == 0.01


def test_a_longer_literal_prefix_wins_then_more_literal_text_then_the_stricter_limit() -> None:
    specs = [
        op("*", "p95_ms", 900),
        op("graphql *", "p95_ms", 500),
        op("graphql Get*", "p95_ms", 300),
    ]
    assert applicable(specs, "operation", "graphql GetX")["p95_ms"].limit == 300
    assert applicable(specs, "operation", "graphql ListX")["p95_ms"].limit == 500
    assert applicable(specs, "operation", "rules vat")["p95_ms"].limit == 900
    assert specificity("graphql GetX") > specificity("graphql Get*") > specificity("graphql *")
    tie = [op("graphql *X", "p95_ms", 400), op("graphql *Y", "p95_ms", 200)]
    assert specificity("graphql *X") == specificity("graphql *Y")
    assert (
        applicable(tie + [op("graphql *XY", "p95_ms", 100)], "operation", "graphql XY")[
            "p95_ms"
        ].limit
        == 100
    )
    # Equally specific patterns that both match: the stricter one, never the looser.
    both = [op("graphql ?X", "p95_ms", 400), op("graphql A?", "p95_ms", 200)]
    assert applicable(both, "operation", "graphql AX")["p95_ms"].limit == 200


def test_services_follow_the_same_rule() -> None:
    specs = [
        SloSpec("service", "*", "cpu_cores_mean", 0.5),
        SloSpec("service", "temporal", "cpu_cores_mean", 2.0),
    ]
    rows = check_run(
        specs,
        {},
        {
            "temporal": {"cpu_cores_mean": 1.5, "samples": 10},
            "gateway": {"cpu_cores_mean": 0.4, "samples": 10},
        },
    )
    by_target = {r["target"]: (r["limit"], r["passed"]) for r in rows}
    assert by_target == {"temporal": (2.0, True), "gateway": (0.5, True)}


def test_judging_needs_enough_samples_and_a_value() -> None:
    assert judge("p95_ms", 10.0, 500, 40) is True
    assert judge("p95_ms", 900.0, 500, 40) is False
    assert judge("p95_ms", 10.0, 500, 39) is None
    assert judge("error_rate", 0.5, 0.01, 49) is None
    assert judge("p95_ms", None, 500, 1000) is None
    assert judge("p95_ms", float("nan"), 500, 1000) is None
    assert verdict([{"passed": None}], []) == "inconclusive"
    assert verdict([{"passed": True}], ["a reason"]) == "inconclusive"
    assert verdict([{"passed": False}, {"passed": None}], ["a reason"]) == "fail"


@pytest.mark.parametrize(
    ("kind", "metric", "limit"),
    [("operation", "cpu_cores_mean", 1.0), ("span", "p95_ms", float("inf")), ("x", "p95_ms", 1.0)],
)
def test_bad_specs_are_refused(kind: str, metric: str, limit: float) -> None:
    with pytest.raises(ValueError):
        SloSpec(kind, "*", metric, limit)  # type: ignore[arg-type]
