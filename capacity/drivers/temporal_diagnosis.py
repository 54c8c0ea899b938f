"""Why Temporal workflows make no progress, asked once per task queue and type.

A workflow not closed within `UNSERVED_CHECK_S` is either waiting behind a backlog (load,
which the run should report as latency) or not served at all (no worker polls its task queue,
or the worker does not know the type). Telling them apart costs a history fetch, so a type
seen served recently is not diagnosed, and workflows of one type stuck at once share one
diagnosis per period. Everything here runs on the asyncio bridge's loop, without Locust.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

UNSERVED_CHECK_S = 5.0
# (task queue, workflow type) -> monotonic time it was last seen served (a workflow completed,
# or a diagnosis found one progressing).
_last_served_s: dict[tuple[str, str], float] = {}
# (task queue, workflow type) -> the diagnosis in flight or made in the last check period, so
# a thousand stuck workflows of one type cost one history fetch, not a thousand.
_diagnoses: dict[tuple[str, str], asyncio.Future[str | None]] = {}


def mark_served(key: tuple[str, str]) -> None:
    _last_served_s[key] = time.monotonic()


def served_recently(key: tuple[str, str]) -> bool:
    """Whether this workflow type was seen served on its task queue in the last check period."""
    seen_s = _last_served_s.get(key)
    return seen_s is not None and time.monotonic() - seen_s < UNSERVED_CHECK_S


async def shared_diagnosis(
    key: tuple[str, str], diagnose: Callable[[], Awaitable[str | None]]
) -> str | None:
    """One diagnosis per (task queue, type) per check period, its verdict shared by all.

    Workflows of one type stuck at once share a cause (no poller, a worker without the type),
    and fetching each one's history under load is itself load on the server.
    """
    shared = _diagnoses.get(key)
    if shared is None:
        shared = _diagnoses[key] = asyncio.ensure_future(diagnose())
        loop = asyncio.get_running_loop()

        def forget(done: asyncio.Future[str | None]) -> None:
            def drop() -> None:
                if _diagnoses.get(key) is done:
                    del _diagnoses[key]

            loop.call_later(UNSERVED_CHECK_S, drop)

        shared.add_done_callback(forget)
    return await asyncio.shield(shared)


async def diagnose_stuck(
    client: Any, handle: Any, namespace: str, task_queue: str, workflow_type: str
) -> str | None:
    """Why a workflow makes no progress; None if it progresses or merely waits in a backlog.

    A worker that does not know the type leaves WorkflowTaskFailed events in the history. A
    workflow whose first task never started is unserved only if no worker polls the task
    queue at all; with pollers present it is waiting behind a backlog, which is load, not a
    fault, and its latency is what the run should report.
    """
    from temporalio.api.enums.v1 import EventType

    task_started = False
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failure = event.workflow_task_failed_event_attributes.failure
            detail = failure.message.splitlines()[0] if failure.message else "task failed"
            return f"workflow type {workflow_type} not served on task queue {task_queue}: {detail}"
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            task_started = True
    if task_started or await has_pollers(client, namespace, task_queue):
        return None
    return f"no worker polls task queue {task_queue} (workflow type {workflow_type})"


async def has_pollers(client: Any, namespace: str, task_queue: str) -> bool:
    """Whether any worker polled the workflow task queue recently (server's own view)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(response.pollers) > 0
