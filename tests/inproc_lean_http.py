"""`send_checked` reports exactly what Locust's own `catch_response` path reports.

Run by tests/test_lean_http.py in its own pytest process: importing Locust monkey-patches
ssl, which must happen before anything imports ssl, and the main test process has long
imported it (docker, requests) by the time these tests would be collected.

Each case sends the same request both ways to a real HTTP server on 127.0.0.1 and compares
the `request` events fired: name, type, failure (class and message), response length,
partial marking and the headers on the wire. With a wire probe (`wire_timing.install`) the
event also carries the wire and connect times, checked against a server that waits 30 ms.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from locust.contrib.fasthttp import FastHttpSession
from locust.event import EventHook

from capacity.drivers.graphql import graphql_failure
from capacity.drivers.lean_http import request_headers, send_checked
from capacity.drivers.wire_timing import WireSocket, install

ANSWERS: dict[str, tuple[int, bytes, dict[str, str]]] = {
    "/ok": (200, b'{"data": {"customer": {"id": "C-1"}}}', {}),
    "/errors": (200, b'{"data": null, "errors": [{"message": "boom"}]}', {}),
    "/partial": (
        200,
        b'{"data": {"x": 1}, "errors": [{"message": "half", "extensions": {"code": "E1"}}]}',
        {},
    ),
    "/not-json": (200, b'"errors" but not json', {}),
    "/gzip-errors": (
        200,
        gzip.compress(b'{"errors": [{"message": "zipped"}]}'),
        {"Content-Encoding": "gzip"},
    ),
    "/500": (500, b'{"errors": [{"message": "server"}]}', {}),
    "/201-errors": (201, b'{"errors": [{"message": "not checked off 200"}]}', {}),
    "/empty": (200, b"", {}),
}
SLOW_PATH, SLOW_S = "/slow", 0.03


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Handler.seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.path == SLOW_PATH:
            time.sleep(SLOW_S)
        status, body, extra = ANSWERS.get(self.path, ANSWERS["/ok"])
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def session(base_url: str, events: list[dict[str, Any]]) -> FastHttpSession:
    hook = EventHook()
    hook.add_listener(lambda **kw: events.append(kw))
    return FastHttpSession(
        base_url=base_url,
        request_event=hook,
        user=None,
        network_timeout=5.0,
        connection_timeout=2.0,
        max_retries=0,
    )


def via_locust(base_url: str, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """The driver's former path: Locust's catch_response with the same body check."""
    events: list[dict[str, Any]] = []
    with session(base_url, events).post(
        path,
        data=body,  # type: ignore[arg-type]
        headers=headers,
        name="op",
        context={},  # a fresh dict: Locust's default one is shared, and "partial" is set on it
        catch_response=True,
    ) as resp:
        if resp.status_code == 200:
            failure, partial = graphql_failure(resp.content or b"")
            if failure is not None:
                if partial:
                    resp.request_meta["context"]["partial"] = True
                resp.failure(failure)
    assert len(events) == 1
    return events[0]


def via_lean(base_url: str, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    s = session(base_url, events)
    lean_headers = request_headers(s, headers)
    send_checked(s, "POST", base_url + path, body, lean_headers, "op", {}, graphql_failure)
    assert len(events) == 1
    return events[0]


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    exc = event["exception"]
    return {
        "request_type": event["request_type"],
        "name": event["name"],
        "exception": None if exc is None else (type(exc).__name__, str(exc)),
        "response_length": event["response_length"],
        "partial": event["context"].get("partial", False),
        "url": event["url"],
    }


@pytest.mark.parametrize("path", sorted(ANSWERS))
def test_same_event_as_locusts_catch_response(server: str, path: str) -> None:
    body = json.dumps({"query": "{ x }"}).encode()
    headers = {
        "Content-Type": "application/json",
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    }
    Handler.seen.clear()
    locust_event = via_locust(server, path, body, headers)
    lean_event = via_lean(server, path, body, headers)
    assert comparable(lean_event) == comparable(locust_event)
    assert lean_event["response_time"] > 0
    # The same request on the wire, apart from the connection's own bookkeeping.
    assert len(Handler.seen) == 2
    assert Handler.seen[0] == Handler.seen[1]


def test_expected_failures_and_partials(server: str) -> None:
    body, headers = b"{}", {"Content-Type": "application/json"}
    outcome = {path: comparable(via_lean(server, path, body, headers)) for path in ANSWERS}
    assert outcome["/ok"]["exception"] is None
    assert outcome["/errors"]["exception"] == ("CatchResponseError", "GraphQL error: boom")
    assert outcome["/partial"]["exception"] == ("CatchResponseError", "GraphQL error [E1]: half")
    assert outcome["/partial"]["partial"] and not outcome["/errors"]["partial"]
    assert outcome["/gzip-errors"]["exception"] == ("CatchResponseError", "GraphQL error: zipped")
    assert outcome["/not-json"]["exception"] == (
        "CatchResponseError",
        "invalid JSON in GraphQL response",
    )
    assert outcome["/500"]["exception"][0] == "LocustBadStatusCode"
    assert outcome["/201-errors"]["exception"] is None
    assert outcome["/empty"]["exception"] is None


def test_connection_refused_is_one_failure_like_locusts(server: str) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    locust_event = via_locust(dead, "/ok", b"{}", {})
    lean_event = via_lean(dead, "/ok", b"{}", {})
    assert lean_event["exception"] is not None
    assert comparable(lean_event) == comparable(locust_event)


def test_rules_outcome_check() -> None:
    """The rules form's outcome check, now an assertion check of the HTTP driver."""
    from capacity.drivers.http import compile_answer_check
    from capacity.scenario.model import Assertion

    expect = {"vatRate": 0.2, "exempt": False}
    assertions = [
        Assertion(f"/outcome/{k}", ("outcome", k), "equals", v, label="wrong outcome")
        for k, v in expect.items()
    ]
    check = compile_answer_check(assertions, {}, "invalid JSON from rules engine")
    assert check is not None
    assert check(b'{"outcome": {"vatRate": 0.2, "exempt": false, "x": 1}}', {}) is None
    assert check(b'{"outcome": {"vatRate": 0.1, "exempt": false}}', {}) == (
        "wrong outcome: vatRate expected 0.2, got 0.1"
    )
    assert check(b"", {}) == "invalid JSON from rules engine"
    assert check(b"[1]", {}) == "wrong outcome: vatRate expected 0.2, got None"
    assert compile_answer_check([], {}, "x") is None  # nothing checks: never parsed


