"""References filled per request (paths, headers, bodies, workflow values), JSON pointers,
and the assertions on answers: the values, the bytes and the failure messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capacity.drivers.assertions import assertion_failure, compile_result_check
from capacity.drivers.json_template import compile_json_rows
from capacity.drivers.templates import RowDraw, compile_text, compile_value
from capacity.drivers.variables import PoolCursor
from capacity.jsonpointer import MISSING, PointerError, parse_pointer, resolve
from capacity.refs import has_refs, split_refs, whole_ref
from capacity.scenario import DataPool
from capacity.scenario.model import Assertion

ORDERS = DataPool(
    "orders",
    Path("orders.csv"),
    ({"id": "O-1", "qty": "3", "amount": "12.5"}, {"id": "O/2", "qty": "7", "amount": "0.1"}),
)


def cursors() -> dict[str, PoolCursor]:
    return {"orders": PoolCursor(ORDERS)}


def test_references_split_and_whole() -> None:
    assert whole_ref("${orders.qty:int}") is not None
    assert whole_ref("x-${orders.qty}") is None
    parts = split_refs("/a/${orders.id}/b/${uuid}")
    assert [p if isinstance(p, str) else p.pool for p in parts] == ["/a/", "orders", "/b/", "uuid"]
    assert has_refs({"a": [1, "${chain.x}"]}) and not has_refs({"a": "$ {x}"})


def test_one_draw_serves_every_template_of_a_request() -> None:
    path = compile_text(
        "/orders/${orders.id}?n=${orders.qty}", encode=lambda v: v.replace("/", "%2F")
    )
    body = compile_json_rows(
        {"id": "${orders.id}", "qty": "${orders.qty:int}", "note": "q ${orders.qty}"}
    )
    draw = RowDraw(["/orders/${orders.id}", {"qty": "${orders.qty}"}], cursors())
    first, second = draw.draw(), draw.draw()
    assert path(first) == "/orders/O-1?n=3" and path(second) == "/orders/O%2F2?n=7"
    assert json.loads(body(first)) == {"id": "O-1", "qty": 3, "note": "q 3"}
    # Byte for byte json.dumps of the filled template, as for GraphQL bodies.
    assert body(second) == json.dumps({"id": "O/2", "qty": 7, "note": "q 7"}).encode()


def test_chain_values_keep_their_json_type_and_are_never_cached() -> None:
    body = compile_json_rows({"id": "${chain.id}", "tag": "inv-${chain.id}"})
    value = compile_value(["${chain.id}", {"n": "${chain.n:str}"}])
    draw = RowDraw([{"id": "${chain.id}"}], cursors())
    assert draw.empty
    for n in (1, 2):
        rows = draw.draw({"id": n, "n": n * 10})
        assert json.loads(body(rows)) == {"id": n, "tag": f"inv-{n}"}
        assert value(rows) == [n, {"n": str(n * 10)}]


def test_uuid_is_fresh_per_request_and_shared_within_one() -> None:
    draw = RowDraw(["id-${uuid}"], cursors())
    text = compile_text("${uuid}/${uuid}")
    a, b = draw.draw(), draw.draw()
    first, again = text(a).split("/")
    assert first == again and len(first) == 32 and text(a) != text(b)


def test_constant_templates_are_returned_as_they_are() -> None:
    template = {"a": [1, 2]}
    assert compile_value(template)({}) is template
    assert compile_json_rows(template)({}) == json.dumps(template).encode()


@pytest.mark.parametrize(
    ("pointer", "tokens"),
    [("", ()), ("/a", ("a",)), ("/a/0", ("a", "0")), ("/a~1b/~0c", ("a/b", "~c")), ("/", ("",))],
)
def test_pointer_parsing(pointer: str, tokens: tuple[str, ...]) -> None:
    assert parse_pointer(pointer) == tokens


@pytest.mark.parametrize("pointer", ["a", "/a~", "/a~2"])
def test_bad_pointers(pointer: str) -> None:
    with pytest.raises(PointerError):
        parse_pointer(pointer)


def test_pointer_resolution() -> None:
    doc = {"a": [{"b": 1}, {"b": None}], "c/d": 2}
    assert resolve(doc, ("a", "1", "b")) is None
    assert resolve(doc, ("a", "0", "b")) == 1
    assert resolve(doc, ("c/d",)) == 2
    assert resolve(doc, ("a", "01")) is MISSING and resolve(doc, ("a", "2")) is MISSING
    assert resolve(doc, ("x",)) is MISSING and resolve(doc, ("a", "0", "b", "c")) is MISSING


def check(kind: str, pointer: str, doc: object, **fields: object) -> str | None:
    a = Assertion(pointer, parse_pointer(pointer), kind, **fields)  # type: ignore[arg-type]
    return assertion_failure(a, doc, a.value)


def test_assertion_messages() -> None:
    doc = {"outcome": {"rate": 0.05}, "n": 7, "ok": True}
    assert check("equals", "/outcome/rate", doc, value=0.05 + 1e-12) is None
    assert check("equals", "/outcome/rate", doc, value=0.15) == (
        "assertion failed: /outcome/rate expected 0.15, got 0.05"
    )
    assert check("equals", "/x", doc, value=1) == "assertion failed: /x missing"
    assert check("exists", "/ok", doc, value=True) is None
    assert check("exists", "/ok", doc, value=False) == "assertion failed: /ok present"
    assert check("range", "/n", doc, low=0.0, high=5.0) == "assertion failed: /n = 7 not in [0, 5]"
    assert check("range", "/n", doc, low=7.0) is None
    assert check("range", "/ok", doc, high=5.0) == "assertion failed: /ok is True, not a number"
    # The rules form keeps the rules driver's message.
    rules = Assertion("/outcome/rate", ("outcome", "rate"), "equals", 0.15, label="wrong outcome")
    assert assertion_failure(rules, doc, 0.15) == "wrong outcome: rate expected 0.15, got 0.05"
    assert assertion_failure(rules, [1], 0.15) == "wrong outcome: rate expected 0.15, got None"


def test_result_check_fills_expected_values_from_the_rows() -> None:
    a = Assertion("/invoiceId", ("invoiceId",), "equals", "${chain.id}")
    result_check = compile_result_check([a])
    assert result_check is not None
    assert result_check({"invoiceId": "INV-9"}, {"chain": {"id": "INV-9"}}) is None
    assert result_check({"invoiceId": "INV-8"}, {"chain": {"id": "INV-9"}}) == (
        "assertion failed: /invoiceId expected 'INV-9', got 'INV-8'"
    )
    assert compile_result_check([]) is None
