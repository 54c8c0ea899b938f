"""Fill `${...}` references in scenario values (paths, headers, workflow arguments and ids).

Compiled once per request definition: a template without references becomes a constant, so
the common case costs one call. Per request the driver draws one row per data pool the
request reads (`draw_rows`), and every template of that request fills from the same rows, so
a path, a header and a body agree on the customer they name. Chain values and `${uuid}` ride
in the same mapping under the reserved names `chain` and `uuid`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from capacity.drivers.variables import CASTS, PoolCursor
from capacity.refs import CHAIN_POOL, UUID_REF, Ref, has_refs, split_refs, whole_ref

Rows = dict[str, Any]
"""Pool name -> row for this request; `chain` -> the chain's values; `uuid` -> a hex id."""


def ref_value(ref: Ref, rows: Mapping[str, Any]) -> Any:
    """The value one reference stands for in this request."""
    if ref.pool == UUID_REF:
        return rows[UUID_REF]
    if ref.pool == CHAIN_POOL:
        value = rows[CHAIN_POOL][ref.column]
        if not ref.cast:
            return value
        return CASTS[ref.cast](value if isinstance(value, str) else as_text(value))
    return CASTS[ref.cast](rows[ref.pool][ref.column])


def as_text(value: Any) -> str:
    """A value as it reads inside a string: text as is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def compile_text(
    text: str, encode: Callable[[str], str] | None = None
) -> Callable[[Mapping[str, Any]], str]:
    """A function filling the references in `text` (each value passed through `encode`)."""
    parts = split_refs(text)
    if not any(isinstance(p, Ref) for p in parts):
        return lambda _rows: text
    enc = encode or (lambda s: s)

    def fill(rows: Mapping[str, Any]) -> str:
        return "".join(p if isinstance(p, str) else enc(as_text(ref_value(p, rows))) for p in parts)

    return fill


def compile_value(template: Any) -> Callable[[Mapping[str, Any]], Any]:
    """A function building `template` with its references filled.

    A template without references is returned as it is, not copied: callers only serialise
    or compare what they get, never change it.
    """
    if not has_refs(template):
        return lambda _rows: template
    return lambda rows: _fill(template, rows)


def _fill(value: Any, rows: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, rows) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, rows) for v in value]
    if not isinstance(value, str):
        return value
    ref = whole_ref(value)
    if ref is not None:
        return ref_value(ref, rows)
    if "${" not in value:
        return value
    return "".join(
        p if isinstance(p, str) else as_text(ref_value(p, rows)) for p in split_refs(value)
    )


def refs_in(values: Iterable[Any]) -> list[Ref]:
    """Every reference in the given templates."""
    out: list[Ref] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)
        elif isinstance(value, str) and "${" in value:
            out.extend(p for p in split_refs(value) if isinstance(p, Ref))

    for value in values:
        walk(value)
    return out


class RowDraw:
    """Draws the rows one request needs: one per data pool it reads, a uuid if it uses one."""

    def __init__(self, templates: Iterable[Any], cursors: Mapping[str, PoolCursor]) -> None:
        refs = refs_in(templates)
        names = sorted({r.pool for r in refs} - {CHAIN_POOL, UUID_REF})
        self.cursors = [(name, cursors[name]) for name in names]
        self.uuid = any(r.pool == UUID_REF for r in refs)
        self.empty = not self.cursors and not self.uuid

    def draw(self, chain: Mapping[str, Any] | None = None) -> Rows:
        rows: Rows = {name: cursor.next_row() for name, cursor in self.cursors}
        if self.uuid:
            rows[UUID_REF] = f"{random.getrandbits(128):032x}"
        if chain is not None:
            rows[CHAIN_POOL] = chain
        return rows
