"""Temporal saturation signals: schedule-to-start per workflow type, task queue backlog.

A workflow start returns once the server has stored it; how long its first workflow task then
waits for a worker (schedule-to-start: `WorkflowTaskScheduled` to `WorkflowTaskStarted` in
the history, both server timestamps) says whether the workers keep up. It is read from the
first three events of a sample of started workflows, at most `per_s` per type per second (a
token bucket), so the probe's own load stays small at any start rate: one history page of
three events per sample, read after the workflow's result arrived when the driver awaits it
(the first task has run by then), else a second after the start (with the server's long poll
for new events if the first task still waits). The task
queue's backlog comes from `DescribeTaskQueue` with `report_stats` (Temporal Server 1.32
reports approximate backlog count and age), asked every 2 s per task queue; a poll the
server answers without stats is counted but not `reported`.

Both ride in each slice record under `"temporal"` (added on the plugin's `slice_closing`
event), so they reach the run folder, and the master, like latencies do. Everything here runs on the
driver's asyncio loop (`capacity.drivers.asyncio_bridge`), in the hub's thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from capacity.runfolder.histograms import HIGHEST_US, LOWEST_US, encode_histogram, new_histogram

SLICE_FIELD = "temporal"
HISTORY_WAIT_S = 120.0  # the longest a sampled workflow is followed to its first task
# A fire-and-forget sample is read this long after its start: by then the first task has
# usually run, and one history page answers (a long poll otherwise, if it waits in a backlog).
FIRST_LOOK_S = 1.0
BACKLOG_EVERY_S = 2.0


def timestamp_us(ts: Any) -> int:
    """A protobuf Timestamp in microseconds."""
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1000


class SaturationProbe:
    """Samples schedule-to-start per workflow type and backlog per task queue, per process."""

    def __init__(
        self, worker_service: str = "workflow", clock: Callable[[], float] = time.monotonic
    ):
        self.worker_service = worker_service
        self._clock = clock
        self._hists: dict[str, Any] = {}
        self._tokens: dict[str, tuple[float, float]] = {}  # type -> (tokens, last refill)
        self._queues: dict[tuple[str, str], Any] = {}  # (namespace, queue) -> client
        self._backlog: dict[str, dict[str, Any]] = {}
        self._pending: set[asyncio.Task[Any]] = set()
        self._poller: asyncio.Task[Any] | None = None

    # --- schedule-to-start -----------------------------------------------------------------

    def should_sample(self, workflow_type: str, per_s: float) -> bool:
        """Take a token of this type's bucket (refilled at `per_s`, holding at most one second)."""
        if per_s <= 0:
            return False
        now = self._clock()
        tokens, last = self._tokens.get(workflow_type, (1.0, now))
        tokens = min(max(1.0, per_s), tokens + (now - last) * per_s)
        if tokens < 1.0:
            self._tokens[workflow_type] = (tokens, now)
            return False
        self._tokens[workflow_type] = (tokens - 1.0, now)
        return True

    def sample(self, handle: Any, workflow_type: str, *, wait: bool) -> None:
        """Read this workflow's first task wait, on the loop (fire and forget); `wait`: the
        first task may not have run yet, so long-poll the history until it does."""
        task = asyncio.get_running_loop().create_task(self._measure(handle, workflow_type, wait))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _measure(self, handle: Any, workflow_type: str, wait: bool) -> None:
        if wait:
            await asyncio.sleep(FIRST_LOOK_S)
        try:
            latency_us = await asyncio.wait_for(first_task_wait_us(handle, wait), HISTORY_WAIT_S)
        except Exception:  # closed before a task ran, history gone, server busy: no sample
            return
        if latency_us is not None:
            self.record(workflow_type, latency_us)

    def record(self, workflow_type: str, latency_us: int) -> None:
        hist = self._hists.get(workflow_type)
        if hist is None:
            hist = self._hists[workflow_type] = new_histogram()
        hist.record_value(min(max(latency_us, LOWEST_US), HIGHEST_US))

    # --- backlog -----------------------------------------------------------------------------

    def watch_queue(self, client: Any, namespace: str, task_queue: str) -> None:
        """Poll this task queue's backlog once per period from now on (idempotent)."""
        self._queues.setdefault((namespace, task_queue), client)
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll_backlog())

    async def _poll_backlog(self) -> None:
        while True:
            for (namespace, queue), client in list(self._queues.items()):
                try:
                    stats = await describe_backlog(client, namespace, queue)
                except Exception:
                    stats = None
                self._add_backlog(queue, stats)
            await asyncio.sleep(BACKLOG_EVERY_S)

    def _add_backlog(self, queue: str, stats: dict[str, float] | None) -> None:
        entry = self._backlog.setdefault(
            queue,
            {"samples": 0, "reported": 0, "backlog_max": 0, "backlog_sum": 0, "age_max_s": 0.0},
        )
        entry["samples"] += 1
        if stats is None:
            return
        entry["reported"] += 1  # samples the server answered with stats
        entry["backlog_max"] = max(entry["backlog_max"], int(stats["backlog"]))
        entry["backlog_sum"] += int(stats["backlog"])
        entry["age_max_s"] = max(entry["age_max_s"], float(stats["age_s"]))
        entry["add_rate"] = float(stats["add_rate"])
        entry["dispatch_rate"] = float(stats["dispatch_rate"])

    # --- the slice field -----------------------------------------------------------------------

    def on_slice_closing(self, record: dict[str, Any], **_: Any) -> None:
        """`CapacityHooks.slice_closing` listener: this slice's figures under "temporal"."""
        field = self.take()
        if field is not None:
            record[SLICE_FIELD] = field

    def take(self) -> dict[str, Any] | None:
        """What was measured since the last call, for the slice being closed (None: nothing)."""
        hists, self._hists = self._hists, {}
        backlog, self._backlog = self._backlog, {}
        if not hists and not backlog:
            return None
        return {
            "worker_service": self.worker_service,
            "schedule_to_start": {
                name: {"count": int(h.get_total_count()), "hist": encode_histogram(h)}
                for name, h in hists.items()
            },
            "task_queues": backlog,
        }


async def first_task_wait_us(handle: Any, wait: bool) -> int | None:
    """Schedule-to-start of the workflow's first task in microseconds (None: none ran).

    The first task's scheduled and started events are the history's second and third.
    """
    from temporalio.api.enums.v1 import EventType

    scheduled_us = None
    async for event in handle.fetch_history_events(page_size=3, wait_new_event=wait):
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED and scheduled_us is None:
            scheduled_us = timestamp_us(event.event_time)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and scheduled_us is not None:
            return max(0, timestamp_us(event.event_time) - scheduled_us)
        elif kind in _CLOSED:
            return None
    return None


async def describe_backlog(client: Any, namespace: str, task_queue: str) -> dict[str, float] | None:
    """Backlog of the workflow task queue as the server reports it, or None if it does not."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            report_stats=True,
        )
    )
    if not response.HasField("stats"):
        return None
    stats = response.stats
    age = stats.approximate_backlog_age
    return {
        "backlog": float(stats.approximate_backlog_count),
        "age_s": age.seconds + age.nanos / 1e9,
        "add_rate": float(stats.tasks_add_rate),
        "dispatch_rate": float(stats.tasks_dispatch_rate),
    }


def _closed_event_types() -> frozenset[int]:
    from temporalio.api.enums.v1 import EventType

    return frozenset(
        {
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
        }
    )


_CLOSED = _closed_event_types()
