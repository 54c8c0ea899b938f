"""The OTLP/HTTP trace receiver, fed by the real OpenTelemetry SDK and exporters.

Protobuf comes from `opentelemetry-exporter-otlp-proto-http` (plain and gzip), JSON from
`opentelemetry-exporter-otlp-json-http`; spans of traces without the run's marker are counted
and dropped; what reaches spans.jsonl carries no literal values.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind

from capacity.errors import ConfigError
from capacity.traces.receiver import TraceReceiver
from capacity.traces.spans import iter_spans, normalise_statement

MARKER = "c0ffee01"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MarkedIds(RandomIdGenerator):
    """Trace ids as the load generator makes them: the run's marker, then random bits."""

    def generate_trace_id(self) -> int:
        return (int(MARKER, 16) << 96) | (super().generate_trace_id() & ((1 << 96) - 1))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[TraceReceiver]:
    rx = TraceReceiver(MARKER, port=0, max_spans=1000)
    rx.start(tmp_path)
    try:
        yield rx
    finally:
        rx.stop()


def send_trace(exporter: Any, marked: bool = True, service: str = "master-data") -> None:
    """One server span with a database child, exported through `exporter` and flushed."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        id_generator=MarkedIds() if marked else RandomIdGenerator(),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    server = tracer.start_as_current_span(
        "GET /customers/{id}", kind=SpanKind.SERVER, attributes={"http.route": "/customers/{id}"}
    )
    query = tracer.start_as_current_span(
        "SELECT",
        kind=SpanKind.CLIENT,
        attributes={
            "db.system": "postgresql",
            "db.statement": "SELECT doc FROM customers WHERE email = 'alice@example.com' "
            "AND credit > 5000",
            "db.user": "postgres",
            "http.request.header.authorization": "Bearer secret-token",
        },
    )
    with server, query:
        pass
    provider.shutdown()


def proto_exporter(rx: TraceReceiver, gzip: bool = False) -> Any:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    compression = Compression.Gzip if gzip else Compression.NoCompression
    return OTLPSpanExporter(endpoint=rx.endpoint, compression=compression)


def json_exporter(rx: TraceReceiver) -> Any:
    from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=rx.endpoint)


@pytest.mark.parametrize("flavour", ["protobuf", "protobuf+gzip", "json"])
def test_real_exporter_spans_are_kept(
    receiver: TraceReceiver, tmp_path: Path, flavour: str
) -> None:
    exporter = (
        json_exporter(receiver)
        if flavour == "json"
        else proto_exporter(receiver, gzip=flavour.endswith("gzip"))
    )
    send_trace(exporter)
    spans = sorted(iter_spans(tmp_path), key=lambda s: s["kind"])
    assert [s["kind"] for s in spans] == ["client", "server"]
    db, server = spans
    assert {s["trace_id"][:8] for s in spans} == {MARKER}
    assert db["parent_id"] == server["span_id"] and db["trace_id"] == server["trace_id"]
    assert server["service"] == "master-data" and server["name"] == "GET /customers/{id}"
    assert server["attrs"] == {"http.route": "/customers/{id}"}
    assert db["attrs"] == {
        "db.system": "postgresql",
        "db.statement": "SELECT doc FROM customers WHERE email = ? AND credit > ?",
    }
    assert 0 < db["end_ns"] - db["start_ns"] <= server["end_ns"] - server["start_ns"]
    stats = receiver.stats
    assert (stats.spans_received, stats.spans_kept, stats.spans_foreign) == (2, 2, 0)
    assert stats.bad_requests == 0


def test_spans_of_other_traces_are_counted_and_ignored(
    receiver: TraceReceiver, tmp_path: Path
) -> None:
    send_trace(proto_exporter(receiver), marked=False, service="someone-else")
    send_trace(json_exporter(receiver), marked=False, service="someone-else")
    send_trace(proto_exporter(receiver), marked=True)
    spans = list(iter_spans(tmp_path))
    assert len(spans) == 2 and {s["service"] for s in spans} == {"master-data"}
    assert receiver.stats.spans_foreign == 4
    assert receiver.stats.spans_received == 6
    text = (tmp_path / "spans.jsonl").read_text()
    assert "secret-token" not in text and "alice@example.com" not in text


def test_spans_past_the_limit_are_counted_not_kept(tmp_path: Path) -> None:
    with TraceReceiver(MARKER, port=0, max_spans=3) as rx:
        rx.start(tmp_path)
        for _ in range(3):
            send_trace(proto_exporter(rx))
    assert len(list(iter_spans(tmp_path))) == 3
    assert (rx.stats.spans_kept, rx.stats.spans_over_limit) == (3, 3)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_bad_requests_are_refused_and_counted(receiver: TraceReceiver) -> None:
    proto = {"Content-Type": "application/x-protobuf"}
    assert post(receiver.endpoint, b"\xff\xff\xff", proto)[0] == 400
    assert post(receiver.endpoint, b"{", {"Content-Type": "application/json"})[0] == 400
    assert post(receiver.endpoint, b"x", {"Content-Type": "text/plain"})[0] == 415
    zstd = {**proto, "Content-Encoding": "zstd"}
    assert post(receiver.endpoint, b"", zstd)[0] == 415
    status, _ = post(receiver.endpoint.replace("/v1/traces", "/v1/metrics"), b"", proto)
    assert status == 404
    status, body = post(receiver.endpoint, json.dumps({"resourceSpans": []}).encode(), {
        "Content-Type": "application/json"})  # fmt: skip
    assert (status, body) == (200, b"{}")
    assert receiver.stats.bad_requests == 5 and receiver.stats.requests == 6


def test_a_busy_port_is_a_config_error_naming_the_key() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"^traces.port {port}: cannot listen"):
            TraceReceiver(MARKER, port=port)


@pytest.mark.parametrize(
    ("sql", "normalised"),
    [
        ("SELECT * FROM t WHERE a = 'x''y' AND b = 3.5", "SELECT * FROM t WHERE a = ? AND b = ?"),
        ("select doc from t where id = $1 /* c */ -- tail", "select doc from t where id = $1"),
        ("SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (?)"),
        ("SELECT t1.a\n   FROM t1 LIMIT 10", "SELECT t1.a FROM t1 LIMIT ?"),
    ],
)
def test_statements_are_normalised(sql: str, normalised: str) -> None:
    assert normalise_statement(sql) == normalised
