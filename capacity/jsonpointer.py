"""JSON pointers (RFC 6901): parsed once when a scenario loads, resolved per answer.

A pointer is `""` (the whole document) or `/`-separated tokens, `~1` standing for `/` and
`~0` for `~`. Parsing is strict so that a typo in a scenario stops the run at load time
(exit 2) instead of failing every request of the run.
"""

from __future__ import annotations

from typing import Any

MISSING = object()
"""What `resolve` returns when the pointer names nothing in the document."""


class PointerError(ValueError):
    """A malformed JSON pointer."""


def parse_pointer(text: str) -> tuple[str, ...]:
    """`/a/b~1c` -> ("a", "b/c"); raise PointerError for anything RFC 6901 does not allow."""
    if text == "":
        return ()
    if not text.startswith("/"):
        raise PointerError(f"JSON pointer '{text}' must be empty or start with '/'")
    tokens = []
    for raw in text[1:].split("/"):
        rest = raw.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise PointerError(f"JSON pointer '{text}': '~' must be followed by 0 or 1")
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tuple(tokens)


def resolve(document: Any, tokens: tuple[str, ...]) -> Any:
    """The value the pointer names, or MISSING (an array index is digits, no leading zero)."""
    value = document
    for token in tokens:
        if isinstance(value, dict):
            value = value.get(token, MISSING)
            if value is MISSING:
                return MISSING
        elif isinstance(value, list):
            if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
                return MISSING
            index = int(token)
            if index >= len(value):
                return MISSING
            value = value[index]
        else:
            return MISSING
    return value
