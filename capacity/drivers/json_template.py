"""Request bodies as JSON templates: serialised once, filled per request by joining bytes.

A template such as `{"id": "${customers.id}", "first": 3}` is serialised once with
`json.dumps` defaults, a random placeholder string standing in for each
`${pool.column[:cast]}` reference. Per request, each reference's value is JSON-encoded (and
cached per pool row, since rows never change) and the pieces are joined, so the output is
byte for byte `json.dumps` of the filled template without rebuilding and re-encoding the
whole dict on every request. References to the same pool in one body read the same row, as
`compile_variables` does.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from capacity.drivers.variables import CASTS, PoolCursor, is_ref, parse_ref

_encode = json.JSONEncoder().encode


class _Ref:
    """One `${pool.column:cast}` reference, with its encoded values cached per row."""

    def __init__(self, pool: str, column: str, cast: str) -> None:
        self.pool = pool
        self.column = column
        self.cast = CASTS[cast]
        self.cache: dict[int, bytes] = {}

    def encoded(self, row: Mapping[str, str]) -> bytes:
        key = id(row)
        value = self.cache.get(key)
        if value is None:
            value = self.cache[key] = _encode(self.cast(row[self.column])).encode()
        return value


def compile_json(template: Any, cursors: Mapping[str, PoolCursor]) -> Callable[[], bytes]:
    """A function returning `json.dumps(filled template).encode()` for a fresh set of rows."""
    while True:
        # A random placeholder, drawn again in the (unlikely) case the template holds it.
        token = secrets.token_hex(8)
        refs: list[_Ref] = []
        text = json.dumps(_mark(template, f"ref-{token}-{{}}", refs))
        placeholder = re.compile(f'"ref-{token}-(\\d+)"')
        if len(placeholder.findall(text)) == len(refs):
            break
    if not refs:
        fixed = text.encode()
        return lambda: fixed
    # Literal chunks interleaved with reference indices: [lit, i, lit, i, ..., lit].
    pieces = placeholder.split(text)
    literals = [p.encode() for p in pieces[0::2]]
    order = [refs[int(i)] for i in pieces[1::2]]
    pools = sorted({r.pool for r in refs})
    pool_cursors = [(name, cursors[name]) for name in pools]
    slots = list(zip(order, literals[1:], strict=True))
    head = literals[0]

    def build() -> bytes:
        rows = {name: cursor.next_row() for name, cursor in pool_cursors}
        out = [head]
        for ref, literal in slots:
            out.append(ref.encoded(rows[ref.pool]))
            out.append(literal)
        return b"".join(out)

    return build


def _mark(value: Any, placeholder: str, refs: list[_Ref]) -> Any:
    """The template with each reference replaced by a numbered placeholder, appended to refs."""
    if isinstance(value, Mapping):
        return {k: _mark(v, placeholder, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark(v, placeholder, refs) for v in value]
    if not is_ref(value):
        return value
    refs.append(_Ref(*parse_ref(value)))
    return placeholder.format(len(refs) - 1)
