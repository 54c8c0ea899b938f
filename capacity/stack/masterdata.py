"""master-data stand-in: REST JSON over the in-memory reference dataset.

Batch lookups (`?ids=A,B`) exist so the gateway can resolve a page of nested references in
one call instead of N, as a real federated subgraph would with an entity resolver.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from capacity.stack import data as refdata
from capacity.stack.httpkit import create_app, error_response, json_response, read_json
from capacity.stack.tuning import Tuning

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
DATASET_KEY = web.AppKey("dataset", refdata.Dataset)

Predicate = Callable[[dict], bool]


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


def customer_filters(query: Any) -> list[Predicate]:
    preds: list[Predicate] = []
    if query.get("country"):
        country = query["country"]
        preds.append(lambda r: r["country"] == country)
    if query.get("tier"):
        tier = query["tier"]
        preds.append(lambda r: r["tier"] == tier)
    if query.get("nameContains"):
        needle = query["nameContains"].lower()
        preds.append(lambda r: needle in r["name"].lower())
    return preds


def vendor_filters(query: Any) -> list[Predicate]:
    preds: list[Predicate] = []
    if query.get("country"):
        country = query["country"]
        preds.append(lambda r: r["country"] == country)
    if query.get("minRating"):
        min_rating = _int_param(query, "minRating", 0)
        preds.append(lambda r: r["rating"] >= min_rating)
    return preds


def product_filters(query: Any) -> list[Predicate]:
    preds: list[Predicate] = []
    if query.get("category"):
        category = query["category"]
        preds.append(lambda r: r["category"] == category)
    if query.get("maxPrice"):
        max_price = _float_param(query, "maxPrice")
        preds.append(lambda r: r["unitPrice"] <= max_price)
    return preds


def invoice_filters(query: Any) -> list[Predicate]:
    preds: list[Predicate] = []
    if query.get("status"):
        status = query["status"]
        preds.append(lambda r: r["status"] == status)
    return preds


def _candidates(dataset: refdata.Dataset, collection: str, query: Any) -> list[dict]:
    """Records to filter, narrowed through an index when the query names an indexed key."""
    if collection == "products" and query.get("vendorId"):
        ids = dataset.products_by_vendor.get(query["vendorId"], [])
        return [dataset.products[i] for i in ids]
    if collection == "invoices" and query.get("customerId"):
        ids = dataset.invoices_by_customer.get(query["customerId"], [])
        return [dataset.invoices[i] for i in ids]
    return list(getattr(dataset, collection).values())


FILTERS: dict[str, Callable[[Any], list[Predicate]]] = {
    "customers": customer_filters,
    "vendors": vendor_filters,
    "products": product_filters,
    "invoices": invoice_filters,
}


def list_records(dataset: refdata.Dataset, collection: str, query: Any) -> dict[str, object]:
    """One page of a collection: by `ids` (batch lookup, in order) or by filters."""
    records: dict[str, dict] = getattr(dataset, collection)
    if query.get("ids"):
        items = [records[i] for i in query["ids"].split(",") if i in records]
        return {"items": items, "total": len(items), "offset": 0, "limit": len(items)}
    offset = _int_param(query, "offset", 0)
    limit = min(_int_param(query, "limit", DEFAULT_LIMIT), MAX_LIMIT)
    preds = FILTERS[collection](query)
    matched = [r for r in _candidates(dataset, collection, query) if all(p(r) for p in preds)]
    return {
        "items": matched[offset : offset + limit],
        "total": len(matched),
        "offset": offset,
        "limit": limit,
    }


def _require_str(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadQuery(f"field '{key}' must be a non-empty string")
    return value


def new_customer(dataset: refdata.Dataset, body: Any) -> dict:
    """Validate a POST /customers body and store the customer under the next id."""
    if not isinstance(body, dict):
        raise BadQuery("body must be a JSON object")
    tier = body.get("tier") or "standard"
    if tier not in refdata.TIERS:
        raise BadQuery(f"field 'tier' must be one of standard, gold, platinum, got {tier!r}")
    customer = {
        "id": refdata.customer_id(len(dataset.customers) + 1),
        "name": _require_str(body, "name"),
        "email": _require_str(body, "email"),
        "country": _require_str(body, "country"),
        "tier": tier,
        "creditLimit": 100000.0,
    }
    dataset.add_customer(customer)
    return customer


class NotFound(LookupError):
    """A referenced record does not exist."""


def new_invoice(dataset: refdata.Dataset, body: Any) -> dict:
    """Validate a POST /invoices body, price its lines and store it as a draft."""
    if not isinstance(body, dict):
        raise BadQuery("body must be a JSON object")
    cid = _require_str(body, "customerId")
    if cid not in dataset.customers:
        raise NotFound(f"customer '{cid}' not found")
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
        if pid not in dataset.products:
            raise NotFound(f"product '{pid}' not found")
        lines.append(refdata.invoice_line(dataset.products[pid], quantity))
    n = len(dataset.invoices) + 1
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
    dataset.add_invoice(invoice)
    return invoice


def _collection_routes(app: web.Application, collection: str) -> None:
    singular = collection[:-1]

    async def get_one(request: web.Request) -> web.Response:
        record = getattr(request.app[DATASET_KEY], collection).get(request.match_info["id"])
        if record is None:
            return error_response(f"{singular} '{request.match_info['id']}' not found", 404)
        return json_response(record)

    async def get_many(request: web.Request) -> web.Response:
        try:
            return json_response(list_records(request.app[DATASET_KEY], collection, request.query))
        except BadQuery as exc:
            return error_response(str(exc), 400)

    app.router.add_get(f"/{collection}/{{id}}", get_one)
    app.router.add_get(f"/{collection}", get_many)


async def _post(request: web.Request, create: Callable[[refdata.Dataset, Any], dict]) -> Any:
    body = await read_json(request)
    try:
        return json_response(create(request.app[DATASET_KEY], body), 201)
    except BadQuery as exc:
        return error_response(str(exc), 400)
    except NotFound as exc:
        return error_response(str(exc), 404)


async def post_invoice_to_ledger(request: web.Request) -> web.Response:
    """`POST /invoices/{id}/post`: a draft invoice becomes posted, exactly once (409 after)."""
    invoice_id = request.match_info["id"]
    invoice = request.app[DATASET_KEY].invoices.get(invoice_id)
    if invoice is None:
        return error_response(f"invoice '{invoice_id}' not found", 404)
    if invoice["status"] != "draft":
        return error_response(f"invoice '{invoice_id}' is {invoice['status']}, not draft", 409)
    invoice["status"] = "posted"
    return json_response(invoice)


async def post_customer(request: web.Request) -> web.Response:
    return await _post(request, new_customer)


async def post_invoice(request: web.Request) -> web.Response:
    return await _post(request, new_invoice)


def build_app(tuning: Tuning, dataset: refdata.Dataset | None = None) -> web.Application:
    """The master-data aiohttp application."""
    app = create_app("master-data", tuning)
    app[DATASET_KEY] = dataset or refdata.generate()
    for collection in ("customers", "vendors", "products", "invoices"):
        _collection_routes(app, collection)
    app.router.add_post("/customers", post_customer)
    app.router.add_post("/invoices", post_invoice)
    app.router.add_post("/invoices/{id}/post", post_invoice_to_ledger)
    return app
