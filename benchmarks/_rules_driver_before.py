"""The rules driver as it was before it became a configuration of the HTTP driver (frozen).

Kept only as the "before" arm of `bench_http_driver.py`: `capacity/drivers/rules.py` as main
had it at 1cf4562 (target headers, URL credentials, the wire probe), unchanged but for this
docstring.
Rules-engine driver: one stat per rule set; an outcome that differs from the expected one is
a failure.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

from locust import FastHttpUser, between, task

from capacity.addresses import parse_http_url
from capacity.drivers.headers import target_headers
from capacity.drivers.lean_http import BodyCheck, request_headers, send_checked
from capacity.drivers.wire_timing import for_user
from capacity.scenario import RuleSetLoad, Targets, UserClass


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


def _no_check(_content: bytes) -> tuple[str | None, bool]:
    return None, False


def outcome_check(expect: Mapping[str, Any] | None) -> BodyCheck:
    """The body check of one case: its `outcome` must match `expect` (no check without one)."""
    if expect is None:
        return _no_check

    def check(content: bytes) -> tuple[str | None, bool]:
        try:
            outcome = json.loads(content).get("outcome")
        except (ValueError, AttributeError):
            return "invalid JSON from rules engine", False
        return outcome_mismatch(expect, outcome), False

    return check


def make_rules_user(spec: UserClass, targets: Targets, name: str = "RulesUser") -> type:
    url = parse_http_url(targets.rules_url)
    cases = [
        (
            f"rules {rs.rule_set}",
            [
                (
                    json.dumps({"ruleSet": rs.rule_set, "facts": dict(c.facts)}).encode(),
                    outcome_check(c.expect),
                )
                for c in rs.cases
            ],
        )
        for rs in spec.rule_sets
    ]
    return type(
        name,
        (RulesUser,),
        {
            "host": url.base,
            "base_path": url.path.rstrip("/"),
            "extra_headers": target_headers(targets, "rules_engine"),
            "url_authorization": url.basic_auth,
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
    cases: list[tuple[str, list[tuple[bytes, BodyCheck]]]] = []
    cum_weights: list[int] = []
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    base_path = ""
    extra_headers: dict[str, str] = {}
    url_authorization: str | None = None

    def on_start(self) -> None:
        self._headers = request_headers(
            self.client, {**self.headers, **self.extra_headers}, self.url_authorization
        )
        self._url = f"{self.client.base_url}{self.base_path}/evaluate"
        self._wire = for_user(self, self._url)

    @task
    def evaluate(self) -> None:
        stat_name, bodies = random.choices(self.cases, cum_weights=self.cum_weights)[0]
        body, check = random.choice(bodies)
        send_checked(
            self.client,
            "POST",
            self._url,
            body,
            self._headers,
            stat_name,
            self.context(),
            check,
            self._wire,
        )
