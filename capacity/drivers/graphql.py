"""GraphQL driver: FastHttpUser sending pre-built documents, one stat per operation.

The request body is a JSON template serialised once; per request only the data-pool values
are filled in (see `json_template`), and requests go through `lean_http`, so the per-request
cost stays close to a raw FastHttpUser POST. A 200 response whose body holds `errors` is a
failure carrying the first message and `extensions.code`; one with both `data` and `errors`
is also marked partial for the summary.

Traffic as Apollo users send it (`[targets.graphql]`): client-awareness and scenario headers
on every request; automatic persisted queries (`persisted_queries = true`: the hash first,
the full query again on `PersistedQueryNotFound`, both requests recorded under the
operation); queries as `GET` (`method = "GET"`, with the `apollo-require-preflight` header
Apollo's CSRF prevention asks for; mutations are always POSTed).
"""

from __future__ import annotations

import hashlib
import json
import random
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any
from urllib.parse import urlencode

from locust import FastHttpUser, between, task

from capacity.addresses import parse_http_url
from capacity.drivers.headers import target_headers
from capacity.drivers.json_template import compile_json
from capacity.drivers.lean_http import request_headers, send_checked
from capacity.drivers.tracing import TraceSampler, parse_prefix
from capacity.drivers.variables import PoolCursor, compile_variables
from capacity.drivers.wire_timing import for_user
from capacity.recorder import TRACE_ID_KEY
from capacity.scenario import GraphQLOperation, GraphQLSettings, Targets, UserClass

ERRORS_MARKER = b'"errors"'
PQ_NOT_FOUND = b"PersistedQueryNotFound"
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# Apollo Server's CSRF prevention refuses a GET without a header a browser form cannot send.
GET_HEADERS = {"Accept": "application/json", "apollo-require-preflight": "true"}


@dataclass(frozen=True)
class CompiledOperation:
    """How to send one operation: the POST body, and for GET/APQ what goes in the URL."""

    stat_name: str
    body: Callable[[], bytes]  # POST body: query (or only the hash, with APQ) and variables
    full_body: Callable[[], bytes] | None = None  # APQ: the query and the hash, to register
    query_string: Callable[[], str] | None = None  # GET: everything in the URL
    full_query_string: Callable[[], str] | None = None  # GET + APQ: registering


