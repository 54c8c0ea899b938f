"""The gateway's outgoing side: one shared HTTP session to the subgraph stand-ins, and loaders.

`BatchLoader` collects every key asked for in the same event-loop turn and fetches them in
one `?ids=` request, so a page of 20 invoices costs one customers call, not 20 (the N+1
problem a federated gateway solves with entity batching).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp


class UpstreamError(Exception):
    """A subgraph stand-in failed or answered with an unexpected HTTP status."""

    def __init__(self, service: str, status: int | None, message: str) -> None:
        super().__init__(message)
        self.service = service
        self.status = status


class Upstream:
    """Thin JSON client over one shared `aiohttp.ClientSession` with per-service base URLs."""

    def __init__(self, session: aiohttp.ClientSession, urls: Mapping[str, str]) -> None:
        self.session = session
        self.urls = {name: url.rstrip("/") for name, url in urls.items()}

    async def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
    ) -> tuple[int, Any]:
        """(status, decoded JSON body); connection problems become UpstreamError."""
        url = self.urls[service] + path
        try:
            async with self.session.request(method, url, params=params, json=body) as resp:
                payload = await resp.json(content_type=None)
                return resp.status, payload
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise UpstreamError(service, None, f"{service} unreachable: {exc!r}") from exc

    async def get(
        self, service: str, path: str, params: Mapping[str, str] | None = None
    ) -> Any | None:
        """GET JSON; 404 is None, any other non-200 is UpstreamError."""
        status, payload = await self.request(service, "GET", path, params=params)
        if status == 404:
            return None
        if status != 200:
            raise UpstreamError(service, status, f"{service} GET {path} answered HTTP {status}")
        return payload


# graphql-core gathers each nesting level (list, object fields) in its own tasks, so sibling
# references can be requested a few loop turns apart; waiting this many turns keeps them in
# one batch (measured: a 4-level query went from 6 master-data calls to 4).
DISPATCH_DELAY_TURNS = 3

FetchMany = Callable[[list[str]], Awaitable[Mapping[str, Any]]]


class BatchLoader:
    """Per-request memoising loader that batches keys requested in the same loop turn."""

    def __init__(self, fetch_many: FetchMany) -> None:
        self._fetch_many = fetch_many
        self._cache: dict[str, asyncio.Future[Any]] = {}
        self._pending: list[str] = []

    def prime(self, key: str, value: Any) -> None:
        """Remember a record already fetched (e.g. from a list page) to avoid refetching it."""
        if key not in self._cache:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(value)
            self._cache[key] = fut

    def load(self, key: str) -> asyncio.Future[Any]:
        """A future of the record for `key`, or of None when it does not exist."""
        fut = self._cache.get(key)
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            self._cache[key] = fut
            self._pending.append(key)
            if len(self._pending) == 1:
                loop.call_soon(self._dispatch, DISPATCH_DELAY_TURNS)
        return fut

    def _dispatch(self, turns_left: int) -> None:
        if turns_left > 0:  # let keys from deeper, later-scheduled resolvers join the batch
            asyncio.get_running_loop().call_soon(self._dispatch, turns_left - 1)
            return
        keys, self._pending = self._pending, []
        task = asyncio.ensure_future(self._run(keys))
        task.add_done_callback(_consume)

    async def _run(self, keys: list[str]) -> None:
        try:
            found = await self._fetch_many(keys)
        except Exception as exc:  # delivered to every waiter, never lost
            for key in keys:
                fut = self._cache[key]
                if not fut.done():
                    fut.set_exception(exc)
            return
        for key in keys:
            fut = self._cache[key]
            if not fut.done():
                fut.set_result(found.get(key))


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def record_fetcher(upstream: Upstream, collection: str) -> FetchMany:
    """A fetch_many for a master-data collection: REST by id for one key, `?ids=` for many."""

    async def fetch_many(keys: list[str]) -> Mapping[str, Any]:
        if len(keys) == 1:
            record = await upstream.get("master-data", f"/{collection}/{keys[0]}")
            return {keys[0]: record} if record is not None else {}
        page = await upstream.get("master-data", f"/{collection}", {"ids": ",".join(keys)})
        return {item["id"]: item for item in (page or {}).get("items", [])}

    return fetch_many


class Loaders:
    """The loaders of one GraphQL request (memoisation must not outlive the request)."""

    def __init__(self, upstream: Upstream) -> None:
        self.customers = BatchLoader(record_fetcher(upstream, "customers"))
        self.vendors = BatchLoader(record_fetcher(upstream, "vendors"))
        self.products = BatchLoader(record_fetcher(upstream, "products"))
        self.invoices = BatchLoader(record_fetcher(upstream, "invoices"))
        self.vat: dict[tuple[str, str], asyncio.Future[Any]] = {}

    def by_collection(self, collection: str) -> BatchLoader:
        loader: BatchLoader = getattr(self, collection)
        return loader
