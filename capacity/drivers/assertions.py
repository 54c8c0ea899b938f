"""Assertions on answers by JSON pointer: equals, exists, in range (HTTP bodies, workflow
query and update results), with the messages a failure is counted under."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from capacity.drivers.templates import Rows, compile_value
from capacity.jsonpointer import MISSING, resolve
from capacity.scenario.model import Assertion


def same_value(want: Any, got: Any) -> bool:
    """Equality for assertions: numbers within 1e-9 (JSON floats), anything else exactly."""
    if (
        isinstance(want, int | float)
        and isinstance(got, int | float)
        and not isinstance(want, bool)
        and not isinstance(got, bool)
    ):
        return math.isclose(want, got, rel_tol=1e-9, abs_tol=1e-9)
    return bool(got == want)


def assertion_failure(assertion: Assertion, document: Any, want: Any) -> str | None:
    """Why the answer fails one assertion, or None (`want`: the expected value, filled)."""
    got = resolve(document, assertion.tokens)
    if assertion.label:  # the rules form's message, as the rules driver has always said it
        if assertion.kind == "equals" and (got is MISSING or not same_value(want, got)):
            shown = None if got is MISSING else got
            return f"{assertion.label}: {assertion.tokens[-1]} expected {want!r}, got {shown!r}"
        return None
    pointer = assertion.pointer or "(the whole answer)"
    if assertion.kind == "exists":
        if (got is not MISSING) != assertion.value:
            return f"assertion failed: {pointer} {'missing' if assertion.value else 'present'}"
        return None
    if got is MISSING:
        return f"assertion failed: {pointer} missing"
    if assertion.kind == "equals":
        if not same_value(want, got):
            return f"assertion failed: {pointer} expected {want!r}, got {got!r}"
        return None
    if not isinstance(got, int | float) or isinstance(got, bool):
        return f"assertion failed: {pointer} is {got!r}, not a number"
    if (assertion.low is not None and got < assertion.low) or (
        assertion.high is not None and got > assertion.high
    ):
        low = "-inf" if assertion.low is None else f"{assertion.low:g}"
        high = "inf" if assertion.high is None else f"{assertion.high:g}"
        return f"assertion failed: {pointer} = {got!r} not in [{low}, {high}]"
    return None


def compile_result_check(
    assertions: Sequence[Assertion],
) -> Callable[[Any, Rows], str | None] | None:
    """A check of an already decoded result (a query's or update's), or None without any."""
    if not assertions:
        return None
    expected = [(a, compile_value(a.value)) for a in assertions]

    def check(document: Any, rows: Rows) -> str | None:
        for assertion, want in expected:
            failure = assertion_failure(assertion, document, want(rows))
            if failure is not None:
                return failure
        return None

    return check