def _persisted(document: str) -> dict[str, object]:
    digest = hashlib.sha256(document.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


def compile_operation(
    op: GraphQLOperation,
    cursors: Mapping[str, PoolCursor],
    settings: GraphQLSettings | None = None,
) -> CompiledOperation:
    """The operation's request as templates: `json.dumps` of query, name and variables, with
    the persisted-query hash instead of (or beside) the query when APQ is on."""
    settings = settings or GraphQLSettings()
    name = f"graphql {op.operation_name}"
    base = {"operationName": op.operation_name, "variables": op.variables}
    if not settings.persisted_queries:
        full = {"query": op.document, **base}
        compiled = CompiledOperation(name, compile_json(full, cursors))
    else:
        ext = _persisted(op.document)
        compiled = CompiledOperation(
            name,
            compile_json({**base, "extensions": ext}, cursors),
            full_body=compile_json({"query": op.document, **base, "extensions": ext}, cursors),
        )
    if settings.method != "GET" or not op.is_query:
        return compiled
    variables = compile_variables(op.variables, cursors)
    ext_text = json.dumps(_persisted(op.document)) if settings.persisted_queries else None

    def query_string(with_query: bool) -> Callable[[], str]:
        def build() -> str:
            params = {"operationName": op.operation_name, "variables": json.dumps(variables())}
            if with_query:
                params["query"] = op.document
            if ext_text is not None:
                params["extensions"] = ext_text
            return urlencode(params)

        return build

    return CompiledOperation(
        name,
        compiled.body,
        compiled.full_body,
        query_string(not settings.persisted_queries),
        query_string(True) if settings.persisted_queries else None,
    )


def graphql_failure(content: bytes) -> tuple[str | None, bool]:
    """(failure message or None, partial) for a 200 response body."""
    if ERRORS_MARKER not in content:
        return None, False
    try:
        doc = json.loads(content)
    except ValueError:
        return "invalid JSON in GraphQL response", False
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not errors:
        return None, False
    first = errors[0] if isinstance(errors, list) and errors else {}
    message = str(first.get("message", "GraphQL error")) if isinstance(first, dict) else "error"
    ext = first.get("extensions") if isinstance(first, dict) else None
    code = ext.get("code") if isinstance(ext, dict) else None
    partial = isinstance(doc, dict) and doc.get("data") is not None
    text = f"GraphQL error [{code}]: {message}" if code else f"GraphQL error: {message}"
    return text[:200], partial


def make_graphql_user(
    spec: UserClass,
    targets: Targets,
    cursors: Mapping[str, PoolCursor],
    name: str = "GraphQLUser",
) -> type[FastHttpUser]:
    url = parse_http_url(targets.gateway_url)
    settings = targets.graphql
    operations = [compile_operation(op, cursors, settings) for op in spec.operations]
    weights = [op.weight for op in spec.operations]
    sampler = TraceSampler(spec.trace_sample_rate)
    return type(
        name,
        (GraphQLUser,),
        {
            "host": url.base,
            "path": url.path or "/graphql",
            "weight": spec.weight,
            "wait_time": between(*spec.wait_s),
            "operations": operations,
            "cum_weights": list(accumulate(weights)),
            "trace_sampler": sampler,
            "extra_headers": target_headers(targets, "gateway"),
            "url_authorization": url.basic_auth,
            "network_timeout": spec.timeout_s,
            "connection_timeout": min(spec.timeout_s, 10.0),
            "abstract": False,
        },
    )


def _registering_check(content: bytes) -> tuple[str | None, bool]:
    """A hash-only APQ answer: `PersistedQueryNotFound` is the protocol, not a failure."""
    if PQ_NOT_FOUND in content:
        return None, False
    return graphql_failure(content)


class GraphQLUser(FastHttpUser):
    abstract = True
    path = "/graphql"
    operations: list[CompiledOperation] = []
    cum_weights: list[int] = []
    trace_sampler = TraceSampler(1.0)
    extra_headers: dict[str, str] = {}
    url_authorization: str | None = None

    def on_start(self) -> None:
        authorization = self.extra_headers.get("Authorization") or self.url_authorization
        self._headers = request_headers(
            self.client, {**JSON_HEADERS, **self.extra_headers}, authorization
        )
        self._get_headers = request_headers(
            self.client, {**GET_HEADERS, **self.extra_headers}, authorization
        )
        self._url = f"{self.client.base_url}{self.path}"
        self._total_weight = self.cum_weights[-1] if self.cum_weights else 0
        self._wire = for_user(self, self._url)
        self._sampler = self.trace_sampler.with_prefix(trace_id_prefix(self.environment))

    def pick_operation(self) -> CompiledOperation:
        """A weighted pick, as random.choices makes it, without its per-call set-up."""
        if len(self.operations) == 1:
            return self.operations[0]
        point = random.random() * self._total_weight
        return self.operations[bisect_right(self.cum_weights, point, 0, len(self.operations) - 1)]

    @task
    def run_operation(self) -> None:
        op = self.pick_operation()
        get = op.query_string is not None
        # This user's own dict, updated in place: geventhttpclient copies headers per request.
        headers = self._get_headers if get else self._headers
        context = self.context()
        drawn = self._sampler.sample()
        if drawn is not None:
            headers["traceparent"] = drawn[0]
            if drawn[1] is not None:  # sampled: the recorder keeps its client-side latency
                context = {**context, TRACE_ID_KEY: drawn[1]}
        if op.full_body is None:
            self._send(op, headers, get, context, full=False, check=graphql_failure)
            return
        # Automatic persisted queries: the hash first; the full query only when the server
        # does not know it yet.
        content = self._send(op, headers, get, context, full=False, check=_registering_check)
        if content is not None and PQ_NOT_FOUND in content:
            self._send(op, headers, get, context, full=True, check=graphql_failure)

    def _send(
        self,
        op: CompiledOperation,
        headers: dict[str, str],
        get: bool,
        context: dict[str, Any],
        *,
        full: bool,
        check: Callable[[bytes], tuple[str | None, bool]],
    ) -> bytes | None:
        if get:
            build = op.full_query_string if full and op.full_query_string else op.query_string
            assert build is not None
            url, method, body = f"{self._url}?{build()}", "GET", None
        else:
            make = op.full_body if full and op.full_body else op.body
            url, method, body = self._url, "POST", make()
        return send_checked(
            self.client, method, url, body, headers, op.stat_name, context, check, self._wire
        )


def trace_id_prefix(environment: Any) -> int:
    """The run's trace marker from `--trace-id-prefix` (0 when the run has none)."""
    options = getattr(environment, "parsed_options", None)
    return parse_prefix(getattr(options, "trace_id_prefix", None))
