"""master-data stand-in: REST JSON over the reference dataset, kept in PostgreSQL.

Batch lookups (`?ids=A,B`) exist so the gateway can resolve a page of nested references in
one call instead of N, as a real federated subgraph would with an entity resolver. Storage and
SQL live in `capacity.stack.pgstore`; this module validates requests and routes them. The
knobs `db_delay_*` slow every SQL statement inside the database (see pgstore).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from capacity.stack import data as refdata
from capacity.stack import pgstore, telemetry
from capacity.stack.httpkit import (
    RUNTIME_KEY,
    create_app,
    error_response,
    json_response,
    read_json,
)
from capacity.stack.tuning import Tuning, sample_db_delay_ms

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
STORE_KEY = web.AppKey("store", pgstore.Store)


class BadQuery(ValueError):
    """A query-string parameter with a value that cannot be used."""


def _int_param(query: Any, name: str, default: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise BadQuery(f"query parameter '{name}' must be an integer, got {text!r}") from exc
    if value < 0:
        raise BadQuery(f"query parameter '{name}' must be >= 0, got {value}")
    return value


def _float_param(query: Any, name: str) -> float:
    text = query[name]
    try:
        return float(text)
    except ValueError as exc:
        raise BadQuery(f"query parameter '{name}' must be a number, got {text!r}") from exc


def filter_values(collection: str, query: Any) -> list[Any]:
    """The listing's filter parameters in `pgstore.FILTERS` order (None: not filtered)."""
    values: list[Any] = []
    for name, _condition, cast in pgstore.FILTERS[collection]:
        if not query.get(name):
            values.append(None)
        elif cast == "int":
            values.append(_int_param(query, name, 0))
        elif cast == "float8":
            values.append(_float_param(query, name))
        else:
            values.append(query[name])
    return values


async def list_records(store: pgstore.Store, collection: str, query: Any) -> dict[str, object]:
    """One page of a collection: by `ids` (batch lookup, in order) or by filters."""
    if query.get("ids"):
        items = await store.get_many(collection, query["ids"].split(","))
        return {"items": items, "total": len(items), "offset": 0, "limit": len(items)}
    offset = _int_param(query, "offset", 0)
    limit = min(_int_param(query, "limit", DEFAULT_LIMIT), MAX_LIMIT)
    page = await store.page(collection, filter_values(collection, query), offset, limit)
    return {"items": page.items, "total": page.total, "offset": offset, "limit": limit}


