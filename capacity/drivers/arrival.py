"""Open-model load: an arrival-rate executor feeding iterations to a bounded pool of users.

A closed model (each user waits for its response before the next request) slows down with
the system under test, so a stall delays the requests that would have been sent during it
and they never show up as slow: coordinated omission. Here one scheduler greenlet per Locust
process computes every iteration's intended start from the scenario's `[[load.arrival]]`
stages and queues it for the user class it picks (by weight). Pool users take iterations off
their class's queue; the request's context carries the intended start, so the recorder keeps
both the latency from the actual send and the latency from the intended start.

An iteration that starts more than `late_after_s` after its intended time is late; one still
waiting `drop_after_s` after it is dropped (never sent) and counted. The counters go into
every slice record as `"arrival"` (see docs/ARCHITECTURE.md).

In a distributed run each process takes every `count`-th iteration starting at `index`, so the
processes together send the scenario's rate: the split comes from the `--arrival-split
index/count` option (`capacity run --workers N` sets it) or, on a Locust worker, from its
worker index and `--arrival-workers N`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import gevent
from gevent.queue import Empty, Queue

from capacity.errors import ConfigError
from capacity.recorder import INTENDED_START_KEY
from capacity.scenario import ArrivalStage

log = logging.getLogger("capacity")

LATE_AFTER_S = 0.01
DROP_AFTER_S = 1.0
MAX_SCHEDULER_SLEEP_S = 0.05
SLICE_FIELD = "arrival"


def stage_rates(stages: Sequence[ArrivalStage]) -> list[tuple[float, float, float]]:
    """(start rate, end rate, duration) per stage; a ramp starts at the previous stage's rate."""
    out: list[tuple[float, float, float]] = []
    previous = 0.0
    for stage in stages:
        start = previous if stage.ramp else stage.rate_per_s
        out.append((start, stage.rate_per_s, stage.duration_s))
        previous = stage.rate_per_s
    return out


def _time_of_arrival(n: float, r0: float, r1: float, duration_s: float) -> float:
    """Time into a stage at which its cumulative arrivals reach `n` (rate linear r0 -> r1)."""
    slope = (r1 - r0) / duration_s
    if abs(slope) < 1e-12:
        return n / r0
    # r0 t + slope t^2 / 2 = n, in the form that stays accurate when slope is tiny
    return 2.0 * n / (r0 + math.sqrt(max(0.0, r0 * r0 + 2.0 * slope * n)))


def intended_offsets_s(
    stages: Sequence[ArrivalStage], index: int = 0, count: int = 1
) -> Iterator[float]:
    """Intended start offsets (s from the schedule's start) of the iterations of process
    `index` of `count`.

    Global iteration k starts when the cumulative arrivals reach k + 0.5, so a stage of
    rate r and duration d holds exactly r * d iterations and none sits on a stage boundary.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"split {index}/{count}: expected 0 <= index < count")
    k = 0
    stage_start_s = 0.0
    arrivals_before = 0.0
    for r0, r1, duration_s in stage_rates(stages):
        total = (r0 + r1) / 2.0 * duration_s
        while k + 0.5 < arrivals_before + total:
            if k % count == index:
                n = k + 0.5 - arrivals_before
                yield stage_start_s + min(duration_s, _time_of_arrival(n, r0, r1, duration_s))
            k += 1
        stage_start_s += duration_s
        arrivals_before += total


def expected_iterations(stages: Sequence[ArrivalStage]) -> float:
    return sum((r0 + r1) / 2.0 * d for r0, r1, d in stage_rates(stages))


@dataclass
class ArrivalCounts:
    """Iterations scheduled, started, started late and dropped (never started)."""

    scheduled: int = 0
    started: int = 0
    late: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "scheduled": self.scheduled,
            "started": self.started,
            "late": self.late,
            "dropped": self.dropped,
        }


def arrival_split(
    split: str | None, worker_index: int | None, workers: int | None
) -> tuple[int, int]:
    """(index, count) of this process's share of the arrivals; (0, 1) for a single process."""
    if split:
        index_text, _, count_text = split.partition("/")
        try:
            index, count = int(index_text), int(count_text)
        except ValueError:
            raise ConfigError(f"--arrival-split: expected 'index/count', got '{split}'") from None
        if count < 1 or not 0 <= index < count:
            raise ConfigError(f"--arrival-split: expected 0 <= index < count, got '{split}'")
        return index, count
    if worker_index is None:
        return 0, 1
    if not workers:
        log.warning(
            "arrival-rate load on a Locust worker without --arrival-workers: this worker sends "
            "the whole rate"
        )
        return 0, 1
    if workers < 1:
        raise ConfigError(f"--arrival-workers: must be >= 1, got {workers}")
    return worker_index % workers, workers


