"""gateway stand-in: GraphQL over HTTP (graphql-core on aiohttp), Apollo-style responses.

GraphQL errors answer HTTP 200 with `errors` (partial data kept); a request that cannot be
parsed or validated answers HTTP 400, as Apollo Server does. Parsed and validated documents
are cached by query text: load tests repeat a handful of queries, and parse + validate
costs more than executing a simple query.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    validate,
)

from capacity.stack import telemetry
from capacity.stack.gateway_schema import Context, build_gateway_schema
from capacity.stack.httpkit import RUNTIME_KEY, create_app, dumps, json_response, loads
from capacity.stack.tuning import Tuning
from capacity.stack.upstream import Upstream, UpstreamError

HEALTH_PATH = "/.well-known/apollo/server-health"
GRAPHQL_PATH = "/graphql"
DOC_CACHE_SIZE = 512


@dataclass
class _GatewayState:
    schema: GraphQLSchema
    urls: Mapping[str, str]
    docs: dict[str, DocumentNode]
    upstream: Upstream | None = None


STATE_KEY = web.AppKey("gateway", _GatewayState)


def _request_error(message: str, code: str, status: int = 400) -> web.Response:
    return json_response({"errors": [{"message": message, "extensions": {"code": code}}]}, status)


class BadRequest(Exception):
    """A GraphQL request that cannot be parsed or validated (HTTP 400)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def document(state: _GatewayState, query: str) -> DocumentNode:
    """Parsed and validated document for `query`, from the cache when seen before."""
    doc = state.docs.get(query)
    if doc is not None:
        return doc
    try:
        doc = parse(query)
    except GraphQLSyntaxError as exc:
        raise BadRequest(exc.message, "GRAPHQL_PARSE_FAILED") from exc
    errors = validate(state.schema, doc)
    if errors:
        raise BadRequest(errors[0].message, "GRAPHQL_VALIDATION_FAILED")
    if len(state.docs) >= DOC_CACHE_SIZE:
        state.docs.pop(next(iter(state.docs)))
    state.docs[query] = doc
    return doc


def format_error(error: GraphQLError) -> dict[str, Any]:
    """Apollo-style error: message, locations, path and an `extensions.code` always present."""
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    original = error.original_error
    if "code" not in extensions:
        if isinstance(original, UpstreamError):
            extensions.update(code="UPSTREAM_ERROR", service=original.service)
            if original.status is not None:
                extensions["status"] = original.status
        else:
            extensions["code"] = "INTERNAL_SERVER_ERROR"
    formatted["extensions"] = extensions
    return formatted


async def run_graphql(request: web.Request, payload: Any, *, allow_mutation: bool) -> web.Response:
    """Execute one GraphQL request payload `{query, variables, operationName}`."""
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return _request_error("request must be a JSON object with a string 'query'", "BAD_REQUEST")
    variables = payload.get("variables")
    operation_name = payload.get("operationName")
    if variables is not None and not isinstance(variables, dict):
        return _request_error("'variables' must be a JSON object", "BAD_REQUEST")
    if operation_name is not None and not isinstance(operation_name, str):
        return _request_error("'operationName' must be a string", "BAD_REQUEST")
    state = request.app[STATE_KEY]
    try:
        doc = document(state, payload["query"])
    except BadRequest as exc:
        return _request_error(str(exc), exc.code)
    operation = get_operation_ast(doc, operation_name)
    if operation is not None:  # as Apollo's instrumentation names it, for the trace analysis
        telemetry.set_attribute("graphql.operation.type", operation.operation.value)
        if operation.name is not None:
            telemetry.set_attribute("graphql.operation.name", operation.name.value)
    if not allow_mutation and operation is not None and operation.operation != OperationType.QUERY:
        return _request_error("only queries are allowed over GET", "BAD_REQUEST", 405)
    runtime = request.app[RUNTIME_KEY]
    assert state.upstream is not None
    ctx = Context(state.upstream, runtime, runtime.chance(runtime.tuning.graphql_error_rate))
    result = execute(
        state.schema,
        doc,
        context_value=ctx,
        variable_values=variables,
        operation_name=operation_name,
    )
    if inspect.isawaitable(result):
        result = await result
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [format_error(e) for e in result.errors]
    return web.Response(body=dumps(body), content_type="application/json")


async def graphql_post(request: web.Request) -> web.Response:
    try:
        payload = loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        return _request_error(f"request body is not valid JSON: {exc}", "BAD_REQUEST")
    return await run_graphql(request, payload, allow_mutation=True)


async def graphql_get(request: web.Request) -> web.Response:
    payload: dict[str, Any] = {
        "query": request.query.get("query"),
        "operationName": request.query.get("operationName"),
    }
    if request.query.get("variables"):
        try:
            payload["variables"] = json.loads(request.query["variables"])
        except ValueError:
            return _request_error("'variables' is not valid JSON", "BAD_REQUEST")
    return await run_graphql(request, payload, allow_mutation=False)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "pass"})


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE_KEY]
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
        timeout=aiohttp.ClientTimeout(total=30),
        trace_configs=telemetry.client_trace_configs(),
    )
    state.upstream = Upstream(session, state.urls)
    yield
    await session.close()


def build_app(tuning: Tuning, urls: Mapping[str, str]) -> web.Application:
    """The gateway app; `urls` maps master-data, rules-engine and workflow to base URLs."""
    app = create_app("gateway", tuning, health_path=HEALTH_PATH, health=health)
    app[STATE_KEY] = _GatewayState(build_gateway_schema(), dict(urls), {})
    app.cleanup_ctx.append(_session_ctx)
    app.router.add_post(GRAPHQL_PATH, graphql_post)
    app.router.add_get(GRAPHQL_PATH, graphql_get)
    return app
