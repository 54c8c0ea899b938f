"""The 1 Hz sampler: reads every source on a fixed schedule and appends rows to resources.csv.

Ticks are placed at start + k * interval on the monotonic clock, so a slow tick delays only
itself and never shifts later ones (no drift); a tick that is missed entirely is skipped
rather than run late in a burst. A source that raises is reported once and sampled again at
the next tick: one broken source must not stop the others.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from capacity.collect.samples import ResourceSample, Source
from capacity.runfolder.resources import ResourceWriter

log = logging.getLogger("capacity.collect")


def _log_warning(message: str) -> None:
    log.warning("%s", message)


def _drain(source: object, attr: str) -> list[str]:
    items = getattr(source, attr, None)
    if not isinstance(items, list) or not items:
        return []
    taken = list(items)
    items.clear()
    return taken


# Warnings that lose no data: a fallback to another way of reading, a daemon back, nothing
# matched yet (an SLO on an unsampled service is inconclusive on its own).
BENIGN_WARNINGS = (
    "cgroup files not readable",
    "docker daemon reachable again",
    "no container matches",
)


class Sampler:
    """Samples sources in a background thread and writes each tick's rows as they come."""

    def __init__(
        self,
        sources: Sequence[Source],
        out_path: Path,
        interval_s: float = 1.0,
        on_warning: Callable[[str], None] | None = None,
        host: str | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.sources = list(sources)
        self.out_path = Path(out_path)
        self.interval_s = interval_s
        self.on_warning = on_warning or _log_warning
        self.host = host
        self.ticks = 0
        self.ticks_skipped = 0
        self.busy_s = 0.0  # wall time spent sampling and writing, summed over ticks
        self.last_samples: list[ResourceSample] = []
        self._writer: ResourceWriter | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._warned: set[str] = set()
        self.problems: list[str] = []  # warnings that mean data is missing or a target died
        # Targets seen to die (or stop) and come back: (target, from_s, to_s or None).
        self.outages: list[tuple[str, float, float | None]] = []

    @property
    def samples_written(self) -> int:
        return self._writer.rows_written if self._writer else 0

    def warn(self, message: str) -> None:
        """Pass a warning on once; repeats of the same text are dropped."""
        if message in self._warned:
            return
        self._warned.add(message)
        if not message.startswith(BENIGN_WARNINGS):
            self.problems.append(message)
        try:
            self.on_warning(message)
        except Exception:  # a broken callback must not kill sampling
            log.exception("on_warning callback failed")

    def start(self) -> Sampler:
        """Open the output file (header written at once) and start ticking."""
        if self._thread is not None:
            raise RuntimeError("Sampler already started")
        self._writer = ResourceWriter(self.out_path, host=self.host)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="capacity-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop after the tick in progress, flush and close; returns rows written in total."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for source in self.sources:
            close = getattr(source, "close", None)
            if callable(close):
                close()
        if self._writer is not None:
            self._writer.close()
            if self._writer.error:
                self.warn(self._writer.error)
        return self.samples_written

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def tick(self) -> list[ResourceSample]:
        """Sample every source once and write the rows; used by the thread, and by tests."""
        started = time.perf_counter()
        samples: list[ResourceSample] = []
        for source in self.sources:
            try:
                samples.extend(source.sample())
            except Exception as exc:
                self.warn(f"{source.name} source failed: {type(exc).__name__}: {exc}")
            take = getattr(source, "take_warnings", None)
            if callable(take):
                for message in take():
                    self.warn(message)
        self._note_outages()
        if self._writer is not None:
            try:
                self._writer.write(samples)
            except OSError as exc:
                self.warn(f"cannot append to {self.out_path}: {exc}")
        self.last_samples = samples
        self.ticks += 1
        self.busy_s += time.perf_counter() - started
        return samples

    def _note_outages(self) -> None:
        """Open an outage when a source reports a target gone, close it when it is back."""
        now = time.time()
        for source in self.sources:
            for target in _drain(source, "gone"):
                self.outages.append((target, now, None))
            for target in _drain(source, "returned"):
                for i in range(len(self.outages) - 1, -1, -1):
                    name, start, end = self.outages[i]
                    if name == target and end is None:
                        self.outages[i] = (name, start, now)
                        break

    def _run(self) -> None:
        origin = time.monotonic()
        index = 0
        while not self._stop.is_set():
            self.tick()
            elapsed = time.monotonic() - origin
            due = math.floor(elapsed / self.interval_s) + 1
            if due > index + 1:
                self.ticks_skipped += due - index - 1
            index = max(index + 1, due)
            self._stop.wait(max(0.0, origin + index * self.interval_s - time.monotonic()))
