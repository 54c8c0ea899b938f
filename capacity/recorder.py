"""Exact latency recording: HDR histograms per operation and time slice.

Locust rounds response times to about two significant digits and keeps only cumulative and
10-second-window percentiles. Every request's latency is recorded here, in microseconds, into
an HDR histogram with 3 significant digits, one per operation per slice; closed slices are
handed to a sink (the run folder locally, the master in distributed mode) as plain dicts, so
they merge exactly: adding histograms equals one histogram of all samples.

In an open-model (arrival-rate) run a request's context carries its iteration's intended
start (`INTENDED_START_KEY`, Unix seconds); such a request is also recorded into a second
histogram, `hist_intended`, of the latency from the intended start to the response (corrected
for coordinated omission: a stalled load generator cannot hide the queueing it caused).
Extra per-slice fields (the arrival executor's counters) are added by the `on_close`
callback (the plugin fires its `slice_closing` event there) before the record is handed on.

A driver that times at the socket (`capacity.drivers.wire_timing`) adds `wire_time` and
`connect_time` (ms) to the `request` event. Then `hist` holds the wire latency (what the
system took: first byte written to last byte received) and, for the same requests,
`hist_client` the client-observed latency (Locust's `response_time`) and `hist_overhead` the
client's own share (client-observed minus wire minus connect); `hist_connect` holds the
connection set-up times. A request without a wire figure (a connection error, a TLS target, a
driver that does not time at the socket) is recorded into `hist` as client-observed, as
before.

A request whose context carries `TRACE_ID_KEY` (a sampled W3C trace, see
`capacity.drivers.tracing`) is also listed in its slice under `traces` as
`[trace_id, start_s, latency_ms, failed]`, at most `MAX_TRACES_PER_SLICE` per operation (the
rest counted in `traces_dropped`): the client side of the spans the trace receiver keeps.
Unsampled requests cost nothing more.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from capacity.runfolder.histograms import HIGHEST_US, LOWEST_US, encode_histogram, new_histogram
from capacity.runfolder.slices import SLICE_SCHEMA

MAX_ERROR_KEYS = 20
INTENDED_START_KEY = "intended_start_s"
TRACE_ID_KEY = "trace_id"
MAX_TRACES_PER_SLICE = 2000
RESERVED_FIELDS = frozenset({"schema", "t_start_s", "t_end_s", "worker", "users", "ops"})


@dataclass
class _OpSlice:
    hist: HdrHistogram = field(default_factory=new_histogram)
    count: int = 0
    failures: int = 0
    partial: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    hist_intended: HdrHistogram | None = None
    hist_client: HdrHistogram | None = None
    hist_overhead: HdrHistogram | None = None
    hist_connect: HdrHistogram | None = None
    traces: list[list[Any]] | None = None
    traces_dropped: int = 0


def error_key(exception: BaseException | str) -> str:
    """A short, stable description of a failure, so errors group by kind, not by instance."""
    text = str(exception).strip().splitlines()[0] if str(exception).strip() else ""
    name = type(exception).__name__ if isinstance(exception, BaseException) else ""
    if name in ("CatchResponseError", "str", ""):
        return text[:160] or "failure"
    return f"{name}: {text}"[:160]


class SliceRecorder:
    """Records request latencies into per-operation histograms and closes them into slices.

    `on_request` is Locust's `events.request` handler signature. It runs once per request in
    the gevent hub's thread, so it does no I/O and allocates nothing in the common case.
    """

    def __init__(
        self,
        sink: Callable[[dict[str, Any]], None],
        *,
        worker: str,
        users: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.time,
        on_close: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._sink = sink
        self._worker = worker
        self._users = users
        self._clock = clock
        self._ops: dict[str, _OpSlice] = {}
        self._slice_start_s = clock()
        self._on_close = on_close
        self.total_requests = 0

    def on_request(
        self,
        name: str,
        response_time: float | None,
        exception: BaseException | str | None = None,
        context: Mapping[str, Any] | None = None,
        start_time: float | None = None,
        wire_time: float | None = None,
        connect_time: float | None = None,
        **_: Any,
    ) -> None:
        op = self._ops.get(name)
        if op is None:
            op = self._ops[name] = _OpSlice()
        if wire_time is None:
            latency_us = _us(response_time)
        else:
            latency_us = _us(wire_time)
            self._record_client(op, response_time or 0.0, wire_time, connect_time or 0.0)
        if connect_time is not None:
            if op.hist_connect is None:
                op.hist_connect = new_histogram()
            op.hist_connect.record_value(_us(connect_time))
        op.hist.record_value(latency_us)
        op.count += 1
        self.total_requests += 1
        if exception is not None:
            op.failures += 1
            key = error_key(exception)
            if key in op.errors or len(op.errors) < MAX_ERROR_KEYS:
                op.errors[key] += 1
            else:
                op.errors["other"] += 1  # a known kind keeps counting under its own name
        if context:
            if context.get("partial"):
                op.partial += 1
            intended_s = context.get(INTENDED_START_KEY)
            if intended_s is not None:
                self._record_intended(op, latency_us, float(intended_s), start_time)
            trace_id = context.get(TRACE_ID_KEY)
            if trace_id is not None:
                _record_trace(op, trace_id, start_time, latency_us, exception is not None)

    @staticmethod
    def _record_client(op: _OpSlice, client_ms: float, wire_ms: float, connect_ms: float) -> None:
        if op.hist_client is None:
            op.hist_client = new_histogram()
            op.hist_overhead = new_histogram()
        assert op.hist_overhead is not None
        op.hist_client.record_value(_us(client_ms))
        op.hist_overhead.record_value(_us(client_ms - wire_ms - connect_ms))

    def _record_intended(
        self, op: _OpSlice, latency_us: int, intended_s: float, start_time: float | None
    ) -> None:
        """Latency from the intended start: the actual latency plus how late the send was."""
        if start_time is None:  # a driver that does not report its send time: derive it
            start_time = self._clock() - latency_us / 1e6
        late_us = max(0, int((start_time - intended_s) * 1e6 + 0.5))
        if op.hist_intended is None:
            op.hist_intended = new_histogram()
        op.hist_intended.record_value(min(latency_us + late_us, HIGHEST_US))

    def close_slice(self) -> dict[str, Any] | None:
        """Close the current slice, hand it to the sink and return it (None when empty)."""
        now = self._clock()
        ops, self._ops = self._ops, {}
        start, self._slice_start_s = self._slice_start_s, now
        record: dict[str, Any] = {
            "schema": SLICE_SCHEMA,
            "t_start_s": round(start, 3),
            "t_end_s": round(now, 3),
            "worker": self._worker,
            "users": self._users(),
            "ops": {name: _op_record(op) for name, op in ops.items()},
        }
        if self._on_close is not None:
            self._on_close(record)
            if RESERVED_FIELDS.intersection(record) != RESERVED_FIELDS:
                raise ValueError("a slice_closing listener removed a reserved slice field")
        self._sink(record)
        return record


def _us(ms: float | None) -> int:
    """A latency in ms as whole microseconds within the histograms' range."""
    return min(max(int((ms or 0.0) * 1000.0 + 0.5), LOWEST_US), HIGHEST_US)


def _record_trace(
    op: _OpSlice, trace_id: str, start_time: float | None, latency_us: int, failed: bool
) -> None:
    """List one sampled request: its trace id, send time, latency (the wire's when measured)
    and outcome."""
    if op.traces is None:
        op.traces = []
    if len(op.traces) >= MAX_TRACES_PER_SLICE:
        op.traces_dropped += 1
        return
    start_s = round(start_time, 6) if start_time is not None else None
    op.traces.append([trace_id, start_s, latency_us / 1000.0, int(failed)])


def _op_record(op: _OpSlice) -> dict[str, Any]:
    out: dict[str, Any] = {
        "count": op.count,
        "failures": op.failures,
        "partial": op.partial,
        "hist": encode_histogram(op.hist),
        "errors": dict(op.errors),
    }
    for key in ("hist_intended", "hist_client", "hist_overhead", "hist_connect"):
        hist = getattr(op, key)
        if hist is not None:
            out[key] = encode_histogram(hist)
    if op.traces is not None:
        out["traces"] = op.traces
        if op.traces_dropped:
            out["traces_dropped"] = op.traces_dropped
    return out
