"""Shared aiohttp plumbing of the stand-ins: knob middleware, admin endpoints, JSON helpers.

Every stand-in is built with `create_app`, so the tuning API, the fault counters and the
exemption of health and admin endpoints from knobs behave identically in all services.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from capacity.stack.tuning import (
    Tuning,
    TuningError,
    apply_updates,
    burn_cpu,
    cpu_budget_ms,
    sample_latency_ms,
)

INJECTED_KINDS = ("http_500", "graphql_error", "wrong_outcome", "workflow_failure")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ServiceRuntime:
    """Mutable per-process state of one stand-in: current knobs, counters, randomness, gate."""

    def __init__(self, service: str, tuning: Tuning, seed: int | None = None) -> None:
        self.service = service
        self.rng = random.Random(seed)
        self.requests = 0
        self.injected = dict.fromkeys(INJECTED_KINDS, 0)
        self.tuning = tuning
        self.gate: asyncio.Semaphore | None = None
        self.set_tuning(tuning)

    def set_tuning(self, tuning: Tuning) -> None:
        """Install new knobs; a changed concurrency limit takes a fresh gate.

        Requests already holding the old gate release it normally; new arrivals queue on the
        new one, so the limit changes without dropping or double-counting anything.
        """
        if self.gate is None or tuning.concurrency != self.tuning.concurrency:
            self.gate = asyncio.Semaphore(tuning.concurrency) if tuning.concurrency > 0 else None
        self.tuning = tuning

    def chance(self, rate: float) -> bool:
        """True with probability `rate` (never draws when the rate is 0)."""
        return rate > 0 and self.rng.random() < rate

    def count(self, kind: str) -> None:
        """Count one injected fault of `kind` (one of INJECTED_KINDS)."""
        self.injected[kind] += 1

    def stats(self) -> dict[str, object]:
        """Counters for `GET /admin/stats`."""
        return {"service": self.service, "requests": self.requests, "injected": dict(self.injected)}


RUNTIME_KEY = web.AppKey("runtime", ServiceRuntime)


try:  # orjson is not a dependency: used only when it happens to be installed
    import orjson

    def dumps(obj: object) -> bytes:
        """Compact JSON bytes."""
        return orjson.dumps(obj)

    loads: Callable[[bytes | str], Any] = orjson.loads
except ImportError:

    def dumps(obj: object) -> bytes:
        """Compact JSON bytes."""
        return json.dumps(obj, separators=(",", ":")).encode()

    loads = json.loads


def json_response(obj: object, status: int = 200) -> web.Response:
    """A JSON response without aiohttp's slower default encoder path."""
    return web.Response(body=dumps(obj), status=status, content_type="application/json")


def error_response(message: str, status: int) -> web.Response:
    """The stand-ins' error shape: `{"error": message}`."""
    return json_response({"error": message}, status)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or an HTTP 400 naming the problem."""
    try:
        return loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(
            body=dumps({"error": f"request body is not valid JSON: {exc}"}),
            content_type="application/json",
        ) from exc


def _is_exempt(path: str, health_path: str) -> bool:
    return path == health_path or path.startswith("/admin/")


def knob_middleware(health_path: str) -> Middleware:
    """Apply concurrency gate, latency, CPU burn and HTTP 500 injection to each request."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _is_exempt(request.path, health_path):
            return await handler(request)
        runtime = request.app[RUNTIME_KEY]
        runtime.requests += 1
        gate = runtime.gate
        if gate is None:
            return await _serve(runtime, request, handler)
        async with gate:
            return await _serve(runtime, request, handler)

    return middleware


async def _serve(runtime: ServiceRuntime, request: web.Request, handler: Handler) -> Any:
    tuning = runtime.tuning
    delay_ms = sample_latency_ms(tuning, runtime.rng)
    if delay_ms > 0:
        await asyncio.sleep(delay_ms / 1000.0)
    burn_cpu(cpu_budget_ms(tuning))
    if runtime.chance(tuning.error_rate):
        runtime.count("http_500")
        return error_response("injected", 500)
    return await handler(request)


async def _get_tuning(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    return json_response(runtime.tuning.as_dict(runtime.service))


async def _post_tuning(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    updates = await read_json(request)
    if not isinstance(updates, dict):
        return error_response("tuning must be a JSON object of knobs", 400)
    try:
        tuning = apply_updates(runtime.tuning, updates, runtime.service)
    except TuningError as exc:
        return json_response({"error": str(exc), "knob": exc.knob}, 400)
    runtime.set_tuning(tuning)
    return json_response(tuning.as_dict(runtime.service))


async def _get_stats(request: web.Request) -> web.Response:
    return json_response(request.app[RUNTIME_KEY].stats())


def create_app(
    service: str,
    tuning: Tuning,
    *,
    health_path: str = "/health",
    health: Callable[[web.Request], Awaitable[web.Response]] | None = None,
) -> web.Application:
    """An aiohttp app with the knob middleware, health and admin endpoints already routed."""
    app = web.Application(middlewares=[knob_middleware(health_path)], client_max_size=4 * 2**20)
    app[RUNTIME_KEY] = ServiceRuntime(service, tuning)

    async def default_health(request: web.Request) -> web.Response:
        return json_response({"status": "pass", "service": service})

    app.router.add_get(health_path, health or default_health)
    app.router.add_get("/admin/tuning", _get_tuning)
    app.router.add_post("/admin/tuning", _post_tuning)
    app.router.add_get("/admin/stats", _get_stats)
    return app


def run(app: web.Application, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT, without banner or access log (both cost CPU under load)."""
    web.run_app(app, host=host, port=port, print=None, access_log=None, shutdown_timeout=2.0)
