"""master-data's storage: the reference dataset in PostgreSQL, queried through asyncpg.

Every master-data start recreates the tables and loads `capacity.stack.data.generate()` with
COPY, so each run sees the same ids, names and totals. Records are stored whole as `jsonb`
beside the columns the filters use. Each statement ends in `injected_delay($n)`: a PL/pgSQL
function declared STABLE, so PostgreSQL evaluates it once per execution as a one-time filter
(not once per row), that sleeps the master-data knob `db_delay_*` inside the statement. The
delay is therefore part of the database span that the asyncpg instrumentation records, which
is what a slow database looks like from the service.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from capacity.stack import data as refdata

COLLECTIONS = ("customers", "vendors", "products", "invoices")
Delay = Callable[[], float]

SCHEMA = """
DROP TABLE IF EXISTS invoices, products, vendors, customers;
DROP SEQUENCE IF EXISTS customer_ids, invoice_ids;
CREATE OR REPLACE FUNCTION injected_delay(ms float8) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF ms > 0 THEN PERFORM pg_sleep(ms / 1000.0); END IF;
  RETURN true;
END $$;
CREATE TABLE customers (id text PRIMARY KEY, seq int NOT NULL, name text NOT NULL,
  country text NOT NULL, tier text NOT NULL, doc jsonb NOT NULL);
CREATE TABLE vendors (id text PRIMARY KEY, seq int NOT NULL, country text NOT NULL,
  rating int NOT NULL, doc jsonb NOT NULL);
CREATE TABLE products (id text PRIMARY KEY, seq int NOT NULL, category text NOT NULL,
  unit_price float8 NOT NULL, vendor_id text NOT NULL, doc jsonb NOT NULL);
CREATE TABLE invoices (id text PRIMARY KEY, seq int NOT NULL, customer_id text NOT NULL,
  status text NOT NULL, doc jsonb NOT NULL);
"""
INDEXES = """
CREATE INDEX ON customers (seq); CREATE INDEX ON vendors (seq); CREATE INDEX ON products (seq);
CREATE INDEX ON invoices (seq); CREATE INDEX ON products (vendor_id, seq);
CREATE INDEX ON invoices (customer_id, seq);
ANALYZE;
"""

# Filters per collection: (query parameter, SQL condition on $n, converter). A missing
# parameter is passed as NULL and the condition reads `($n IS NULL OR ...)`: one statement
# text per collection whatever the filters, as an application with a query builder would not
# have, but as the trace analysis groups it best.
FILTERS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "customers": (
        ("country", "country = {p}", "text"),
        ("tier", "tier = {p}", "text"),
        ("nameContains", "strpos(lower(name), lower({p})) > 0", "text"),
    ),
    "vendors": (
        ("country", "country = {p}", "text"),
        ("minRating", "rating >= {p}", "int"),
    ),
    "products": (
        ("category", "category = {p}", "text"),
        ("maxPrice", "unit_price <= {p}", "float8"),
        ("vendorId", "vendor_id = {p}", "text"),
    ),
    "invoices": (
        ("status", "status = {p}", "text"),
        ("customerId", "customer_id = {p}", "text"),
    ),
}


def _where(collection: str) -> tuple[str, int]:
    """The WHERE clause of a collection's listing and the number of filter parameters."""
    parts = []
    for i, (_, condition, cast) in enumerate(FILTERS[collection], start=1):
        p = f"${i}::{cast}"
        parts.append(f"({p} IS NULL OR {condition.format(p=p)})")
    return " AND ".join(parts), len(parts)


def _statements() -> dict[str, str]:
    sql: dict[str, str] = {}
    for c in COLLECTIONS:
        sql[f"get {c}"] = f"SELECT doc FROM {c} WHERE id = $1 AND injected_delay($2)"
        sql[f"many {c}"] = f"SELECT doc FROM {c} WHERE id = ANY($1::text[]) AND injected_delay($2)"
        where, n = _where(c)
        sql[f"page {c}"] = (
            f"SELECT doc, count(*) OVER () AS total FROM {c} WHERE {where} "
            f"AND injected_delay(${n + 3}) ORDER BY seq OFFSET ${n + 1} LIMIT ${n + 2}"
        )
        sql[f"count {c}"] = f"SELECT count(*) FROM {c} WHERE {where} AND injected_delay(${n + 1})"
    sql["next customer"] = "SELECT nextval('customer_ids') WHERE injected_delay($1)"
    sql["next invoice"] = "SELECT nextval('invoice_ids') WHERE injected_delay($1)"
    sql["insert customer"] = (
        "INSERT INTO customers (id, seq, name, country, tier, doc) "
        "SELECT $1, $2, $3, $4, $5, $6::jsonb WHERE injected_delay($7)"
    )
    sql["insert invoice"] = (
        "INSERT INTO invoices (id, seq, customer_id, status, doc) "
        "SELECT $1, $2, $3, $4, $5::jsonb WHERE injected_delay($6)"
    )
    # A draft becomes posted in one statement, so two concurrent posts cannot both succeed.
    sql["post invoice"] = (
        "UPDATE invoices SET status = 'posted', doc = jsonb_set(doc, '{status}', '\"posted\"') "
        "WHERE id = $1 AND status = 'draft' AND injected_delay($2) RETURNING doc"
    )
    return sql


