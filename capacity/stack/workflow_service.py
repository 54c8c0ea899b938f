"""workflow stand-in: starts Temporal workflows over HTTP and hosts the Temporal worker.

The aiohttp app and `temporalio.worker.Worker` share one asyncio loop in one process, so
the resource collector sees the worker's CPU under the `workflow` service.

The worker takes workflow task slots from `TunableSlots`, which reads the service's knobs
at every reservation: `worker_task_slots` caps the workflow tasks in progress and
`worker_task_delay_ms` makes the worker wait before it takes each one, so a test can make the
workers too few or too slow at run time (`POST /admin/tuning`) and see tasks queue up on the
server (schedule-to-start grows) while starts stay fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import (
    CustomSlotSupplier,
    FixedSizeSlotSupplier,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
    Worker,
    WorkerTuner,
)

from capacity.stack import telemetry
from capacity.stack.activities import ErpActivities
from capacity.stack.httpkit import (
    RUNTIME_KEY,
    ServiceRuntime,
    create_app,
    error_response,
    json_response,
    read_json,
)
from capacity.stack.tuning import Tuning
from capacity.stack.workflows import NAMESPACE, TASK_QUEUE, WORKFLOWS

CONNECT_TIMEOUT_S = 20.0
DEFAULT_TASK_SLOTS = 100  # the SDK's default number of workflow task slots


class TunableSlots(CustomSlotSupplier):
    """Workflow task slots whose number and per-task delay follow the service's knobs."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.used = 0
        self._freed = asyncio.Event()

    def _limit(self) -> int:
        return self.runtime.tuning.worker_task_slots or DEFAULT_TASK_SLOTS

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        while self.used >= self._limit():
            self._freed.clear()
            await self._freed.wait()
        self.used += 1
        delay_ms = self.runtime.tuning.worker_task_delay_ms
        if delay_ms > 0:
            try:
                await asyncio.sleep(delay_ms / 1000.0)
            except asyncio.CancelledError:
                self._release()
                raise
        return SlotPermit()

    def try_reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit | None:
        if self.used >= self._limit() or self.runtime.tuning.worker_task_delay_ms > 0:
            return None
        self.used += 1
        return SlotPermit()

    def mark_slot_used(self, ctx: SlotMarkUsedContext) -> None:
        return None

    def release_slot(self, ctx: SlotReleaseContext) -> None:
        self._release()

    def _release(self) -> None:
        self.used = max(0, self.used - 1)
        self._freed.set()


@dataclass(frozen=True)
class WorkflowSettings:
    """Where the workflow stand-in finds Temporal and the services its activities call."""

    temporal_address: str
    master_data_url: str
    rules_engine_url: str
    namespace: str = NAMESPACE
    task_queue: str = TASK_QUEUE


@dataclass
class _Worker:
    client: Client
    worker: Worker
    task: asyncio.Task
    session: aiohttp.ClientSession


SETTINGS_KEY = web.AppKey("settings", WorkflowSettings)
WORKER_KEY = web.AppKey("worker", _Worker)


async def connect(settings: WorkflowSettings) -> Client:
    """Connect to Temporal, retrying briefly: the server may still be opening its ports."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.namespace,
                interceptors=telemetry.temporal_interceptors(),
            )
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


async def _worker_ctx(app: web.Application) -> AsyncIterator[None]:
    # Failed activities are expected here (injected faults at load-test rates); a traceback
    # per failure would flood the log and cost CPU that the measurement should not see.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    settings = app[SETTINGS_KEY]
    client = await connect(settings)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200),
        timeout=aiohttp.ClientTimeout(total=10),
        trace_configs=telemetry.client_trace_configs(),
    )
    acts = ErpActivities(
        session, settings.master_data_url, settings.rules_engine_url, app[RUNTIME_KEY]
    )
    tuner = WorkerTuner.create_composite(
        workflow_supplier=TunableSlots(app[RUNTIME_KEY]),
        activity_supplier=FixedSizeSlotSupplier(DEFAULT_TASK_SLOTS),
        local_activity_supplier=FixedSizeSlotSupplier(DEFAULT_TASK_SLOTS),
        nexus_supplier=FixedSizeSlotSupplier(DEFAULT_TASK_SLOTS),
    )
    worker = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(WORKFLOWS.values()),
        activities=acts.all(),
        tuner=tuner,
    )
    task = asyncio.create_task(worker.run())
    app[WORKER_KEY] = _Worker(client, worker, task, session)
    yield
    if not task.done():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker.shutdown(), timeout=3.0)
    await session.close()


async def health(request: web.Request) -> web.Response:
    state = request.app.get(WORKER_KEY)
    if state is None or state.task.done():
        return json_response({"status": "fail", "worker": "stopped"}, 503)
    return json_response(
        {"status": "pass", "worker": "running", "taskQueue": request.app[SETTINGS_KEY].task_queue}
    )


async def start_workflow(request: web.Request) -> web.Response:
    wf_type = request.match_info["type"]
    if wf_type not in WORKFLOWS:
        return error_response(
            f"unknown workflow type '{wf_type}' (known: {sorted(WORKFLOWS)})", 404
        )
    body = await read_json(request)
    args = body.get("args", {}) if isinstance(body, dict) else None
    if not isinstance(args, dict):
        return error_response('body must be {"args": {...}, "id": optional}', 400)
    workflow_id = body.get("id") or f"{wf_type}-{uuid.uuid4().hex[:16]}"
    state = request.app[WORKER_KEY]
    try:
        handle = await state.client.start_workflow(
            wf_type, args, id=str(workflow_id), task_queue=request.app[SETTINGS_KEY].task_queue
        )
    except WorkflowAlreadyStartedError:
        return error_response(f"workflow '{workflow_id}' already started", 409)
    return json_response(
        {
            "workflowId": handle.id,
            "runId": handle.result_run_id,
            "type": wf_type,
            "status": "RUNNING",
        },
        202,
    )


async def describe_workflow(request: web.Request) -> web.Response:
    workflow_id = request.match_info["workflow_id"]
    handle = request.app[WORKER_KEY].client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return error_response(f"workflow '{workflow_id}' not found", 404)
        raise
    status = desc.status.name if desc.status is not None else "UNKNOWN"
    body: dict[str, object] = {
        "workflowId": desc.id,
        "runId": desc.run_id,
        "type": desc.workflow_type,
        "status": status,
    }
    if status == "COMPLETED":
        body["result"] = await handle.result()
    return json_response(body)


def build_app(tuning: Tuning, settings: WorkflowSettings) -> web.Application:
    """The workflow aiohttp application; the worker starts with the app and stops with it."""
    app = create_app("workflow", tuning, health=health)
    app[SETTINGS_KEY] = settings
    app.cleanup_ctx.append(_worker_ctx)
    app.router.add_post("/workflows/{type}", start_workflow)
    app.router.add_get("/workflows/{workflow_id}", describe_workflow)
    return app
