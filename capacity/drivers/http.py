"""HTTP driver: any REST endpoint as a scenario declares it; the rules driver is one configuration.

Each `[[users.http.requests]]` entry is compiled once: its URL, headers and JSON body become
templates (`capacity.drivers.templates`, `capacity.drivers.json_template`), its assertions a
check on the answer by JSON pointer. Per request the user draws the rows the request reads,
fills the templates and sends through `lean_http.send_expecting` (one `request` event, as
Locust fires it, at the cost of a raw FastHttpUser POST), so `[users.rules]` (a POST of fixed
bodies with outcome checks) costs what the dedicated rules driver cost. Operations are named
`http <name>` (`rules <RuleSet>` for the rules form); a failed assertion or a wrong status is
a failure with its reason. Answers are parsed only when something checks them, and dropped.

`[[users.http.chains]]` run their steps in order inside one user (`capacity.drivers.chains`);
values taken from one answer by JSON pointer fill `${chain.name}` in the next steps.
"""

from __future__ import annotations

import json
import random
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any
from urllib.parse import quote

from locust import FastHttpUser, between, task

from capacity.addresses import parse_http_url
from capacity.drivers.assertions import assertion_failure
from capacity.drivers.graphql import trace_id_prefix
from capacity.drivers.headers import target_headers
from capacity.drivers.json_template import compile_json_rows
from capacity.drivers.lean_http import AnswerCheck, request_headers, send_expecting
from capacity.drivers.templates import RowDraw, Rows, compile_text, compile_value
from capacity.drivers.tracing import TraceSampler
from capacity.drivers.variables import PoolCursor
from capacity.drivers.wire_timing import for_user
from capacity.jsonpointer import MISSING, resolve
from capacity.recorder import TRACE_ID_KEY
from capacity.refs import CHAIN_POOL, has_refs
from capacity.scenario import Targets, UserClass
from capacity.scenario.model import Assertion, HttpRequest

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
NO_ROWS: Rows = {}


def target_base_url(request: HttpRequest, targets: Targets) -> tuple[str, str | None]:
    """Where a request goes (its base URL, or the named target's; the gateway's origin, since
    its URL is the GraphQL endpoint), and the `Basic` authorization of credentials in it."""
    if request.base_url is not None:
        url = parse_http_url(request.base_url)
    else:
        url = targets.url_of(request.target or "")
    if request.target == "gateway":
        return url.base, url.basic_auth
    return url.base + url.path.rstrip("/"), url.basic_auth


def compile_answer_check(
    assertions: Sequence[Assertion],
    extract: Mapping[str, tuple[str, ...]],
    not_json: str,
) -> AnswerCheck | None:
    """The body check of one request: assertions, then chain values extracted into
    `rows["chain"]`; None when nothing reads the answer (it is then never parsed)."""
    if not assertions and not extract:
        return None
    # (assertion, its tokens, the expected value when fixed, else a function of the rows)
    expected = [
        (a, a.tokens, a.value, None)
        if not has_refs(a.value)
        else (a, a.tokens, None, compile_value(a.value))
        for a in assertions
    ]
    items = list(extract.items())

    def check(content: bytes, rows: Rows) -> str | None:
        try:
            document = json.loads(content)
        except ValueError:
            return not_json
        for assertion, tokens, fixed, want in expected:
            if want is None:
                # The common case first: an exact match of a fixed value, no further checks.
                if assertion.kind == "equals":
                    got = resolve(document, tokens)
                    if got == fixed and type(got) is type(fixed):
                        continue
                failure = assertion_failure(assertion, document, fixed)
            else:
                failure = assertion_failure(assertion, document, want(rows))
            if failure is not None:
                return failure
        if items:
            values = rows[CHAIN_POOL]
            for key, tokens in items:
                value = resolve(document, tokens)
                if value is MISSING:
                    pointer = "/" + "/".join(tokens)
                    return f"extract {key}: {pointer} not in the answer"
                values[key] = value
        return None

    return check


@dataclass(frozen=True)
class Variant:
    body: Callable[[Rows], bytes | None]
    check: AnswerCheck | None


@dataclass(frozen=True)
class CompiledRequest:
    """One request ready to send: templates filled from one draw of rows per request."""

    name: str
    method: str
    url: Callable[[Rows], str]
    headers: Mapping[str, str]  # fixed headers (content type, scenario headers without refs)
    header_templates: Mapping[str, Callable[[Rows], str]]
    variants: tuple[Variant, ...]
    status: frozenset[int] | None
    draw: RowDraw
    base_url: str
    authorization: str | None  # the request's, the target's, or credentials in the URL
    weight: int

    def rows(self, chain: dict[str, Any] | None = None) -> Rows:
        if self.draw.empty and chain is None:
            return NO_ROWS
        return self.draw.draw(chain)

    def variant(self) -> Variant:
        variants = self.variants
        return variants[0] if len(variants) == 1 else random.choice(variants)


