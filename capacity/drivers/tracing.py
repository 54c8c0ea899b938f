"""W3C trace context for load traffic, so it shows up in the stack's tracing pipeline.

Every trace id the load generator makes can carry a fixed 32-bit prefix, the run's trace
marker (`--trace-id-prefix`): the trace receiver keeps spans of traces whose id starts with
it and ignores every other trace the collector forwards. The marker costs nothing per request
(one OR into bits that are drawn anyway) and needs no shared set of ids between processes.
The remaining 96 bits stay random, and so do the low 64 bits that OpenTelemetry's
`TraceIdRatioBased` sampler and the collector's probabilistic sampler look at.
"""

from __future__ import annotations

import random

PREFIX_BITS = 32
_LOW_96 = (1 << 96) - 1


def parse_prefix(text: str | None) -> int:
    """The 8-hex-digit trace marker as an int; empty or None is no marker (0)."""
    if not text:
        return 0
    value = int(text, 16)
    if len(text) != PREFIX_BITS // 4 or value == 0:
        raise ValueError(f"trace id prefix must be 8 hex digits, not all zero, got {text!r}")
    return value


def new_prefix(rng: random.Random | None = None) -> str:
    """A fresh random trace marker: 8 hex digits, never all zero."""
    draw = (rng or random.SystemRandom()).getrandbits(PREFIX_BITS) or 1
    return f"{draw:08x}"


class TraceSampler:
    """Makes `traceparent` headers; `rate` of them carry the sampled flag.

    One `randbytes` draw per request gives the random part of the trace id and the span id,
    as hex, joined to the marker as strings: about 1 µs, no integer formatting.
    """

    def __init__(self, rate: float, seed: int | None = None, prefix: int = 0) -> None:
        self.rate = rate
        self.prefix = prefix
        self._random = random.Random(seed)
        self._head = f"00-{prefix:08x}" if prefix else "00-"
        self._id_hex = 24 if prefix else 32  # hex digits of the trace id drawn per request

    def with_prefix(self, prefix: int) -> TraceSampler:
        """A sampler of the same rate whose trace ids start with `prefix` (a fresh stream)."""
        return TraceSampler(self.rate, prefix=prefix)

    def traceparent(self) -> str | None:
        drawn = self.sample()
        return drawn[0] if drawn is not None else None

    def sample(self) -> tuple[str, str | None] | None:
        """(traceparent, trace id when sampled else None), or None when tracing is off."""
        if self.rate <= 0.0:
            return None
        digits = self._random.randbytes(self._id_hex // 2 + 8).hex()
        trace_part, span_id = digits[: self._id_hex], digits[self._id_hex :]
        if span_id == "0000000000000000":  # all-zero ids are invalid (p = 2^-64)
            span_id = "0000000000000001"
        if self._random.random() < self.rate:
            header = self._head + trace_part + "-" + span_id + "-01"
            return header, header[3:35]
        return self._head + trace_part + "-" + span_id + "-00", None
