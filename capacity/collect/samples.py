"""The resource sample record, the source interface, and counter-to-rate bookkeeping.

Every source reads cumulative counters (CPU seconds, throttled seconds) and turns them into
per-interval figures here, so "first sample of a target has no CPU value" and "a counter that
went backwards means the target restarted" are decided in one place for all sources.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal, Protocol, runtime_checkable

from capacity.runfolder.resources import ResourceSample

SourceKind = Literal["process", "container", "host"]
BYTES_PER_MB = 1024 * 1024  # mem_mb is MiB, as `docker stats` prints it


@runtime_checkable
class Source(Protocol):
    """Something that can be sampled: a set of processes, containers, or the host."""

    name: str

    def describe(self) -> str:
        """One line saying what this source watches and how it reads it."""
        ...

    def sample(self) -> list[ResourceSample]:
        """Read every target now; a target that is gone yields no row (a gap), not an error."""
        ...


def bytes_to_mb(value: float | None) -> float | None:
    """Bytes to MiB, passing None through."""
    return None if value is None else value / BYTES_PER_MB


class CounterDeltas:
    """Turns cumulative counters into per-interval deltas, one previous reading per key.

    A counter lower than its previous reading means the thing behind it restarted: the
    delta is unknown (None) and the new reading becomes the baseline.
    """

    def __init__(self) -> None:
        self._previous: dict[Hashable, tuple[float, float]] = {}

    def delta(self, key: Hashable, clock_s: float, value: float) -> tuple[float, float] | None:
        """Return (value increase, clock increase) since the last call for key, or None."""
        previous = self._previous.get(key)
        self._previous[key] = (clock_s, value)
        if previous is None:
            return None
        d_clock = clock_s - previous[0]
        d_value = value - previous[1]
        if d_clock <= 0 or d_value < 0:
            return None
        return d_value, d_clock

    def rate(self, key: Hashable, clock_s: float, value: float) -> float | None:
        """Mean increase per clock second since the previous reading, or None."""
        step = self.delta(key, clock_s, value)
        return None if step is None else step[0] / step[1]

    def increase(self, key: Hashable, clock_s: float, value: float) -> float | None:
        """Increase since the previous reading, or None."""
        step = self.delta(key, clock_s, value)
        return None if step is None else step[0]

    def forget(self, prefix: Hashable) -> None:
        """Drop every key equal to prefix or a tuple starting with it (a target that left)."""
        for key in list(self._previous):
            if key == prefix or (isinstance(key, tuple) and key and key[0] == prefix):
                del self._previous[key]
