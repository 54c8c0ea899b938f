"""Pure evaluator of JSON rule sets (no I/O): parse, validate, evaluate, perturb.

A rule set is `{"name", "description", "mode": "first"|"all", "default": {...}, "rules": [...]}`;
each rule is `{"name", "when": {"all"|"any": [cond...]}, "then": {...}}` and a condition is
`{"fact", "op", "value"}` or a nested `{"all": [...]}` / `{"any": [...]}`. The outcome always
starts from `default`, so callers see every outcome key whether or not a rule matched.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MODES = ("first", "all")


class RuleSetError(ValueError):
    """A rule set document that does not follow the format."""


def _contains(fact: Any, value: Any) -> bool:
    return value in fact


def _in(fact: Any, value: Any) -> bool:
    return fact in value


def _not_in(fact: Any, value: Any) -> bool:
    return fact not in value


OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "in": _in,
    "not_in": _not_in,
    "contains": _contains,
}
LIST_VALUE_OPS = frozenset({"in", "not_in"})


@dataclass(frozen=True)
class Rule:
    """One named rule: a condition tree and the outcome it contributes."""

    name: str
    when: Mapping[str, Any]
    then: Mapping[str, Any]


@dataclass(frozen=True)
class RuleSet:
    """A validated rule set."""

    name: str
    description: str
    mode: str
    default: Mapping[str, Any]
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Evaluation:
    """The merged outcome and the names of the rules that contributed, in order."""

    outcome: dict[str, Any]
    matched: list[str]


def _check_condition(cond: Any, where: str) -> None:
    if not isinstance(cond, dict):
        raise RuleSetError(f"{where}: a condition must be an object")
    groups = [k for k in ("all", "any") if k in cond]
    if groups:
        if len(cond) != 1:
            raise RuleSetError(f"{where}: a group has exactly one key, 'all' or 'any'")
        items = cond[groups[0]]
        if not isinstance(items, list) or not items:
            raise RuleSetError(f"{where}.{groups[0]}: must be a non-empty list")
        for i, item in enumerate(items):
            _check_condition(item, f"{where}.{groups[0]}[{i}]")
        return
    if set(cond) != {"fact", "op", "value"}:
        raise RuleSetError(f"{where}: a condition needs exactly 'fact', 'op' and 'value'")
    if not isinstance(cond["fact"], str):
        raise RuleSetError(f"{where}.fact: must be a string")
    if cond["op"] not in OPS:
        raise RuleSetError(f"{where}.op: {cond['op']!r} is not one of {', '.join(OPS)}")
    if cond["op"] in LIST_VALUE_OPS and not isinstance(cond["value"], list):
        raise RuleSetError(f"{where}.value: op '{cond['op']}' needs a list")


def parse_ruleset(doc: Any, source: str = "rule set") -> RuleSet:
    """Validate a rule-set document; errors name `source` and the offending path."""
    if not isinstance(doc, dict):
        raise RuleSetError(f"{source}: must be a JSON object")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise RuleSetError(f"{source}: 'name' must be a non-empty string")
    mode = doc.get("mode", "first")
    if mode not in MODES:
        raise RuleSetError(f"{source}: 'mode' must be 'first' or 'all', got {mode!r}")
    default = doc.get("default", {})
    if not isinstance(default, dict):
        raise RuleSetError(f"{source}: 'default' must be an object")
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list):
        raise RuleSetError(f"{source}: 'rules' must be a list")
    rules = []
    for i, raw in enumerate(raw_rules):
        where = f"{source}: rules[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise RuleSetError(f"{where}: a rule needs a string 'name'")
        when, then = raw.get("when"), raw.get("then")
        if not isinstance(when, dict) or not ({"all", "any"} & set(when)):
            raise RuleSetError(f"{where}.when: must be an 'all' or 'any' group")
        _check_condition(when, f"{where}.when")
        if not isinstance(then, dict):
            raise RuleSetError(f"{where}.then: must be an object")
        rules.append(Rule(raw["name"], when, then))
    return RuleSet(name, str(doc.get("description", "")), mode, default, tuple(rules))


def matches(cond: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    """Whether a condition tree holds; a missing fact or incomparable types never match."""
    if "all" in cond:
        return all(matches(c, facts) for c in cond["all"])
    if "any" in cond:
        return any(matches(c, facts) for c in cond["any"])
    if cond["fact"] not in facts:
        return False
    try:
        return bool(OPS[cond["op"]](facts[cond["fact"]], cond["value"]))
    except TypeError:
        return False


def evaluate(ruleset: RuleSet, facts: Mapping[str, Any]) -> Evaluation:
    """Apply `ruleset` to `facts`: first match wins (`first`) or all matches merge in order."""
    outcome = dict(ruleset.default)
    matched: list[str] = []
    for rule in ruleset.rules:
        if matches(rule.when, facts):
            outcome.update(rule.then)
            matched.append(rule.name)
            if ruleset.mode == "first":
                break
    return Evaluation(outcome, matched)


def outcome_values(ruleset: RuleSet, key: str) -> list[Any]:
    """Every value `key` can take in the rule set's outcomes, in first-seen order."""
    values: list[Any] = []
    for then in [ruleset.default, *(r.then for r in ruleset.rules)]:
        if key in then and then[key] not in values:
            values.append(then[key])
    return values


def perturb(ruleset: RuleSet, outcome: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """A plausible but wrong outcome: one value changed to something the rule set can't give.

    Strings move to another value the same key takes elsewhere in the rule set, so a wrong
    approval level still looks like an approval level and only a correctness check catches it.
    """
    wrong = dict(outcome)
    if not wrong:
        return {"perturbed": True}
    key = rng.choice(sorted(wrong))
    value = wrong[key]
    if isinstance(value, bool):
        wrong[key] = not value
    elif isinstance(value, int):
        wrong[key] = value + 1
    elif isinstance(value, float):
        wrong[key] = round(value + 0.01 + value * 0.1, 6)
    elif isinstance(value, str):
        others = [v for v in outcome_values(ruleset, key) if v != value and isinstance(v, str)]
        wrong[key] = rng.choice(others) if others else f"{value}-x"
    else:
        wrong[key] = None
    return wrong