def _require_str(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadQuery(f"field '{key}' must be a non-empty string")
    return value


async def new_customer(store: pgstore.Store, body: Any) -> dict:
    """Validate a POST /customers body and store the customer under the next id."""
    if not isinstance(body, dict):
        raise BadQuery("body must be a JSON object")
    tier = body.get("tier") or "standard"
    if tier not in refdata.TIERS:
        raise BadQuery(f"field 'tier' must be one of standard, gold, platinum, got {tier!r}")
    fields = {
        "name": _require_str(body, "name"),
        "email": _require_str(body, "email"),
        "country": _require_str(body, "country"),
        "tier": tier,
        "creditLimit": 100000.0,
    }
    return await store.insert_customer(fields)


class NotFound(LookupError):
    """A referenced record does not exist."""


def _invoice_lines(body: dict) -> list[tuple[str, int]]:
    raw_lines = body.get("lines")
    if not isinstance(raw_lines, list) or not raw_lines:
        raise BadQuery("field 'lines' must be a non-empty list")
    lines = []
    for raw in raw_lines:
        pid = raw.get("productId") if isinstance(raw, dict) else None
        quantity = raw.get("quantity") if isinstance(raw, dict) else None
        if not isinstance(pid, str) or isinstance(quantity, bool) or not isinstance(quantity, int):
            raise BadQuery("each line needs a string 'productId' and an integer 'quantity'")
        if quantity <= 0:
            raise BadQuery(f"line quantity must be > 0, got {quantity}")
        lines.append((pid, quantity))
    return lines


async def new_invoice(store: pgstore.Store, body: Any) -> dict:
    """Validate a POST /invoices body, price its lines and store it as a draft."""
    if not isinstance(body, dict):
        raise BadQuery("body must be a JSON object")
    cid = _require_str(body, "customerId")
    wanted = _invoice_lines(body)
    if await store.get("customers", cid) is None:
        raise NotFound(f"customer '{cid}' not found")
    products = {p["id"]: p for p in await store.get_many("products", [p for p, _ in wanted])}
    for pid, _quantity in wanted:
        if pid not in products:
            raise NotFound(f"product '{pid}' not found")
    lines = [refdata.invoice_line(products[pid], quantity) for pid, quantity in wanted]
    n = await store.next_invoice_number()
    invoice = {
        "id": refdata.invoice_id(n),
        "number": f"VX-2025-{n:06d}",
        "customerId": cid,
        "lines": lines,
        "currency": body.get("currency") or "BDT",
        "total": refdata.invoice_total(lines),
        "status": "draft",
        "dueDate": (date.today() + timedelta(days=30)).isoformat(),
    }
    await store.insert_invoice(n, invoice)
    return invoice


def _collection_routes(app: web.Application, collection: str) -> None:
    singular = collection[:-1]

    async def get_one(request: web.Request) -> web.Response:
        record = await request.app[STORE_KEY].get(collection, request.match_info["id"])
        if record is None:
            return error_response(f"{singular} '{request.match_info['id']}' not found", 404)
        return json_response(record)

    async def get_many(request: web.Request) -> web.Response:
        try:
            store = request.app[STORE_KEY]
            return json_response(await list_records(store, collection, request.query))
        except BadQuery as exc:
            return error_response(str(exc), 400)

    app.router.add_get(f"/{collection}/{{id}}", get_one)
    app.router.add_get(f"/{collection}", get_many)


async def _post(
    request: web.Request, create: Callable[[pgstore.Store, Any], Awaitable[dict]]
) -> Any:
    body = await read_json(request)
    try:
        return json_response(await create(request.app[STORE_KEY], body), 201)
    except BadQuery as exc:
        return error_response(str(exc), 400)
    except NotFound as exc:
        return error_response(str(exc), 404)


async def post_invoice_to_ledger(request: web.Request) -> web.Response:
    """`POST /invoices/{id}/post`: a draft invoice becomes posted, exactly once (409 after)."""
    invoice_id = request.match_info["id"]
    invoice, posted = await request.app[STORE_KEY].post_invoice(invoice_id)
    if invoice is None:
        return error_response(f"invoice '{invoice_id}' not found", 404)
    if not posted:
        return error_response(f"invoice '{invoice_id}' is {invoice['status']}, not draft", 409)
    return json_response(invoice)


async def post_customer(request: web.Request) -> web.Response:
    return await _post(request, new_customer)


async def post_invoice(request: web.Request) -> web.Response:
    return await _post(request, new_invoice)


def build_app(tuning: Tuning, dsn: str, dataset: refdata.Dataset | None = None) -> web.Application:
    """The master-data aiohttp application over PostgreSQL at `dsn` (loaded at start-up)."""
    app = create_app("master-data", tuning)
    runtime = app[RUNTIME_KEY]

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        telemetry.instrument_asyncpg()
        store = await pgstore.Store.open(
            dsn, lambda: sample_db_delay_ms(runtime.tuning, runtime.rng), dataset
        )
        app[STORE_KEY] = store
        yield
        await store.close()

    app.cleanup_ctx.append(store_ctx)
    for collection in pgstore.COLLECTIONS:
        _collection_routes(app, collection)
    app.router.add_post("/customers", post_customer)
    app.router.add_post("/invoices", post_invoice)
    app.router.add_post("/invoices/{id}/post", post_invoice_to_ledger)
    return app
