"""Fill `${pool.column}` references in request variables from the scenario's data pools.

References are compiled once per operation so the per-request work is a few list lookups.
All references of one request that name the same pool read the same row, so a customer id
and its country stay consistent.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from capacity.scenario import DataPool

CASTS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "bool": lambda v: v.strip().lower() in ("1", "true", "yes"),
    "str": str,
    "": str,
}


class PoolCursor:
    """Hands out rows of one pool, cycling or at random, shared by all users of a process."""

    def __init__(self, pool: DataPool, seed: int | None = None) -> None:
        self.pool = pool
        self._cycle: Iterator[Mapping[str, str]] = itertools.cycle(pool.rows)
        self._random = random.Random(seed)

    def next_row(self) -> Mapping[str, str]:
        if self.pool.mode == "random":
            return self._random.choice(self.pool.rows)
        return next(self._cycle)


def is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def parse_ref(ref: str) -> tuple[str, str, str]:
    """`${pool.column:cast}` -> (pool, column, cast); cast is "" when not given."""
    target, _, cast = ref[2:-1].partition(":")
    pool, _, column = target.partition(".")
    return pool, column, cast


def compile_variables(
    template: Mapping[str, Any], cursors: Mapping[str, PoolCursor]
) -> Callable[[], dict[str, Any]]:
    """Return a function that builds one request's variables from the template."""
    if not _contains_ref(template):
        frozen = dict(template)
        return lambda: dict(frozen)

    def build() -> dict[str, Any]:
        rows: dict[str, Mapping[str, str]] = {}
        return _fill(template, cursors, rows)

    return build


def _contains_ref(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_contains_ref(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_ref(v) for v in value)
    return is_ref(value)


def _fill(value: Any, cursors: Mapping[str, PoolCursor], rows: dict[str, Mapping[str, str]]) -> Any:
    if isinstance(value, Mapping):
        return {k: _fill(v, cursors, rows) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, cursors, rows) for v in value]
    if not is_ref(value):
        return value
    pool, column, cast = parse_ref(value)
    row = rows.get(pool)
    if row is None:
        row = rows[pool] = cursors[pool].next_row()
    return CASTS[cast](row[column])