def compile_request(
    request: HttpRequest, targets: Targets, cursors: Mapping[str, PoolCursor]
) -> CompiledRequest:
    base, basic_auth = target_base_url(request, targets)
    url = compile_text(base + request.path, encode=lambda v: quote(v, safe="-._~"))
    fixed = (
        dict(JSON_HEADERS)
        if any(v.body is not None for v in request.variants)
        else {"Accept": "application/json"}
    )
    # A target's own headers ([targets.headers], headers_env, auth_env for the gateway), then
    # the request's: what the target's dedicated driver sends, plus what the scenario adds.
    target_auth = None
    if request.target is not None:
        fixed.update(target_headers(targets, request.target))
        target_auth = fixed.pop("Authorization", None)
    templates: dict[str, Callable[[Rows], str]] = {}
    for key, value in request.headers.items():
        if "${" in value:
            templates[key] = compile_text(value)
        else:
            fixed[key] = value
    authorization = fixed.pop("Authorization", None) or target_auth or basic_auth
    where = request.target or parse_http_url(base).netloc
    not_json = f"invalid JSON from {where.replace('_', ' ')}"
    variants = tuple(
        Variant(
            _body(v.body, request.templated),
            compile_answer_check(v.assertions, request.extract, not_json),
        )
        for v in request.variants
    )
    templated = [request.path, dict(request.headers)]
    if request.templated:
        templated += [v.body for v in request.variants]
    templated += [a.value for v in request.variants for a in v.assertions if a.kind == "equals"]
    return CompiledRequest(
        name=request.name,
        method=request.method,
        url=url,
        headers=fixed,
        header_templates=templates,
        variants=variants,
        status=frozenset(request.status) if request.status else None,
        draw=RowDraw(templated if request.templated else templated[:2], cursors),
        base_url=base,
        authorization=authorization,
        weight=request.weight,
    )


def _body(template: Any, templated: bool) -> Callable[[Rows], bytes | None]:
    if template is None:
        return lambda _rows: None
    if not templated:
        fixed = json.dumps(template).encode()
        return lambda _rows: fixed
    return compile_json_rows(template)


def make_http_user(
    spec: UserClass,
    targets: Targets,
    cursors: Mapping[str, PoolCursor],
    name: str = "HttpUser",
    *,
    requests: Sequence[HttpRequest] | None = None,
    chains: Sequence[Any] = (),
    trace_sample_rate: float | None = None,
) -> type:
    """The Locust user class of `[users.http]` (or of `requests`, the rules form's), running
    `chains` too (compiled by `capacity.drivers.chains.compile_chains`)."""
    compiled = [compile_request(r, targets, cursors) for r in (requests or spec.requests)]
    chains = list(chains)
    weights = [r.weight for r in compiled] + [c.weight for c in chains]
    first = compiled[0].base_url if compiled else chains[0].base_url
    rate = spec.trace_sample_rate if trace_sample_rate is None else trace_sample_rate
    return type(
        name,
        (HttpUser,),
        {
            "host": first,
            "weight": spec.weight,
            "wait_time": between(*spec.wait_s),
            "requests": compiled,
            "chains": chains,
            "cum_weights": list(accumulate(weights)),
            "trace_sampler": TraceSampler(rate),
            "network_timeout": spec.timeout_s,
            "connection_timeout": min(spec.timeout_s, 10.0),
            "abstract": False,
        },
    )


class HttpUser(FastHttpUser):
    abstract = True
    requests: list[CompiledRequest] = []
    chains: list[Any] = []
    cum_weights: list[int] = []
    trace_sampler = TraceSampler(0.0)

    def on_start(self) -> None:
        # One header dict per request, this user's own: updated in place per request
        # (geventhttpclient copies headers when it sends).
        self._headers = [self.headers_for(r) for r in self.requests]
        self._count = len(self.requests)
        self._total = self.cum_weights[-1] if self.cum_weights else 0
        self._picks = len(self.cum_weights)
        # The wire probe times requests at this user's sockets (capacity.drivers.wire_timing).
        urls = {r.base_url for r in self.requests} | {
            step.base_url for c in self.chains for step in c.steps if hasattr(step, "base_url")
        }
        self._wire = for_user(self, *sorted(urls))
        self._traced = self.trace_sampler.rate > 0
        if self._traced:
            self._sampler = self.trace_sampler.with_prefix(trace_id_prefix(self.environment))

    def headers_for(self, request: CompiledRequest) -> dict[str, str]:
        return request_headers(self.client, dict(request.headers), request.authorization)

    @task
    def run_next(self) -> None:
        if self._picks == 1:
            index = 0
        else:
            point = random.random() * self._total
            index = bisect_right(self.cum_weights, point, 0, self._picks - 1)
        if index < self._count:
            self.send(self.requests[index], self._headers[index])
        else:
            self.chains[index - self._count].run(self)

    def send(
        self,
        request: CompiledRequest,
        headers: dict[str, str],
        chain: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> tuple[bytes | None, Exception | None]:
        """Send one request (its rows drawn here): (the body when it passed, the failure)."""
        rows = request.rows(chain)
        variant = request.variant()
        for key, fill in request.header_templates.items():
            headers[key] = fill(rows)
        ctx = self.context() if context is None else context
        if self._traced:
            drawn = self._sampler.sample()
            if drawn is not None:
                headers["traceparent"] = drawn[0]
                if drawn[1] is not None:  # sampled: the recorder keeps its client-side latency
                    ctx = {**ctx, TRACE_ID_KEY: drawn[1]}
        return send_expecting(
            self.client,
            request.method,
            request.url(rows),
            variant.body(rows),
            headers,
            request.name,
            ctx,
            variant.check,
            rows,
            request.status,
            self._wire,
        )
