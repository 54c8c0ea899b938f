"""Rules-engine driver: one stat per rule set; an outcome that differs from the expected
one is a failure, so a wrong answer counts as much as a slow one."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

from locust import FastHttpUser, between, task

from capacity.scenario import RuleSetLoad, UserClass


def outcome_mismatch(expect: Mapping[str, Any] | None, outcome: Any) -> str | None:
    """Describe the first expected field the outcome gets wrong, or None when it matches."""
    if expect is None:
        return None
    if not isinstance(outcome, dict):
        return "wrong outcome: response has no outcome object"
    for key, want in expect.items():
        got = outcome.get(key)
        same = (
            isinstance(want, int | float)
            and isinstance(got, int | float)
            and not isinstance(want, bool)
            and math.isclose(want, got, rel_tol=1e-9, abs_tol=1e-9)
        ) or got == want
        if not same:
            return f"wrong outcome: {key} expected {want!r}, got {got!r}"
    return None


def make_rules_user(spec: UserClass, rules_url: str, name: str = "RulesUser") -> type:
    cases = [
        (
            f"rules {rs.rule_set}",
            [
                (json.dumps({"ruleSet": rs.rule_set, "facts": dict(c.facts)}).encode(), c.expect)
                for c in rs.cases
            ],
        )
        for rs in spec.rule_sets
    ]
    return type(
        name,
        (RulesUser,),
        {
            "host": rules_url.rstrip("/"),
            "weight": spec.weight,
            "wait_time": between(*spec.wait_s),
            "rule_sets": spec.rule_sets,
            "cases": cases,
            "cum_weights": list(accumulate(rs.weight for rs in spec.rule_sets)),
            "network_timeout": spec.timeout_s,
            "abstract": False,
        },
    )


class RulesUser(FastHttpUser):
    abstract = True
    rule_sets: tuple[RuleSetLoad, ...] = ()
    cases: list[tuple[str, list[tuple[bytes, Mapping[str, Any] | None]]]] = []
    cum_weights: list[int] = []
    headers = {"Content-Type": "application/json", "Accept": "application/json"}

    @task
    def evaluate(self) -> None:
        stat_name, bodies = random.choices(self.cases, cum_weights=self.cum_weights)[0]
        body, expect = random.choice(bodies)
        with self.client.post(
            "/evaluate",
            data=body,  # type: ignore[arg-type]  # bytes are sent as-is
            headers=self.headers,
            name=stat_name,
            catch_response=True,
        ) as resp:
            if resp.status_code != 200 or expect is None:
                return
            try:
                outcome = json.loads(resp.content or b"").get("outcome")
            except (ValueError, AttributeError):
                resp.failure("invalid JSON from rules engine")
                return
            mismatch = outcome_mismatch(expect, outcome)
            if mismatch:
                resp.failure(mismatch)