def expecting(
    base_url: str, path: str, expected: frozenset[int] | None, check: Any = None
) -> tuple[Any, dict[str, Any]]:
    from capacity.drivers.lean_http import send_expecting

    events: list[dict[str, Any]] = []
    s = session(base_url, events)
    headers = request_headers(s, {"Content-Type": "application/json"})
    out = send_expecting(s, "POST", base_url + path, b"{}", headers, "op", {}, check, {}, expected)
    assert len(events) == 1
    return out, events[0]


def test_expected_status_decides_success(server: str) -> None:
    (body, exc), event = expecting(server, "/201-errors", frozenset({201}))
    assert exc is None and event["exception"] is None and body and event["response_length"]
    (body, exc), event = expecting(server, "/ok", frozenset({201}))
    assert body is None and str(event["exception"]) == "HTTP 200, expected 201"
    (body, exc), event = expecting(server, "/500", frozenset({500, 503}))
    assert event["exception"] is None and body is not None
    (body, exc), event = expecting(server, "/500", None)
    assert type(event["exception"]).__name__ == "LocustBadStatusCode" and body is None


def test_failed_check_is_the_failure_and_the_body_is_not_returned(server: str) -> None:
    (body, exc), event = expecting(server, "/ok", None, lambda content, rows: "assertion failed")
    assert body is None and str(exc) == "assertion failed" == str(event["exception"])
    assert event["response_length"] > 0  # sizes are counted, bodies are not kept


def test_expected_status_does_not_hide_a_refused_connection() -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    (body, exc), event = expecting(dead, "/ok", frozenset({200}))
    assert body is None and event["exception"] is not None
    assert "expected" not in str(event["exception"])


def test_wire_probe_times_the_request_inside_the_client_interval(server: str) -> None:
    """Wire time: the server's 30 ms and the loopback, within Locust's response time."""
    events: list[dict[str, Any]] = []
    s = session(server, events)
    probe = install(s, [server])
    headers = request_headers(s, {"Content-Type": "application/json"})
    before = time.time()
    for _ in range(3):
        send_checked(
            s, "POST", server + SLOW_PATH, b"{}", headers, "op", {}, graphql_failure, probe
        )
    first, second, third = events
    for event in events:
        assert event["exception"] is None
        assert SLOW_S * 1000 <= event["wire_time"] < event["response_time"]
        assert event["start_time"] >= before  # the first byte's time, after the call began
    # one connection, opened by the first request and timed apart from it
    assert first["connect_time"] is not None and 0 < first["connect_time"] < 1000
    assert second["connect_time"] is None and third["connect_time"] is None
    client = s.client.clientpool.get_client(server + "/")
    sock = client._connection_pool._socket_queue.peek()
    assert isinstance(sock, WireSocket)


def test_wire_probe_reports_no_wire_time_without_a_response() -> None:
    events: list[dict[str, Any]] = []
    dead = f"http://127.0.0.1:{closed_port()}"
    s = session(dead, events)
    probe = install(s, [dead])
    send_checked(s, "POST", dead + "/ok", b"{}", {}, "op", {}, graphql_failure, probe)
    (event,) = events
    assert event["exception"] is not None
    assert event["wire_time"] is None and event["connect_time"] is None


def test_a_session_without_a_probe_keeps_stock_sockets(server: str) -> None:
    events: list[dict[str, Any]] = []
    s = session(server, events)
    send_checked(s, "POST", server + "/ok", b"{}", {}, "op", {}, graphql_failure)
    (event,) = events
    assert event["wire_time"] is None and event["connect_time"] is None
    sock = s.client.clientpool.get_client(server + "/")._connection_pool._socket_queue.peek()
    assert not isinstance(sock, WireSocket)


def test_tls_targets_and_shared_pools_stay_client_observed(server: str) -> None:
    """OpenSSL reads TLS sockets itself, and one probe cannot follow many users' requests."""
    from geventhttpclient.client import HTTPClientPool
    from geventhttpclient.url import URL

    from capacity.drivers.wire_timing import WireConnectionPool, for_user

    s = session(server, [])
    tls = "https://127.0.0.1:9/"
    install(s, [tls, server])
    pool_of = s.client.clientpool.get_client
    assert not isinstance(pool_of(URL(tls))._connection_pool, WireConnectionPool)
    assert isinstance(pool_of(URL(server))._connection_pool, WireConnectionPool)

    class SharedPoolUser:
        client_pool = HTTPClientPool()
        client = session(server, [])

    assert for_user(SharedPoolUser(), server) is None
