"""Temporal driver: workflows started, signalled, queried, updated through one client per process.

`workflow start <Type>` is the start call's latency; `workflow complete <Type>` is start to
close as the client sees it (unless the workflow is fire-and-forget, `wait_result = false`);
`workflow signal|query|update <Type> <handler>` are calls to a started workflow, each its
own operation, query and update results checked by the scenario's assertions. A greenlet
waits only for its own calls; a workflow's result is awaited by the same task on the asyncio
loop that started it (`capacity.drivers.asyncio_bridge`, in the hub's thread), which reports
the completion, so thousands of running workflows cost no greenlets. Once a second a
watchdog looks at workflows older than `UNSERVED_CHECK_S`: one not served (no worker polls
its task queue, or the worker does not know the type) is diagnosed from its history and
reported as such. A sample of starts is followed to its first task for the saturation
signals (`capacity.drivers.temporal_signals`).

Measured against a bare asyncio temporalio script side by side
(`benchmarks/bench_temporal_driver.py`): what is left per start beyond temporalio's own work
is Locust's task loop, the two `request` events and one greenlet switch each way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from itertools import accumulate
from typing import Any

import gevent
from gevent import GreenletExit
from gevent.event import AsyncResult
from locust import User, between, events, task

from capacity.drivers.asyncio_bridge import AsyncioBridge, get_bridge
from capacity.drivers.templates import Rows
from capacity.drivers.temporal_diagnosis import (
    UNSERVED_CHECK_S,
    diagnose_stuck,
    mark_served,
    served_recently,
    shared_diagnosis,
)
from capacity.drivers.temporal_flows import CompiledCall, CompiledWorkflow, compile_workflow
from capacity.drivers.temporal_signals import SaturationProbe
from capacity.drivers.variables import PoolCursor
from capacity.jsonpointer import MISSING, resolve
from capacity.scenario import UserClass

REQUEST_TYPE = "temporal"
WATCH_EVERY_S = 1.0
RESULT_GRACE_S = 10.0  # beyond its execution timeout, how long a result is awaited

Fire = Callable[[str, float, float, Any, dict[str, Any]], None]
"""(operation, start time, elapsed ms, failure or None, context): one `request` event."""


class InFlight:
    """Workflows started and not yet reported complete, counted in the hub's thread."""

    count = 0
    longest_timeout_s = 0.0

    @classmethod
    def drain(cls) -> None:
        """Wait (cooperatively) until every started workflow has reported its completion."""
        deadline = time.monotonic() + cls.longest_timeout_s + RESULT_GRACE_S + 5.0
        while cls.count > 0 and time.monotonic() < deadline:
            gevent.sleep(0.05)


_probe: SaturationProbe | None = None
_hooked: set[int] = set()


def install_hooks(hooks: Any, worker_service: str = "workflow") -> None:
    """Take part in the run's slices (`capacity.locust_plugin.CapacityHooks`): drain
    completions before the last one, add the saturation probe's figures to each; and leave
    without finalizing once temporalio has run. Once per hooks object."""
    global _probe
    if _probe is None:
        _probe = SaturationProbe(worker_service)
    if hooks is not None and id(hooks) not in _hooked:
        _hooked.add(id(hooks))
        hooks.before_final_slice.add_listener(InFlight.drain)
        hooks.slice_closing.add_listener(_probe.on_slice_closing)
    if _exit_without_finalizing not in events.quit._handlers:
        events.quit.add_listener(_exit_without_finalizing)


def _exit_without_finalizing(exit_code: int, **_: Any) -> None:
    """Leave the process before interpreter finalization once temporalio has run.

    temporalio's Rust runtime threads can call into a finalizing interpreter and crash it
    (SIGSEGV in PyGILState_Release, seen in about one run in three), turning a clean run's
    exit code into -11. Everything is written and flushed by the time `quit` fires.
    """
    if not _sessions:
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