SQL = _statements()


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + json.dumps(value, separators=(",", ":")).encode()  # jsonb binary: version 1


def _decode_jsonb(data: bytes) -> Any:
    return json.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    """jsonb as Python objects, in binary format (which COPY needs too)."""
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No `RESET ALL; UNLISTEN *; ...` round trip per released connection: master-data
    leaves no session state behind, and that statement would be a database span per query."""


async def load_dataset(conn: asyncpg.Connection, dataset: refdata.Dataset) -> None:
    """(Re)create the tables and load `dataset` into them."""
    await conn.execute(SCHEMA)

    def rows(records: Mapping[str, dict], *columns: str) -> list[tuple[Any, ...]]:
        return [
            (r["id"], seq, *(r[c] for c in columns), r)
            for seq, r in enumerate(records.values(), start=1)
        ]

    await conn.copy_records_to_table(
        "customers",
        records=rows(dataset.customers, "name", "country", "tier"),
        columns=["id", "seq", "name", "country", "tier", "doc"],
    )
    await conn.copy_records_to_table(
        "vendors",
        records=rows(dataset.vendors, "country", "rating"),
        columns=["id", "seq", "country", "rating", "doc"],
    )
    await conn.copy_records_to_table(
        "products",
        records=rows(dataset.products, "category", "unitPrice", "vendorId"),
        columns=["id", "seq", "category", "unit_price", "vendor_id", "doc"],
    )
    await conn.copy_records_to_table(
        "invoices",
        records=rows(dataset.invoices, "customerId", "status"),
        columns=["id", "seq", "customer_id", "status", "doc"],
    )
    await conn.execute(
        f"CREATE SEQUENCE customer_ids START {len(dataset.customers) + 1};"
        f"CREATE SEQUENCE invoice_ids START {len(dataset.invoices) + 1};" + INDEXES
    )


@dataclass
class Page:
    items: list[dict]
    total: int


class Store:
    """The queries master-data makes; `delay()` draws the injected database delay in ms."""

    def __init__(self, pool: asyncpg.Pool, delay: Delay) -> None:
        self.pool = pool
        self.delay = delay

    @classmethod
    async def open(
        cls, dsn: str, delay: Delay, dataset: refdata.Dataset | None = None, max_size: int = 20
    ) -> Store:
        """Connect a pool, load the dataset, return the store."""
        pool = await asyncpg.create_pool(
            dsn,
            min_size=2,
            max_size=max_size,
            init=_init_connection,
            reset=_keep_session,
            command_timeout=60,
        )
        async with pool.acquire() as conn:
            await load_dataset(conn, dataset or refdata.generate())
        await pool.expire_connections()  # the tables were recreated: drop cached plans
        return cls(pool, delay)

    async def close(self) -> None:
        await self.pool.close()

    async def get(self, collection: str, record_id: str) -> dict | None:
        doc = await self.pool.fetchval(SQL[f"get {collection}"], record_id, self.delay())
        return dict(doc) if doc is not None else None

    async def get_many(self, collection: str, ids: Sequence[str]) -> list[dict]:
        """Records for `ids` in the order asked, unknown ids left out."""
        rows = await self.pool.fetch(SQL[f"many {collection}"], list(ids), self.delay())
        found = {doc["id"]: doc for (doc,) in rows}
        return [found[i] for i in ids if i in found]

    async def page(self, collection: str, filters: Sequence[Any], offset: int, limit: int) -> Page:
        """One page of a collection, in id order, with the total number of matches."""
        args = list(filters)
        rows = await self.pool.fetch(SQL[f"page {collection}"], *args, offset, limit, self.delay())
        if rows:
            return Page([row["doc"] for row in rows], int(rows[0]["total"]))
        if offset == 0:
            return Page([], 0)
        total = await self.pool.fetchval(SQL[f"count {collection}"], *args, self.delay())
        return Page([], int(total))

    async def insert_customer(self, fields: Mapping[str, Any]) -> dict:
        n = int(await self.pool.fetchval(SQL["next customer"], self.delay()))
        customer = {"id": refdata.customer_id(n), **fields}
        await self.pool.execute(
            SQL["insert customer"],
            customer["id"],
            n,
            customer["name"],
            customer["country"],
            customer["tier"],
            customer,
            self.delay(),
        )
        return customer

    async def post_invoice(self, invoice_id: str) -> tuple[dict | None, bool]:
        """(the invoice, whether this call posted it); (None, False) for an unknown id."""
        doc = await self.pool.fetchval(SQL["post invoice"], invoice_id, self.delay())
        if doc is not None:
            return dict(doc), True
        return await self.get("invoices", invoice_id), False

    async def next_invoice_number(self) -> int:
        return int(await self.pool.fetchval(SQL["next invoice"], self.delay()))

    async def insert_invoice(self, n: int, invoice: Mapping[str, Any]) -> None:
        await self.pool.execute(
            SQL["insert invoice"],
            invoice["id"],
            n,
            invoice["customerId"],
            invoice["status"],
            dict(invoice),
            self.delay(),
        )
