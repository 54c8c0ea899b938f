"""One request on a Locust FastHttpSession, checked and reported once, at the least CPU.

`FastHttpSession.request(..., catch_response=True)` builds a context dict, copies the headers,
matches the URL against a regexp, wraps the response in a `ResponseContextManager` and checks
the status twice on every request: about 3.5% of a Locust core at a few thousand requests/s
(benchmarks/bench_graphql_driver.py). `send_checked` sends through the same session (same
connection pool, timeouts, retries and error responses) and fires the same `request` event
with the same fields Locust fires, so Locust's stats, the web UI and the run recorder see no
difference, but does only what a driver with pre-built headers and a body check needs.

With a `WireProbe` (`capacity.drivers.wire_timing`) the event also carries `wire_time` (ms,
first byte written to the kernel's receive time of the last byte; None when not measured)
and `connect_time` (ms spent opening a connection for this request, or None), and its
`start_time` is the moment the first byte was written. `response_time` stays what Locust
measures (client-observed: the whole call, parsing included), so Locust's own statistics
and web UI show the client-observed figure; the run recorder judges the wire figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from locust.contrib.fasthttp import FAILURE_EXCEPTIONS, FastHttpSession
from locust.exception import CatchResponseError

from capacity.drivers.wire_timing import WireProbe

# What FastHttpSession adds to every request that does not set it: the same bytes on the wire.
_ACCEPT_ENCODING = ("Accept-Encoding", "gzip, deflate, br")

BodyCheck = Callable[[bytes], tuple[str | None, bool]]
"""(failure message or None, partial) for a 200 response's body."""


def request_headers(
    session: FastHttpSession, headers: dict[str, str], authorization: str | None = None
) -> dict[str, str]:
    """`headers` plus what FastHttpSession would add per request, built once per user.

    `authorization` (from the scenario) wins over credentials in the target URL, which Locust
    would send; Accept-Encoding is Locust's default unless set.
    """
    out = dict(headers)
    if authorization:
        out["Authorization"] = authorization
    elif session.auth_header:
        out["Authorization"] = session.auth_header
    out.setdefault(*_ACCEPT_ENCODING)
    return out


def send_checked(
    session: FastHttpSession,
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    name: str,
    context: dict[str, Any],
    check: BodyCheck,
    probe: WireProbe | None = None,
) -> bytes | None:
    """Send one request and fire one `request` event; a failed body check is a failure.

    `url` is absolute and `headers` complete (see `request_headers`); non-2xx statuses and
    connection errors fail as they do in Locust. A partial answer sets `context["partial"]`.
    Returns the response body (None when there was none), for a caller that reacts to it.
    `probe` is the session's wire probe (`wire_timing.for_user`), if it has one.
    """
    ex = _exchange(session, method, url, body, headers, probe)
    response, content, exception = ex.response, ex.content, ex.exception
    if exception is None:
        exception = getattr(response, "error", None)  # non-2xx or no connection
    if exception is None and response.status_code == 200:
        failure, partial = check(content or b"")
        if failure is not None:
            exception = CatchResponseError(failure)
            if partial:
                context = {**context, "partial": True}
    _report(session, ex, method, url, name, context, exception)
    return content


AnswerCheck = Callable[[bytes, Any], str | None]
"""Failure message or None for a successful answer's body; the second argument is the
request's rows (`capacity.drivers.templates`), for expected values that hold references."""


def send_expecting(
    session: FastHttpSession,
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    name: str,
    context: dict[str, Any],
    check: AnswerCheck | None,
    rows: Any,
    expected_status: frozenset[int] | None,
    probe: WireProbe | None = None,
) -> tuple[bytes | None, Exception | None]:
    """`send_checked` for any method and expected statuses: (the body when it passed, failure).

    Without `expected_status` a status Locust counts as an error (4xx, 5xx) fails as in
    Locust; with it, exactly those statuses pass and any other is a failure naming both. The
    body is returned to the caller (a chain takes values from it) and never kept. `probe`: as
    for `send_checked`, the wire time and connect time ride on the event.
    """
    ex = _exchange(session, method, url, body, headers, probe)
    response, content, exception = ex.response, ex.content, ex.exception
    if exception is None:
        error = getattr(response, "error", None)
        status = response.status_code
        if expected_status is None or not status:  # no status: no connection, as Locust says
            exception = error
        elif status not in expected_status:
            want = ", ".join(str(s) for s in sorted(expected_status))
            exception = CatchResponseError(f"HTTP {status}, expected {want}")
        if exception is None and check is not None:
            failure = check(content or b"", rows)
            if failure is not None:
                exception = CatchResponseError(failure)
    _report(session, ex, method, url, name, context, exception)
    return ((content or b"") if exception is None else None), exception


class _Exchange(NamedTuple):
    """One request as sent and timed, before it is judged."""

    response: Any
    content: bytes | None
    exception: Exception | None  # the body could not be read
    length: int
    start_time: float
    response_time_ms: float
    wire_ms: float | None
    connect_ms: float | None


def _exchange(
    session: FastHttpSession,
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    probe: WireProbe | None,
) -> _Exchange:
    """Send, read the body and time it: at the socket with a wire probe, else around the call."""
    if probe is not None:
        probe.begin()
    start_time = time.time()
    started = time.perf_counter()
    response = session._send_request_safe_mode(method, url, payload=body, headers=headers)
    exception: Exception | None = None
    length = 0
    content = None
    try:
        content = response.content
        length = len(content) if content else 0
    except FAILURE_EXCEPTIONS as e:  # the body could not be read: as Locust reports it
        exception = e
    response_time_ms = (time.perf_counter() - started) * 1000
    wire_ms = connect_ms = None
    if probe is not None:
        wire_ms, connect_ms = probe.read(response_time_ms)
        if wire_ms is not None:
            start_time = probe.sent_ns / 1e9
    return _Exchange(
        response, content, exception, length, start_time, response_time_ms, wire_ms, connect_ms
    )


def _report(
    session: FastHttpSession,
    ex: _Exchange,
    method: str,
    url: str,
    name: str,
    context: dict[str, Any],
    exception: Exception | None,
) -> None:
    """Fire the one `request` event of a judged exchange."""
    session.request_event.fire(
        request_type=method,
        name=name,
        context=context,
        response=ex.response,
        exception=exception,
        start_time=ex.start_time,
        url=url,
        response_length=ex.length,
        response_time=ex.response_time_ms,
        wire_time=ex.wire_ms,
        connect_time=ex.connect_ms,
    )