def failure_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc.__cause__
    text = str(cause or exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


# --- one process's way to Temporal ---------------------------------------------------------


class ClientHolder:
    """Connects the process's temporalio Client once, on the bridge's loop."""

    def __init__(self, address: str, namespace: str) -> None:
        self.address = address
        self.namespace = namespace
        self._client: Any = None
        self._lock: asyncio.Lock | None = None

    async def get(self, timeout_s: float = 30.0) -> Any:
        if self._client is not None:
            return self._client
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                from temporalio.client import Client

                connect = Client.connect(self.address, namespace=self.namespace)
                self._client = await asyncio.wait_for(connect, timeout_s)
        return self._client


class _Tracked:
    """A workflow whose result is being awaited by the task that started it."""

    __slots__ = ("handle", "key", "task", "started_s", "timeout_s", "checked", "error", "abandoned")

    def __init__(self, handle: Any, key: tuple[str, str], task: Any, timeout_s: float) -> None:
        self.handle = handle
        self.key = key
        self.task = task
        self.started_s = time.monotonic()
        self.timeout_s = timeout_s
        self.checked = False
        self.error: str | None = None
        self.abandoned = False  # its user was stopped before sending its calls


class TemporalSession:
    """The bridge, the client, the in-flight workflows and the watchdog of one process."""

    def __init__(
        self, address: str, namespace: str, probe: SaturationProbe, bridge: AsyncioBridge
    ) -> None:
        self.bridge = bridge
        self.holder = ClientHolder(address, namespace)
        self.namespace = namespace
        self.probe = probe
        self._tracked: dict[int, _Tracked] = {}  # in start order: oldest first
        self._watchdog: asyncio.Task[Any] | None = None

    # From a greenlet -----------------------------------------------------------------------

    def start(
        self,
        fire: Fire,
        flow: CompiledWorkflow,
        rows: Rows,
        ctx: dict[str, Any],
        *,
        hold_result: bool = False,
    ) -> tuple[Any, AsyncResult | None]:
        """Start one workflow and report the start; (handle or None, the result's AsyncResult
        when `hold_result`: it receives (failure or None, result))."""
        workflow_id = (
            flow.workflow_id(rows)
            if flow.workflow_id is not None
            else f"load-{flow.workflow_type}-{random.getrandbits(64):016x}"
        )
        kwargs = flow.options
        if flow.memo is not None or flow.search_attributes is not None:
            kwargs = dict(kwargs)
            if flow.memo is not None:
                kwargs["memo"] = flow.memo(rows)
            if flow.search_attributes is not None:
                kwargs["search_attributes"] = flow.search_attributes(rows)
        started: AsyncResult = AsyncResult()
        done: AsyncResult | None = AsyncResult() if hold_result and flow.wait_result else None
        start_time = time.time()
        t0 = time.perf_counter()
        args = flow.args(rows)
        stopped = [False]  # the user was stopped while the start was on its way
        self.bridge.spawn(
            lambda: self._run(
                fire, flow, args, workflow_id, kwargs, started, done, ctx, start_time, t0, stopped
            )
        )
        try:
            handle = started.get()
        except GreenletExit:  # the user is being stopped: not a failure of the stack
            stopped[0] = True
            if flow.calls and started.ready() and started.successful():
                self.abandon(started.value)
            raise
        except BaseException as exc:
            fire(
                flow.start_name,
                start_time,
                (time.perf_counter() - t0) * 1000.0,
                failure_text(exc),
                ctx,
            )
            if isinstance(exc, KeyboardInterrupt):
                raise
            return None, None
        fire(flow.start_name, start_time, (time.perf_counter() - t0) * 1000.0, None, ctx)
        return handle, done

    def call(
        self,
        fire: Fire,
        call: CompiledCall,
        handle: Any,
        rows: Rows,
        ctx: dict[str, Any],
        timeout_s: float,
    ) -> str | None:
        """One signal, query or update, reported as its own operation; the failure or None."""
        if call.pause_s > 0:
            gevent.sleep(call.pause_s)
        args = call.args(rows)
        rpc_timeout = timedelta(seconds=timeout_s)
        method = {
            "signal": handle.signal,
            "query": handle.query,
            "update": handle.execute_update,
        }[call.kind]

        def factory() -> Any:
            return method(call.handler, args=args, rpc_timeout=rpc_timeout)

        start_time = time.time()
        t0 = time.perf_counter()
        failure: str | None
        try:
            result = self.bridge.submit(factory).get()
            failure = call.check(result, rows) if call.check is not None else None
        except GreenletExit:
            raise
        except BaseException as exc:
            failure = failure_text(exc)
            if isinstance(exc, KeyboardInterrupt):
                raise
        fire(call.name, start_time, (time.perf_counter() - t0) * 1000.0, failure, ctx)
        return failure

    def abandon(self, handle: Any) -> None:
        """The user driving `handle` was stopped before its calls were sent: a workflow waiting
        for a signal that will never come would time out and read as the stack's failure. Its
        result is not reported, and the workflow is terminated so it does not linger."""

        async def drop() -> None:
            for tracked in list(self._tracked.values()):
                if tracked.handle is handle and not tracked.task.done():
                    tracked.abandoned = True
                    tracked.task.cancel()
            await _terminate(handle, "the load generator stopped before sending its calls")

        self.bridge.spawn(drop)

    # On the loop -----------------------------------------------------------------------------

    async def _run(
        self,
        fire: Fire,
        flow: CompiledWorkflow,
        args: Any,
        workflow_id: str,
        kwargs: Mapping[str, Any],
        started: AsyncResult,
        done: AsyncResult | None,
        ctx: dict[str, Any],
        start_time: float,
        t0: float,
        stopped: list[bool],
    ) -> None:
        """Start the workflow, hand the handle to the greenlet, then await and report its result."""
        try:
            client = await self.holder.get(flow.timeout_s)
            handle = await client.start_workflow(
                flow.workflow_type,
                args=args if isinstance(args, list) else [args],
                id=workflow_id,
                **kwargs,
            )
        except BaseException as exc:
            started.set_exception(exc)
            if done is not None:
                done.set((failure_text(exc), None))
            return
        if stopped[0] and flow.calls:  # its calls will never be sent (see `abandon`)
            await _terminate(handle, "the load generator stopped before sending its calls")
            return
        probe = self.probe
        probe.watch_queue(client, self.namespace, flow.task_queue)
        sampled = probe.should_sample(flow.workflow_type, flow.sample_per_s)
        if not flow.wait_result:
            started.set(handle)
            if sampled:
                probe.sample(handle, flow.workflow_type, wait=True)
            return
        InFlight.count += 1
        InFlight.longest_timeout_s = max(InFlight.longest_timeout_s, flow.timeout_s)
        started.set(handle)
        key = (flow.task_queue, flow.workflow_type)
        tracked = _Tracked(handle, key, asyncio.current_task(), flow.timeout_s)
        self._tracked[id(tracked)] = tracked
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        result: Any = None
        error: str | None = None
        try:
            result = await handle.result()
        except asyncio.CancelledError:
            error = tracked.error or "cancelled"
        except BaseException as exc:
            error = failure_text(exc)
        finally:
            del self._tracked[id(tracked)]
        if tracked.abandoned:
            InFlight.count -= 1
            if done is not None:
                done.set(("abandoned: its user was stopped", None))
            return
        if error is None:
            mark_served(key)
            if sampled:  # its first task has run: one short history read, no long poll
                probe.sample(handle, flow.workflow_type, wait=False)
        InFlight.count -= 1
        fire(flow.complete_name, start_time, (time.perf_counter() - t0) * 1000.0, error, ctx)
        if done is not None:
            done.set((error, result))

    async def _watch(self) -> None:
        """Once a second: diagnose workflow types whose oldest workflows are not served."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            now = time.monotonic()
            stuck: dict[tuple[str, str], list[_Tracked]] = {}
            for tracked in list(self._tracked.values()):
                age_s = now - tracked.started_s
                if age_s < UNSERVED_CHECK_S:
                    break  # the rest are younger
                if age_s > tracked.timeout_s + RESULT_GRACE_S and tracked.error is None:
                    tracked.error = f"no result within {tracked.timeout_s + RESULT_GRACE_S:g} s"
                    tracked.task.cancel()
                    continue
                if tracked.checked:
                    continue
                tracked.checked = True
                # A backlog, not an unserved type: diagnosing every slow workflow would fetch
                # each one's history, the very load that made them slow (halved starts/s).
                if not served_recently(tracked.key):
                    stuck.setdefault(tracked.key, []).append(tracked)
            for key, group in stuck.items():
                loop.create_task(self._diagnose(key, group))

    async def _diagnose(self, key: tuple[str, str], group: list[_Tracked]) -> None:
        task_queue, workflow_type = key
        client = await self.holder.get()
        problem = await shared_diagnosis(
            key,
            lambda: diagnose_stuck(
                client, group[0].handle, self.namespace, task_queue, workflow_type
            ),
        )
        if problem is None:
            mark_served(key)
            return
        for tracked in group:
            if tracked.error is None and not tracked.task.done():
                tracked.error = problem
                tracked.task.cancel()
                asyncio.get_running_loop().create_task(_terminate(tracked.handle, problem))


async def _terminate(handle: Any, reason: str) -> None:
    try:
        await handle.terminate(reason=reason[:200])
    except Exception:  # already closed: nothing to clean up
        return


_sessions: dict[tuple[str, str], TemporalSession] = {}


def session_for(address: str, namespace: str, worker_service: str = "workflow") -> TemporalSession:
    """The process's session for one Temporal address and namespace (made on first use)."""
    global _probe
    # The first call may wait for the loop greenlet to start (a greenlet switch): only after
    # that the check and the insert below, which never yield, so users starting together
    # share one session, one client and one watchdog.
    bridge = get_bridge()
    key = (address, namespace)
    session = _sessions.get(key)
    if session is None:
        if _probe is None:  # no hooks (a library run): measured, reported nowhere
            _probe = SaturationProbe(worker_service)
        session = _sessions[key] = TemporalSession(address, namespace, _probe, bridge)
    return session


def fire_for(fire_event: Callable[..., Any]) -> Fire:
    """How a workflow step is reported: one Locust `request` event of type `temporal`."""

    def fire(
        name: str, start_time: float, elapsed_ms: float, exc: Any, context: dict[str, Any]
    ) -> None:
        fire_event(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=elapsed_ms,
            response_length=0,
            exception=exc,
            context=context,
            start_time=start_time,
            url=None,
        )

    return fire


# --- a workflow as one step: start, calls, result ---------------------------------------------


def run_workflow(
    session: TemporalSession,
    fire: Fire,
    flow: CompiledWorkflow,
    ctx: dict[str, Any],
    chain: dict[str, Any] | None = None,
) -> str | None:
    """Start, then the calls in order; in a chain also wait for the result and extract
    values from it. The first failure (or None); every step is reported as it goes."""
    rows = flow.draw.draw(chain) if (chain is not None or not flow.draw.empty) else {}
    handle, done = session.start(fire, flow, rows, ctx, hold_result=chain is not None)
    if handle is None:
        return f"{flow.start_name} failed"
    try:
        for call in flow.calls:
            failure = session.call(fire, call, handle, rows, ctx, flow.timeout_s)
            if failure is not None:
                return f"{call.name}: {failure}"
    except GreenletExit:  # the user is being stopped, its calls unsent: not the stack's failure
        session.abandon(handle)
        raise
    if done is None:
        return None
    error, result = done.get(timeout=flow.timeout_s + RESULT_GRACE_S + 5.0)
    if error is not None:
        return f"{flow.complete_name}: {error}"
    assert chain is not None
    for name, tokens in flow.extract:
        value = resolve(result, tokens)
        if value is MISSING:
            return f"{flow.complete_name}: extract {name}: /{'/'.join(tokens)} not in the result"
        chain[name] = value
    return None


def make_workflow_user(
    spec: UserClass,
    address: str,
    namespace: str,
    task_queue: str,
    cursors: Mapping[str, PoolCursor],
    name: str = "WorkflowUser",
    hooks: Any = None,
    worker_service: str = "workflow",
) -> type:
    install_hooks(hooks, worker_service)
    flows = [compile_workflow(w, task_queue, spec.timeout_s, cursors) for w in spec.workflows]
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
            "worker_service": worker_service,
            "abstract": False,
        },
    )


class WorkflowUser(User):
    abstract = True
    flows: Sequence[CompiledWorkflow] = ()
    cum_weights: list[int] = []
    address = "127.0.0.1:7233"
    namespace = "vextrus"
    worker_service = "workflow"

    def on_start(self) -> None:
        self._session = session_for(self.address, self.namespace, self.worker_service)
        self._total = self.cum_weights[-1] if self.cum_weights else 0
        self._fire = fire_for(self.environment.events.request.fire)

    @task
    def start_workflow(self) -> None:
        flows = self.flows
        if len(flows) == 1:
            flow = flows[0]
        else:
            point = random.random() * self._total
            flow = flows[bisect_right(self.cum_weights, point, 0, len(flows) - 1)]
        # The context carries the intended start under an arrival-rate profile.
        run_workflow(self._session, self._fire, flow, self.context())
