"""The GraphQL body template gives exactly `json.dumps` of the filled variables."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from capacity.drivers.json_template import compile_json
from capacity.drivers.variables import PoolCursor, compile_variables
from capacity.scenario import DataPool

ROWS = (
    {"id": "C-1", "n": "3", "price": "9.5", "vip": "yes", "name": 'Zoë "the" café\\'},
    {"id": "C-2", "n": "-7", "price": "0", "vip": "no", "name": "\x00\u2028 tab\t"},
    {"id": "C-3", "n": "12", "price": "1e3", "vip": "TRUE", "name": ""},
)


def cursors(mode: str, seed: int) -> dict[str, PoolCursor]:
    pools = {
        name: DataPool(name=name, path=None, rows=ROWS, mode=mode)  # type: ignore[arg-type]
        for name in ("customers", "products")
    }
    return {name: PoolCursor(pool, seed=seed) for name, pool in pools.items()}


TEMPLATES: list[Any] = [
    {},
    {"first": 3, "filter": {"country": "IN"}},
    {"id": "${customers.id}"},
    {
        "id": "${customers.id}",
        "input": {
            "name": "${customers.name}",
            "lines": [
                {"sku": "${products.id}", "qty": "${products.n:int}"},
                {"price": "${products.price:float}", "vip": "${customers.vip:bool}"},
            ],
            "note": "literal ${ not a ref",
        },
        "again": "${customers.id:str}",
    },
]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("mode", ["cycle", "random"])
def test_body_is_json_dumps_of_the_filled_template(template: Any, mode: str) -> None:
    fast = compile_json({"query": "q", "variables": template}, cursors(mode, seed=7))
    slow_vars = compile_variables(template, cursors(mode, seed=7))
    for _ in range(2 * len(ROWS) + 1):  # every row, and the cache hit on the second lap
        expected = json.dumps({"query": "q", "variables": slow_vars()}).encode()
        assert fast() == expected


def test_one_row_per_pool_per_request() -> None:
    build = compile_json({"a": "${customers.id}", "b": "${customers.n:int}"}, cursors("random", 1))
    for _ in range(50):
        doc = json.loads(build())
        row = next(r for r in ROWS if r["id"] == doc["a"])
        assert doc["b"] == int(row["n"])


def test_placeholder_lookalike_text_in_a_template_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = iter(["abcd", "abcd", "ef01"])
    monkeypatch.setattr("capacity.drivers.json_template.secrets.token_hex", lambda _n: next(tokens))
    # The first token drawn collides with the template's own text, so a second one is drawn.
    tricky = {"ref-abcd-0": "ref-abcd-1", "y": "${customers.id}"}
    body = json.loads(compile_json(tricky, cursors("cycle", 0))())
    assert body == {"ref-abcd-0": "ref-abcd-1", "y": "C-1"}


def test_fixed_template_is_built_once() -> None:
    build = compile_json({"first": random.randint(1, 9)}, {})
    assert build() is build()
