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

from capacity.drivers.templates import compile_text, compile_value
from capacity.drivers.variables import CASTS, PoolCursor, is_ref, parse_ref
from capacity.refs import RESERVED_POOLS, has_refs, whole_ref

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


class _Slot:
    """One value filled per request: a whole `${...}` reference or a string holding some."""

    def __init__(self, template: str) -> None:
        ref = whole_ref(template)
        self.pool = ref.pool if ref is not None else ""
        self.cached = ref is not None and ref.pool not in RESERVED_POOLS
        self.cache: dict[int, bytes] = {}
        self.value = compile_value(template) if ref is not None else compile_text(template)

    def encoded(self, rows: Mapping[str, Any]) -> bytes:
        if not self.cached:  # chain values and uuids change per request: never cached
            return _encode(self.value(rows)).encode()
        key = id(rows[self.pool])  # data-pool rows live as long as the run
        value = self.cache.get(key)
        if value is None:
            value = self.cache[key] = _encode(self.value(rows)).encode()
        return value


def compile_json_rows(template: Any) -> Callable[[Mapping[str, Any]], bytes]:
    """`compile_json` for a request whose rows are drawn by the caller (`templates.RowDraw`).

    Every template of one request (path, headers, body) fills from the same rows; strings
    with references inside them are filled as text, and chain values keep their JSON type.
    """
    while True:
        token = secrets.token_hex(8)
        slots: list[_Slot] = []
        text = json.dumps(_mark_slots(template, f"ref-{token}-{{}}", slots))
        placeholder = re.compile(f'"ref-{token}-(\\d+)"')
        if len(placeholder.findall(text)) == len(slots):
            break
    if not slots:
        fixed = text.encode()
        return lambda _rows: fixed
    pieces = placeholder.split(text)
    literals = [p.encode() for p in pieces[0::2]]
    pairs = list(zip([slots[int(i)] for i in pieces[1::2]], literals[1:], strict=True))
    head = literals[0]

    def build(rows: Mapping[str, Any]) -> bytes:
        out = [head]
        for slot, literal in pairs:
            out.append(slot.encoded(rows))
            out.append(literal)
        return b"".join(out)

    return build


def _mark_slots(value: Any, placeholder: str, slots: list[_Slot]) -> Any:
    if isinstance(value, Mapping):
        return {k: _mark_slots(v, placeholder, slots) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark_slots(v, placeholder, slots) for v in value]
    if not (isinstance(value, str) and has_refs(value)):
        return value
    slots.append(_Slot(value))
    return placeholder.format(len(slots) - 1)
