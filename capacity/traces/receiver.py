"""OTLP/HTTP trace receiver: keeps the spans of this run's traces, appends them to the run folder.

`capacity run` starts one for the length of a run (scenario `[traces]`). The stack's services,
or the OpenTelemetry collector in front of them (`otlphttp` exporter, docs/real-stack.md), POST
`ExportTraceServiceRequest`s to `/v1/traces`, as protobuf or JSON, gzip/deflate or plain. Spans
whose trace id starts with the run's marker (`capacity.drivers.tracing`) are written to
`spans.jsonl` at once and flushed, so memory holds one request at a time however long the run;
every other span is counted as foreign and dropped. Past `max_spans` kept spans, the rest are
counted as over the limit. The answer is always an empty success: a sender that is told to retry
would only send the same foreign spans again.

The stdlib threading HTTP server is enough: exporters send batches (every 0.5-5 s per service),
not one request per span.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from capacity.errors import ConfigError
from capacity.traces.spans import DecodeResult, SpanWriter, decode_json, decode_protobuf

TRACES_PATH = "/v1/traces"
MAX_BODY_BYTES = 64 * 2**20
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass
class ReceiverStats:
    """What the receiver saw: requests, spans received, kept and dropped (by reason)."""

    requests: int = 0
    bad_requests: int = 0
    spans_received: int = 0
    spans_kept: int = 0
    spans_foreign: int = 0
    spans_over_limit: int = 0
    first_span_at_s: float | None = None
    last_span_at_s: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    write_error: str | None = None  # spans.jsonl could not be written (a full disk)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "bad_requests": self.bad_requests,
            "spans_received": self.spans_received,
            "spans_kept": self.spans_kept,
            "spans_foreign": self.spans_foreign,
            "spans_over_limit": self.spans_over_limit,
            "first_span_at_s": self.first_span_at_s,
            "last_span_at_s": self.last_span_at_s,
            "errors": dict(self.errors),
            "write_error": self.write_error,
        }


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    raise ValueError(f"unsupported Content-Encoding '{encoding}' (gzip, deflate or none)")


class TraceReceiver:
    """An OTLP/HTTP receiver on `host:port`; bound at construction, serving after `start`."""

    def __init__(
        self,
        marker_hex: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_spans: int = 200_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.marker_hex = marker_hex.lower()
        self.marker = bytes.fromhex(self.marker_hex)
        self.max_spans = max_spans
        self.stats = ReceiverStats()
        self._clock = clock
        self._lock = threading.Lock()
        self._writer: SpanWriter | None = None
        self._thread: threading.Thread | None = None
        try:
            self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        except OSError as exc:
            raise ConfigError(
                f"traces.port {port}: cannot listen on {host}:{port} for spans "
                f"({exc.strerror or exc}); pick another port in [traces]"
            ) from None
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://{host}:{self.port}{TRACES_PATH}"

    def start(self, run_dir: Path) -> None:
        """Start serving; kept spans go to `run_dir/spans.jsonl`."""
        self._writer = SpanWriter(run_dir)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="otlp-receiver",
            daemon=True,
        )
        self._thread.start()

    def wait_quiet(self, quiet_s: float, max_s: float) -> float:
        """Wait until no span arrived for `quiet_s` (from now or the last span), at most `max_s`.

        Senders export in batches after the load stops; this is how long their last batch
        may take. Returns the seconds waited.
        """
        started = self._clock()
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            last = max(started, self.stats.last_span_at_s or 0.0)
            if self._clock() - last >= quiet_s:
                break
            time.sleep(0.05)
        return self._clock() - started

    def stop(self) -> None:
        """Stop serving, close the spans file; idempotent."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self.stats.write_error = self._writer.error
                self._writer = None

    def __enter__(self) -> TraceReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def accept(self, body: bytes, content_type: str) -> DecodeResult:
        """Decode one export request and keep its spans of our traces (ValueError: bad body)."""
        if content_type == PROTOBUF:
            result = decode_protobuf(body, self.marker)
        elif content_type == JSON:
            result = decode_json(body, self.marker_hex)
        else:
            raise ValueError(f"unsupported Content-Type '{content_type}' ({PROTOBUF} or {JSON})")
        now = self._clock()
        with self._lock:
            s = self.stats
            s.spans_received += result.total
            s.spans_foreign += result.foreign
            room = max(0, self.max_spans - s.spans_kept)
            kept = result.kept[:room]
            s.spans_over_limit += len(result.kept) - len(kept)
            s.spans_kept += len(kept)
            if kept:
                if s.first_span_at_s is None:
                    s.first_span_at_s = now
                s.last_span_at_s = now
                if self._writer is not None:
                    self._writer.write(kept)
                    s.write_error = self._writer.error
        return result

    def count_request(self, error: str | None) -> None:
        with self._lock:
            self.stats.requests += 1
            if error is not None:
                self.stats.bad_requests += 1
                self.stats.errors[error] = self.stats.errors.get(error, 0) + 1


def _handler_for(receiver: TraceReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "capacity-otlp"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # a line per export request would flood the run's terminal

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _refuse(self, status: int, message: str) -> None:
            receiver.count_request(message[:80])
            self._answer(status, message.encode(), "text/plain; charset=utf-8")

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?", 1)[0] != TRACES_PATH:
                self._refuse(404, f"only {TRACES_PATH} is served")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._refuse(413, f"body over {MAX_BODY_BYTES} bytes")
                self.close_connection = True
                return
            raw = self.rfile.read(length)
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            try:
                body = _decompress(raw, self.headers.get("Content-Encoding") or "")
                receiver.accept(body, content_type)
            except (ValueError, OSError, EOFError, zlib.error) as exc:
                status = 415 if "unsupported" in str(exc) else 400
                self._refuse(status, f"bad request: {exc}")
                return
            receiver.count_request(None)
            if content_type == JSON:
                self._answer(200, b"{}", JSON)
            else:  # an empty ExportTraceServiceResponse is zero bytes of protobuf
                self._answer(200, b"", PROTOBUF)

        def do_GET(self) -> None:  # noqa: N802
            self._refuse(405, f"POST OTLP spans to {TRACES_PATH}")

    return Handler
