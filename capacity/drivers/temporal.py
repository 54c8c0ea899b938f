"""Temporal driver: workflow starts through one shared temporalio Client per process.

`workflow start <Type>` is the start call's latency; `workflow complete <Type>` is start to
close as the client sees it. A greenlet waits only for the start; completions are tracked by
tasks on the asyncio loop and reported back into the hub, so thousands of running workflows
cost no greenlets. A workflow that makes no progress is diagnosed from its history (no worker
polling the task queue, or a worker that does not know the type) and reported as such.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from itertools import accumulate
from typing import Any

import gevent
from gevent import GreenletExit
from locust import User, between, events, task

from capacity.drivers.asyncio_bridge import AsyncioBridge, get_bridge
from capacity.drivers.temporal_diagnosis import (
    UNSERVED_CHECK_S,
    diagnose_stuck,
    mark_served,
    served_recently,
    shared_diagnosis,
)
from capacity.drivers.variables import PoolCursor, compile_variables
from capacity.scenario import UserClass

REQUEST_TYPE = "temporal"


class InFlight:
    """Workflows started and not yet reported complete, counted in the hub's thread."""

    count = 0
    longest_timeout_s = 0.0

    @classmethod
    def drain(cls) -> None:
        """Wait (cooperatively) until every started workflow has reported its completion."""
        deadline = time.monotonic() + cls.longest_timeout_s + 10.0
        while cls.count > 0 and time.monotonic() < deadline:
            gevent.sleep(0.05)


def _install_hooks(hooks: Any) -> None:
    """Drain completions before the last slice; leave without finalizing after temporalio."""
    if hooks is not None:
        hooks.before_final_slice.add_listener(InFlight.drain)
    if _exit_without_finalizing not in events.quit._handlers:
        events.quit.add_listener(_exit_without_finalizing)


def _exit_without_finalizing(exit_code: int, **_: Any) -> None:
    """Leave the process before interpreter finalization once temporalio has run.

    temporalio's Rust runtime threads can call into a finalizing interpreter and crash it
    (SIGSEGV in PyGILState_Release, seen in about one run in three), turning a clean run's
    exit code into -11. Everything is written and flushed by the time `quit` fires.
    """
    if not _holders:
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


@dataclass(frozen=True)
class CompiledWorkflow:
    workflow_type: str
    args: Callable[[], dict[str, Any]]
    weight: int


class ClientHolder:
    """Connects the process's temporalio Client once, on the bridge's loop."""

    def __init__(self, address: str, namespace: str) -> None:
        self.address = address
        self.namespace = namespace
        self._client: Any = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> Any:
        if self._client is not None:
            return self._client
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                from temporalio.client import Client

                self._client = await Client.connect(self.address, namespace=self.namespace)
        return self._client


_holders: dict[tuple[str, str], ClientHolder] = {}


def client_holder(address: str, namespace: str) -> ClientHolder:
    key = (address, namespace)
    if key not in _holders:
        _holders[key] = ClientHolder(address, namespace)
    return _holders[key]


