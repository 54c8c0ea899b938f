"""The pure rule-set evaluator and the three shipped rule sets."""

from __future__ import annotations

import random

import pytest

from capacity.stack.ruleengine import RuleSetError, evaluate, parse_ruleset, perturb
from capacity.stack.rules_service import load_rulesets


def cond(fact: str, op: str, value: object) -> dict:
    return {"fact": fact, "op": op, "value": value}


def ruleset(mode: str, *rules: dict) -> dict:
    return {"name": "t", "mode": mode, "default": {"x": 0, "tag": "none"}, "rules": list(rules)}


RULE_A = {"name": "a", "when": {"all": [cond("n", "gte", 10)]}, "then": {"x": 1}}
RULE_B = {"name": "b", "when": {"any": [cond("c", "eq", "BD"), cond("n", "gt", 99)]},
          "then": {"x": 2, "tag": "b"}}  # fmt: skip


def test_first_mode_takes_the_first_match_over_the_default() -> None:
    rs = parse_ruleset(ruleset("first", RULE_A, RULE_B))
    result = evaluate(rs, {"n": 50, "c": "BD"})
    assert (result.outcome, result.matched) == ({"x": 1, "tag": "none"}, ["a"])
    assert evaluate(rs, {"n": 1, "c": "IN"}).outcome == {"x": 0, "tag": "none"}


def test_all_mode_merges_every_match_in_order() -> None:
    rs = parse_ruleset(ruleset("all", RULE_A, RULE_B))
    result = evaluate(rs, {"n": 50, "c": "BD"})
    assert (result.outcome, result.matched) == ({"x": 2, "tag": "b"}, ["a", "b"])


@pytest.mark.parametrize(
    ("condition", "facts", "expected"),
    [
        (cond("c", "ne", "BD"), {"c": "IN"}, True),
        (cond("n", "lt", 5), {"n": 5}, False),
        (cond("n", "lte", 5), {"n": 5}, True),
        (cond("c", "in", ["BD", "IN"]), {"c": "IN"}, True),
        (cond("c", "not_in", ["BD", "IN"]), {"c": "IN"}, False),
        (cond("tags", "contains", "vip"), {"tags": ["new", "vip"]}, True),
        (cond("name", "contains", "Ltd"), {"name": "Padma Ltd"}, True),
        (cond("n", "gt", 5), {}, False),  # a missing fact never matches
        (cond("n", "gt", 5), {"n": "many"}, False),  # nor do incomparable types
        (
            {"any": [cond("n", "gt", 5), {"all": [cond("c", "eq", "BD"), cond("n", "eq", 1)]}]},
            {"n": 1, "c": "BD"},
            True,
        ),  # fmt: skip
    ],
)
def test_operators_and_nesting(condition: dict, facts: dict, expected: bool) -> None:
    when = condition if set(condition) & {"all", "any"} else {"all": [condition]}
    rs = parse_ruleset(ruleset("first", {"name": "r", "when": when, "then": {"x": 9}}))
    assert (evaluate(rs, facts).matched == ["r"]) is expected


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be a JSON object"),
        ({"name": "t", "rules": [], "mode": "some"}, "'mode'"),
        ({"name": "t"}, "'rules' must be a list"),
        (
            ruleset("first", {"name": "r", "when": {"all": [cond("n", "approx", 1)]}, "then": {}}),
            "not one of",
        ),  # fmt: skip
        (
            ruleset("first", {"name": "r", "when": {"all": [cond("n", "in", "BD")]}, "then": {}}),
            "needs a list",
        ),  # fmt: skip
        (ruleset("first", {"name": "r", "when": {"all": []}, "then": {}}), "non-empty"),
        (
            ruleset("first", {"name": "r", "when": {"all": [{"fact": "n"}]}, "then": {}}),
            "exactly 'fact', 'op' and 'value'",
        ),  # fmt: skip
        (ruleset("first", {"when": {"all": [cond("n", "eq", 1)]}, "then": {}}), "'name'"),
    ],
)
def test_bad_rule_sets_are_rejected_with_the_path(doc: object, message: str) -> None:
    with pytest.raises(RuleSetError, match=message):
        parse_ruleset(doc, "x.json")


def test_perturb_changes_exactly_one_value_plausibly() -> None:
    rs = parse_ruleset(ruleset("first", RULE_A, RULE_B))
    rng = random.Random(3)
    for outcome in ({"x": 1, "tag": "none"}, {"x": 2, "tag": "b"}, {"rate": 0.15}, {"ok": True}):
        wrong = perturb(rs, outcome, rng)
        assert set(wrong) == set(outcome)
        assert sum(wrong[k] != outcome[k] for k in outcome) == 1
    assert perturb(rs, {"tag": "b"}, rng) == {"tag": "none"}


@pytest.fixture(scope="module")
def shipped() -> dict:
    return load_rulesets()


def test_three_rule_sets_are_shipped(shipped: dict) -> None:
    assert sorted(shipped) == ["approval-limit", "discount", "vat"]


@pytest.mark.parametrize(
    ("facts", "rate"),
    [
        ({"country": "BD", "category": "electronics"}, 0.15),
        ({"country": "BD", "category": "food"}, 0.05),
        ({"country": "BD", "category": "medicine"}, 0.05),
        ({"country": "DE", "category": "food"}, 0.0),
    ],
)
def test_vat(shipped: dict, facts: dict, rate: float) -> None:
    assert evaluate(shipped["vat"], facts).outcome["rate"] == rate


def test_discount_merges_tier_and_volume(shipped: dict) -> None:
    gold = evaluate(shipped["discount"], {"tier": "gold", "amount": 60000}).outcome
    assert gold == {"discountPct": 0.05, "volumeDiscountPct": 0.02, "freeShipping": False}
    big = evaluate(shipped["discount"], {"tier": "platinum", "amount": 600000})
    assert big.outcome == {"discountPct": 0.1, "volumeDiscountPct": 0.04, "freeShipping": True}
    assert big.matched == ["platinum-tier", "large-order", "very-large-order", "free-shipping"]
    assert evaluate(shipped["discount"], {"tier": "standard", "amount": 10}).matched == []


@pytest.mark.parametrize(
    ("amount", "role", "approval"),
    [
        (6_000_000, "cfo", "board"),
        (1_500_000, "staff", "director"),
        (300_000, "intern", "director"),
        (100_000, "manager", "auto"),
        (100_000, "staff", "manager"),
        (10_000, "staff", "auto"),
        (10_000, "intern", "manager"),
    ],
)
def test_approval_limit(shipped: dict, amount: int, role: str, approval: str) -> None:
    facts = {"amount": amount, "role": role}
    assert evaluate(shipped["approval-limit"], facts).outcome == {"approval": approval}
