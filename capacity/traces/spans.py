"""Span records: OTLP trace data decoded into the run folder's `spans.jsonl`, and read back.

One JSON object per kept span, appended and flushed as export requests arrive:

    {"trace_id": "<32 hex>", "span_id": "<16 hex>", "parent_id": "<16 hex or empty>",
     "name": "GET /customers/{id}", "kind": "server", "service": "master-data",
     "start_ns": 1764200000123456789, "end_ns": 1764200000125456789, "status": 0,
     "attrs": {"http.route": "/customers/{id}", ...}}

Only a short list of attributes is kept (`KEPT_ATTRIBUTES`): what the analysis reads, never
headers, URLs with query strings or parameter values. SQL is normalised on arrival (literals
replaced by `?`), so a statement's values never reach the run folder even when an
instrumentation put them in the text.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

SPANS_FILE = "spans.jsonl"
KIND_NAMES = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATEMENT_KEYS = ("db.query.text", "db.statement")
KEPT_ATTRIBUTES = frozenset(
    {
        "db.system",
        "db.system.name",
        "db.statement",
        "db.query.text",
        "db.operation",
        "db.operation.name",
        "db.name",
        "db.namespace",
        "http.method",
        "http.request.method",
        "http.route",
        "http.status_code",
        "http.response.status_code",
        "graphql.operation.name",
        "graphql.operation.type",
        "rpc.system",
        "rpc.service",
        "rpc.method",
        "temporalWorkflowID",
        "temporalRunID",
        "temporalActivityID",
    }
)
MAX_STATEMENT_CHARS = 400
MAX_ATTRIBUTE_CHARS = 200

_COMMENTS = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
_STRINGS = re.compile(r"'(?:[^']|'')*'")
_NUMBERS = re.compile(r"(?<![\w$.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b")
_LISTS = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_SPACES = re.compile(r"\s+")


def normalise_statement(sql: str) -> str:
    """SQL with comments dropped, string and number literals replaced by `?`, one line.

    Placeholders (`$1`, `%s`, `?`) stay as they are: they are parameters, not values.
    `IN (?, ?, ?)` becomes `IN (?)`, so one statement does not split by list length.
    """
    text = _COMMENTS.sub(" ", sql)
    text = _STRINGS.sub("?", text)
    text = _NUMBERS.sub("?", text)
    text = _LISTS.sub("(?)", text)
    text = _SPACES.sub(" ", text).strip()
    return text[:MAX_STATEMENT_CHARS]


@dataclass
class DecodeResult:
    """Spans of one export request: kept records, and counts of all and of foreign spans."""

    kept: list[dict[str, Any]]
    total: int = 0
    foreign: int = 0


def _kept_value(key: str, value: Any) -> Any:
    if key in STATEMENT_KEYS and isinstance(value, str):
        return normalise_statement(value)
    if isinstance(value, str):
        return value[:MAX_ATTRIBUTE_CHARS]
    return value


def _record(
    trace_id: str,
    span_id: str,
    parent_id: str,
    name: str,
    kind: int,
    service: str,
    start_ns: int,
    end_ns: int,
    status: int,
    attrs: dict[str, Any],
) -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_id": parent_id,
        "name": name[:MAX_ATTRIBUTE_CHARS],
        "kind": KIND_NAMES[kind] if 0 <= kind < len(KIND_NAMES) else "unspecified",
        "service": service,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "status": status,
        "attrs": attrs,
    }


# --- protobuf -------------------------------------------------------------------------------


def _proto_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(value, which)
    return None  # arrays, maps and bytes: never in the kept attributes


def decode_protobuf(body: bytes, marker: bytes) -> DecodeResult:
    """Decode an OTLP `ExportTraceServiceRequest`; keep spans whose trace id starts with `marker`.

    The marker test looks at the raw id bytes before anything else of the span is read, so a
    foreign span costs little. Raises ValueError for a body that is not valid protobuf.
    """
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise ValueError(f"not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
    result = DecodeResult([])
    width = len(marker)
    for resource_spans in request.resource_spans:
        service = ""
        for kv in resource_spans.resource.attributes:
            if kv.key == "service.name":
                service = kv.value.string_value
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                result.total += 1
                trace_id = span.trace_id
                if trace_id[:width] != marker:
                    result.foreign += 1
                    continue
                attrs = {
                    kv.key: _kept_value(kv.key, _proto_value(kv.value))
                    for kv in span.attributes
                    if kv.key in KEPT_ATTRIBUTES
                }
                result.kept.append(
                    _record(
                        trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                        span.name,
                        int(span.kind),
                        service,
                        int(span.start_time_unix_nano),
                        int(span.end_time_unix_nano),
                        int(span.status.code),
                        attrs,
                    )
                )
    return result


# --- JSON -------------------------------------------------------------------------------------


def _json_id(value: Any, size: int) -> str:
    """An OTLP/JSON id: hex as the spec says, or base64 as some older senders wrote it."""
    if not isinstance(value, str) or not value:
        return ""
    if len(value) == 2 * size:
        try:
            bytes.fromhex(value)
            return value.lower()
        except ValueError:
            pass
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return ""
    return raw.hex() if len(raw) == size else ""


def _json_value(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return None
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:  # int64 travels as a string in OTLP/JSON
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            return None
    return None


def _json_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def decode_json(body: bytes, marker_hex: str) -> DecodeResult:
    """Decode an OTLP/JSON export request; keep spans whose trace id starts with `marker_hex`.

    Raises ValueError for a body that is not a JSON object.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ValueError("an OTLP/JSON request is a JSON object")
    result = DecodeResult([])
    for resource_spans in doc.get("resourceSpans") or ():
        if not isinstance(resource_spans, Mapping):
            continue
        service = ""
        for kv in (resource_spans.get("resource") or {}).get("attributes") or ():
            if isinstance(kv, Mapping) and kv.get("key") == "service.name":
                service = str(_json_value(kv.get("value")) or "")
        scopes = resource_spans.get("scopeSpans") or resource_spans.get(
            "instrumentationLibrarySpans"
        )
        for scope_spans in scopes or ():
            for span in (scope_spans or {}).get("spans") or ():
                if not isinstance(span, Mapping):
                    continue
                result.total += 1
                trace_id = _json_id(span.get("traceId"), 16)
                if not trace_id.startswith(marker_hex):
                    result.foreign += 1
                    continue
                attrs = {}
                for kv in span.get("attributes") or ():
                    key = kv.get("key") if isinstance(kv, Mapping) else None
                    if key in KEPT_ATTRIBUTES:
                        attrs[key] = _kept_value(key, _json_value(kv.get("value")))
                status = span.get("status") or {}
                result.kept.append(
                    _record(
                        trace_id,
                        _json_id(span.get("spanId"), 8),
                        _json_id(span.get("parentSpanId"), 8),
                        str(span.get("name") or ""),
                        _json_int(span.get("kind")),
                        service,
                        _json_int(span.get("startTimeUnixNano")),
                        _json_int(span.get("endTimeUnixNano")),
                        _json_int(status.get("code") if isinstance(status, Mapping) else 0),
                        attrs,
                    )
                )
    return result


# --- the run folder's spans.jsonl -------------------------------------------------------------


class SpanWriter:
    """Appends span records to `spans.jsonl`, one line each, flushed per batch.

    A failed write (a full disk) is kept in `error` and later spans are dropped: the run goes
    on, and the error reaches run.json (and the verdict) through the receiver's counters.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / SPANS_FILE
        self.error: str | None = None
        self._fh: IO[str] | None = self.path.open("a", encoding="utf-8")

    def write(self, records: list[dict[str, Any]]) -> None:
        if self._fh is None or not records:
            return
        try:
            self._fh.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
            self._fh.flush()
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        from capacity.runfolder.files import describe_os_error

        self.error = self.error or f"{self.path}: cannot write: {describe_os_error(exc)}"
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError as exc:
                self._fh = None
                self._fail(exc)
            self._fh = None


def iter_spans(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Yield the span records of a run folder; a truncated last line (killed run) is skipped."""
    path = Path(run_dir) / SPANS_FILE
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "trace_id" in record:
                yield record