def failure_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc.__cause__
    text = str(cause or exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


def make_workflow_user(
    spec: UserClass,
    address: str,
    namespace: str,
    task_queue: str,
    cursors: Mapping[str, PoolCursor],
    name: str = "WorkflowUser",
    hooks: Any = None,
) -> type:
    _install_hooks(hooks)
    flows = [
        CompiledWorkflow(w.workflow_type, compile_variables(w.args, cursors), w.weight)
        for w in spec.workflows
    ]
    return type(
        name,
        (WorkflowUser,),
        {
            "weight": spec.weight,
            "wait_time": between(*spec.wait_s),
            "flows": flows,
            "cum_weights": list(accumulate(f.weight for f in flows)),
            "address": address,
            "namespace": namespace,
            "task_queue": task_queue,
            "timeout_s": spec.timeout_s,
            "abstract": False,
        },
    )


class WorkflowUser(User):
    abstract = True
    flows: list[CompiledWorkflow] = []
    cum_weights: list[int] = []
    address = "127.0.0.1:7233"
    namespace = "vextrus"
    task_queue = "vextrus-erp"
    timeout_s = 30.0

    def on_start(self) -> None:
        self._bridge: AsyncioBridge = get_bridge()
        self._holder = client_holder(self.address, self.namespace)

    def _fire(
        self,
        name: str,
        start_time: float,
        elapsed_ms: float,
        exc: Any = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=elapsed_ms,
            response_length=0,
            exception=exc,
            context=context if context is not None else {},
            start_time=start_time,
            url=None,
        )

    @task
    def start_workflow(self) -> None:
        flow = random.choices(self.flows, cum_weights=self.cum_weights)[0]
        args = flow.args()
        workflow_id = f"load-{flow.workflow_type}-{uuid.uuid4().hex[:16]}"
        holder, task_queue, timeout_s = self._holder, self.task_queue, self.timeout_s

        async def start() -> Any:
            client = await holder.get()
            return await client.start_workflow(
                flow.workflow_type,
                args,
                id=workflow_id,
                task_queue=task_queue,
                execution_timeout=timedelta(seconds=timeout_s),
            )

        ctx = self.context()  # carries the intended start under an arrival-rate profile
        start_time = time.time()
        t0 = time.perf_counter()
        try:
            handle = self._bridge.submit(start).get(timeout=timeout_s)
        except GreenletExit:
            raise  # the user is being stopped: not a failure of the stack
        except BaseException as exc:  # gevent.Timeout is a BaseException
            self._fire(
                f"workflow start {flow.workflow_type}",
                start_time,
                (time.perf_counter() - t0) * 1000.0,
                exc=failure_text(exc),
                context=ctx,
            )
            if isinstance(exc, KeyboardInterrupt):
                raise
            return
        self._fire(
            f"workflow start {flow.workflow_type}",
            start_time,
            (time.perf_counter() - t0) * 1000.0,
            context=ctx,
        )
        InFlight.count += 1
        InFlight.longest_timeout_s = max(InFlight.longest_timeout_s, timeout_s)
        self._bridge.spawn(lambda: self._track(handle, flow.workflow_type, start_time, t0, ctx))

    async def _track(
        self, handle: Any, workflow_type: str, start_time: float, t0: float, ctx: dict[str, Any]
    ) -> None:
        """On the loop: wait for the result, diagnose a stuck workflow, report to the hub."""
        name = f"workflow complete {workflow_type}"
        result = asyncio.ensure_future(handle.result())
        error: str | None = None
        try:
            done, _ = await asyncio.wait({result}, timeout=min(UNSERVED_CHECK_S, self.timeout_s))
            served_key = (self.task_queue, workflow_type)
            if not done and served_recently(served_key):
                # A backlog, not an unserved type: diagnosing every slow workflow would fetch
                # each one's history, the very load that made them slow (halved starts/s).
                await asyncio.wait_for(result, timeout=self.timeout_s + 5.0)
            elif not done:
                problem = await shared_diagnosis(
                    served_key,
                    lambda: self._diagnose(handle, workflow_type),
                )
                if problem is not None:
                    result.cancel()
                    error = problem
                    await _terminate(handle, problem)
                else:
                    mark_served(served_key)
                    await asyncio.wait_for(result, timeout=self.timeout_s + 5.0)
            if error is None:
                result.result()
                mark_served(served_key)
        except asyncio.CancelledError:
            error = error or "cancelled"
        except BaseException as exc:
            error = error or failure_text(exc)
        elapsed_ms = (time.perf_counter() - t0) * 1000.0
        self._bridge.to_hub(self._completed, name, start_time, elapsed_ms, error, ctx)

    async def _diagnose(self, handle: Any, workflow_type: str) -> str | None:
        client = await self._holder.get()
        return await diagnose_stuck(client, handle, self.namespace, self.task_queue, workflow_type)

    def _completed(
        self,
        name: str,
        start_time: float,
        elapsed_ms: float,
        error: str | None,
        ctx: dict[str, Any],
    ) -> None:
        InFlight.count -= 1
        self._fire(name, start_time, elapsed_ms, error, context=ctx)


async def _terminate(handle: Any, reason: str) -> None:
    try:
        await handle.terminate(reason=reason[:200])
    except Exception:  # already closed: nothing to clean up
        return
