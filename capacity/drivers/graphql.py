"""GraphQL driver: FastHttpUser posting pre-built documents, one stat per operation.

The request body is a JSON template serialised once; per request only the data-pool values
are filled in (see `json_template`), and requests go through `lean_http`, so the per-request
cost stays close to a raw FastHttpUser POST. A 200 response whose body holds `errors` is a
failure carrying the first message and `extensions.code`; one with both `data` and `errors`
is also marked partial for the summary.
"""

from __future__ import annotations

import json
import random
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from urllib.parse import urlsplit

from locust import FastHttpUser, between, task

from capacity.drivers.json_template import compile_json
from capacity.drivers.lean_http import request_headers, send_checked
from capacity.drivers.tracing import TraceSampler
from capacity.drivers.variables import PoolCursor
from capacity.drivers.wire_timing import for_user
from capacity.scenario import GraphQLOperation, UserClass

ERRORS_MARKER = b'"errors"'
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True)
class CompiledOperation:
    stat_name: str
    body: Callable[[], bytes]


def compile_operation(op: GraphQLOperation, cursors: Mapping[str, PoolCursor]) -> CompiledOperation:
    """The operation's request body as a template: `json.dumps` of query, name and variables."""
    template = {"query": op.document, "operationName": op.operation_name, "variables": op.variables}
    return CompiledOperation(f"graphql {op.operation_name}", compile_json(template, cursors))


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
    gateway_url: str,
    cursors: Mapping[str, PoolCursor],
    auth_header: str | None,
    name: str = "GraphQLUser",
) -> type[FastHttpUser]:
    parts = urlsplit(gateway_url)
    operations = [compile_operation(op, cursors) for op in spec.operations]
    weights = [op.weight for op in spec.operations]
    sampler = TraceSampler(spec.trace_sample_rate)
    return type(
        name,
        (GraphQLUser,),
        {
            "host": f"{parts.scheme}://{parts.netloc}",
            "path": parts.path or "/graphql",
            "weight": spec.weight,
            "wait_time": between(*spec.wait_s),
            "operations": operations,
            "cum_weights": list(accumulate(weights)),
            "trace_sampler": sampler,
            "auth_header_value": auth_header,
            "network_timeout": spec.timeout_s,
            "connection_timeout": min(spec.timeout_s, 10.0),
            "abstract": False,
        },
    )


class GraphQLUser(FastHttpUser):
    abstract = True
    path = "/graphql"
    operations: list[CompiledOperation] = []
    cum_weights: list[int] = []
    trace_sampler = TraceSampler(1.0)
    auth_header_value: str | None = None

    def on_start(self) -> None:
        self._headers = request_headers(self.client, JSON_HEADERS, self.auth_header_value)
        self._url = f"{self.client.base_url}{self.path}"
        self._total_weight = self.cum_weights[-1] if self.cum_weights else 0
        self._wire = for_user(self, self._url)

    def pick_operation(self) -> CompiledOperation:
        """A weighted pick, as random.choices makes it, without its per-call set-up."""
        if len(self.operations) == 1:
            return self.operations[0]
        point = random.random() * self._total_weight
        return self.operations[bisect_right(self.cum_weights, point, 0, len(self.operations) - 1)]

    @task
    def run_operation(self) -> None:
        op = self.pick_operation()
        # This user's own dict, updated in place: geventhttpclient copies headers per request.
        headers = self._headers
        traceparent = self.trace_sampler.traceparent()
        if traceparent is not None:
            headers["traceparent"] = traceparent
        send_checked(
            self.client,
            "POST",
            self._url,
            op.body(),
            headers,
            op.stat_name,
            self.context(),
            graphql_failure,
            self._wire,
        )