def split_of(environment: Any) -> tuple[int, int]:
    """This process's share, from its Locust options and worker index."""
    options = getattr(environment, "parsed_options", None)
    return arrival_split(
        getattr(options, "arrival_split", None),
        _worker_index(environment),
        getattr(options, "arrival_workers", None),
    )


class ArrivalExecutor:
    """Schedules iterations at their intended start times and hands them to pool users.

    One per Locust process. `start` is idempotent and is called by the first pool user, so
    the schedule begins when the pool does; `stop` ends the schedule (Locust's test_stop).
    """

    def __init__(
        self,
        stages: Sequence[ArrivalStage],
        class_weights: Mapping[str, int],
        *,
        late_after_s: float = LATE_AFTER_S,
        drop_after_s: float = DROP_AFTER_S,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        weights = {name: w for name, w in class_weights.items() if w > 0}
        if not weights:
            raise ConfigError("arrival-rate load needs at least one user class with weight > 0")
        self.stages = tuple(stages)
        self.class_names = list(weights)
        self._cum_weights = list(accumulate(weights.values()))
        self.late_after_s = late_after_s
        self.drop_after_s = drop_after_s
        self._clock = clock
        self._random = random.Random(seed)
        self._queues: dict[str, Queue] = {name: Queue() for name in self.class_names}
        self._since_slice = ArrivalCounts()
        self.totals = ArrivalCounts()
        self._scheduler: gevent.Greenlet | None = None
        self.attached_to: Any = None  # the Locust environment whose events it listens to
        self.split = (0, 1)

    @property
    def running(self) -> bool:
        return self._scheduler is not None and not self._scheduler.dead

    def start(self, split: tuple[int, int] = (0, 1)) -> None:
        if self.running:
            return
        self.split = split
        self._since_slice = ArrivalCounts()
        self.totals = ArrivalCounts()
        for queue in self._queues.values():
            while not queue.empty():
                queue.get_nowait()
        self._scheduler = gevent.spawn(self._schedule, self._clock())

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.kill(block=False)
            self._scheduler = None

    def join(self, timeout_s: float | None = None) -> None:
        """Wait until every iteration has been scheduled (tests and benchmarks)."""
        if self._scheduler is not None:
            self._scheduler.join(timeout=timeout_s)

    def _count(self, attr: str) -> None:
        setattr(self._since_slice, attr, getattr(self._since_slice, attr) + 1)
        setattr(self.totals, attr, getattr(self.totals, attr) + 1)

    def _schedule(self, start_s: float) -> None:
        """Queue each iteration at its intended time; catch up (keeping intended times) if late."""
        index, count = self.split
        choices = self.class_names
        cum = self._cum_weights
        for offset_s in intended_offsets_s(self.stages, index, count):
            intended_s = start_s + offset_s
            while True:
                wait_s = intended_s - self._clock()
                if wait_s <= 0:
                    break
                self._drop_expired()
                gevent.sleep(min(wait_s, MAX_SCHEDULER_SLEEP_S))
            name = (
                choices[0]
                if len(choices) == 1
                else self._random.choices(choices, cum_weights=cum)[0]
            )
            self._queues[name].put(intended_s)
            self._count("scheduled")
        # let the pool drain what is queued, dropping what can no longer start on time
        while any(not q.empty() for q in self._queues.values()):
            self._drop_expired()
            gevent.sleep(MAX_SCHEDULER_SLEEP_S)

    def _drop_expired(self) -> None:
        """Drop queued iterations already `drop_after_s` late (no user was free for them)."""
        deadline_s = self._clock() - self.drop_after_s
        for queue in self._queues.values():
            while not queue.empty() and queue.peek_nowait() < deadline_s:
                queue.get_nowait()
                self._count("dropped")

    def take(self, class_name: str, timeout_s: float | None = None) -> float | None:
        """Block until an iteration for `class_name` is due; its intended start (Unix s).

        None on timeout. An iteration found already too late is dropped and the next taken.
        """
        queue = self._queues[class_name]
        while True:
            try:
                intended_s = queue.get(timeout=timeout_s)
            except Empty:
                return None
            late_s = self._clock() - intended_s
            if late_s > self.drop_after_s:
                self._count("dropped")
                continue
            self._count("started")
            if late_s > self.late_after_s:
                self._count("late")
            return float(intended_s)

    def take_counts(self) -> dict[str, int] | None:
        """Counters since the previous call (a slice field); None before the schedule ran."""
        if self._scheduler is None and not self._since_slice.scheduled:
            return None
        counts, self._since_slice = self._since_slice, ArrivalCounts()
        return counts.as_dict()


def make_arrival_user(
    base: type, executor: ArrivalExecutor, class_name: str, hooks: Any = None
) -> type:
    """A subclass of `base` whose one task runs `base`'s task once per scheduled iteration."""
    from locust import constant

    tasks = list(getattr(base, "tasks", []))
    if len(tasks) != 1 or not callable(tasks[0]):
        raise ConfigError(f"{base.__name__}: an arrival-rate user needs exactly one task function")
    body: Callable[[Any], None] = tasks[0]
    base_context: Callable[[Any], dict[str, Any]] = base.context  # type: ignore[attr-defined]

    def iteration(self: Any) -> None:
        if not executor.running:
            executor.start(split_of(self.environment))
            _attach(executor, self.environment, hooks)
        intended_s = executor.take(class_name, timeout_s=1.0)
        if intended_s is None:
            return
        self._capacity_intended_s = intended_s
        try:
            body(self)
        finally:
            self._capacity_intended_s = None

    def context(self: Any) -> dict[str, Any]:
        ctx: dict[str, Any] = base_context(self)
        intended_s = getattr(self, "_capacity_intended_s", None)
        if intended_s is None:
            return ctx
        return {**ctx, INTENDED_START_KEY: intended_s}

    cls: Any = type(
        base.__name__,
        (base,),
        {
            "wait_time": constant(0),
            "context": context,
            "arrival_executor": executor,
            "abstract": False,
        },
    )
    cls.tasks = [iteration]  # after creation: Locust's metaclass would add the base's tasks
    return cls


def _worker_index(environment: Any) -> int | None:
    from locust.runners import WorkerRunner

    runner = getattr(environment, "runner", None)
    return runner.worker_index if isinstance(runner, WorkerRunner) else None


def _attach(executor: ArrivalExecutor, environment: Any, hooks: Any) -> None:
    """Stop the schedule with the test and put the counters into the plugin's slices."""
    if getattr(executor, "attached_to", None) is environment:
        return
    executor.attached_to = environment
    environment.events.test_stop.add_listener(lambda **_: executor.stop())
    if hooks is not None:

        def add_counts(record: dict[str, Any], **_: Any) -> None:
            counts = executor.take_counts()
            if counts is not None:
                record[SLICE_FIELD] = counts

        hooks.slice_closing.add_listener(add_counts)
