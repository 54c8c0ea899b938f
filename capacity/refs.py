"""The `${...}` reference syntax of scenario values: one definition for loader and drivers.

`${pool.column}` reads a column of a data pool's row, optionally converted
(`${orders.quantity:int}`); `${chain.name}` reads a value an earlier step of the same request
chain took from its answer; `${uuid}` is a fresh random hex id per request. A string that is
exactly one reference is replaced by the value (its type kept); references inside a longer
string are filled in as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHAIN_POOL = "chain"
UUID_REF = "uuid"
RESERVED_POOLS = (CHAIN_POOL, UUID_REF)
CASTS = ("int", "float", "bool", "str")
_REF = re.compile(r"\$\{([^{}]*)\}")


@dataclass(frozen=True)
class Ref:
    """One reference: `pool` is a data pool, `chain` or `uuid`; `cast` is "" when not given."""

    pool: str
    column: str
    cast: str
    text: str


def parse_ref(text: str) -> Ref:
    """`${pool.column:cast}` (with the braces) -> Ref; no validation (see `check_ref`)."""
    inner = text[2:-1]
    target, _, cast = inner.partition(":")
    pool, _, column = target.partition(".")
    return Ref(pool, column, cast, text)


def whole_ref(value: object) -> Ref | None:
    """The reference a string consists of entirely, else None."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        match = _REF.fullmatch(value)
        if match is not None:
            return parse_ref(value)
    return None


def split_refs(text: str) -> list[str | Ref]:
    """A string as literal parts and references, in order (no empty literals)."""
    parts: list[str | Ref] = []
    last = 0
    for match in _REF.finditer(text):
        if match.start() > last:
            parts.append(text[last : match.start()])
        parts.append(parse_ref(match.group(0)))
        last = match.end()
    if last < len(text):
        parts.append(text[last:])
    return parts


def has_refs(value: object) -> bool:
    """Whether a string, or any string inside a table or array, holds a reference."""
    if isinstance(value, str):
        return _REF.search(value) is not None
    if isinstance(value, dict):
        return any(has_refs(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_refs(v) for v in value)
    return False
