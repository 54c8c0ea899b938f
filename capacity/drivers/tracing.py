"""W3C trace context for load traffic, so it shows up in the stack's tracing pipeline."""

from __future__ import annotations

import random


class TraceSampler:
    """Makes `traceparent` headers; `rate` of them carry the sampled flag."""

    def __init__(self, rate: float, seed: int | None = None) -> None:
        self.rate = rate
        self._random = random.Random(seed)

    def traceparent(self) -> str | None:
        if self.rate <= 0.0:
            return None
        bits = self._random.getrandbits(192)
        trace_id = bits >> 64 or 1
        span_id = bits & 0xFFFFFFFFFFFFFFFF or 1
        sampled = "01" if self._random.random() < self.rate else "00"
        return f"00-{trace_id:032x}-{span_id:016x}-{sampled}"
