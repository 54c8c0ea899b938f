"""One asyncio loop per Locust process, run by a greenlet of the gevent hub's own thread.

Locust monkey-patches the process for gevent, so `asyncio.run()` from a greenlet fails (all
greenlets share one OS thread). The loop therefore runs forever in one greenlet, on an epoll
selector of its own that yields to the hub instead of blocking the thread: when asyncio has
nothing ready, the loop greenlet waits (cooperatively) until the epoll descriptor is readable,
its next timer is due, or a greenlet hands it work. Everything on the loop, and every greenlet,
then runs in one OS thread: handing a coroutine over and its result back are plain calls, no
cross-thread wake-up, no contention for the GIL between the hub and the loop. The loop used
to run in a thread of its own; measured side by side in `benchmarks/bench_temporal_driver.py`
the two hand-offs and GIL ping-pong per workflow start cost more CPU than the start itself
(see benchmarks/README.md).

Only temporalio's Rust threads reach the loop from outside, through `call_soon_threadsafe`;
its self-pipe is made of raw (unpatched) sockets so that those threads never touch gevent.
"""

from __future__ import annotations

import _socket
import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import gevent
import gevent.monkey
from gevent.event import AsyncResult
from gevent.hub import Waiter

T = TypeVar("T")
# While asyncio always has ready work, hand the hub a turn at least this often, so users'
# greenlets (and Locust's own) keep running under a busy loop.
YIELD_EVERY_S = 0.002

_EpollSelector: Any = gevent.monkey.get_original("selectors", "EpollSelector")


class HubSelector(_EpollSelector):
    """An epoll selector whose blocking `select` waits in the gevent hub, not in the kernel.

    The wait is a bare `Waiter` woken by a libev io watcher on the epoll descriptor, a libev
    timer for asyncio's next timer, or `wake()`: `Event.wait(timeout)` made a gevent Timeout
    per wait, ~6% of the driver's CPU per workflow start.
    """

    def __init__(self) -> None:
        super().__init__()
        self._waiter: Any = None
        self._watcher: Any = None
        self._last_yield_s = time.monotonic()

    def _ready(self) -> None:
        """From the hub: epoll has events, or a timer is due."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.switch(None)

    def wake(self) -> None:
        """Wake a `select` waiting in the hub (a greenlet handed the loop work)."""
        if self._waiter is not None:
            gevent.get_hub().loop.run_callback(self._ready)

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            now = time.monotonic()
            if now - self._last_yield_s >= YIELD_EVERY_S:
                self._last_yield_s = now
                gevent.sleep(0)
            return list(ready)
        loop = gevent.get_hub().loop
        if self._watcher is None:
            # Level-triggered: while epoll has something ready the hub keeps calling back.
            self._watcher = loop.io(self.fileno(), 1)
            self._watcher.start(self._ready)
        timer = None
        if timeout is not None:
            timer = loop.timer(timeout)
            timer.start(self._ready)
        self._waiter = waiter = Waiter()
        try:
            waiter.get()
        finally:
            self._waiter = None
            if timer is not None:
                timer.close()
        self._last_yield_s = time.monotonic()
        return list(super().select(0))

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None
        super().close()


class HubEventLoop(asyncio.SelectorEventLoop):
    """A selector loop on `HubSelector`, its self-pipe made of raw sockets.

    The stock self-pipe is a `socket.socketpair()`, which after monkey-patching is gevent's
    socket: Rust threads calling `call_soon_threadsafe` would write through gevent's Python
    wrapper. `_socket.socketpair()` objects have every method asyncio uses on them.
    """

    def __init__(self) -> None:
        self.hub_selector = HubSelector()
        super().__init__(self.hub_selector)

    def _make_self_pipe(self) -> None:
        loop: Any = self  # asyncio's private self-pipe attributes, as its own method sets them
        loop._ssock, loop._csock = _socket.socketpair()
        loop._ssock.setblocking(False)
        loop._csock.setblocking(False)
        loop._internal_fds += 1
        loop._add_reader(loop._ssock.fileno(), loop._read_from_self)


class AsyncioBridge:
    """An asyncio loop in a greenlet, reachable from every greenlet by plain calls."""

    def __init__(self) -> None:
        self.loop = HubEventLoop()
        self.ready: AsyncResult = AsyncResult()
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.ready.set(True)
        self.loop.run_forever()

    def submit(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> AsyncResult:
        """Run `factory()` on the loop; the returned AsyncResult holds its outcome."""
        result: AsyncResult = AsyncResult()

        def done(task: asyncio.Task[T]) -> None:
            if task.cancelled():
                result.set_exception(asyncio.CancelledError())
            elif (exc := task.exception()) is not None:
                result.set_exception(exc)
            else:
                result.set(task.result())

        self.loop.create_task(factory()).add_done_callback(done)
        self.loop.hub_selector.wake()
        return result

    def spawn(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run a coroutine on the loop, fire and forget (it reports back through `to_hub`)."""
        self.loop.create_task(factory())
        self.loop.hub_selector.wake()

    @staticmethod
    def to_hub(fn: Callable[..., Any], *args: Any) -> None:
        """Call `fn(*args)` where greenlets live: the loop already runs in the hub's thread."""
        fn(*args)

    def stop(self) -> None:
        self.loop.call_soon(self.loop.stop)
        self.loop.hub_selector.wake()


_bridge: AsyncioBridge | None = None


def get_bridge() -> AsyncioBridge:
    """The process's one bridge, created on first use.

    The constructor does not yield, so two greenlets can never both create one; waiting for
    the loop greenlet to start happens after the bridge is published.
    """
    global _bridge
    if _bridge is None:
        _bridge = AsyncioBridge()
    _bridge.ready.get(timeout=10)
    return _bridge


def wait(result: AsyncResult, timeout_s: float) -> Any:
    """Wait cooperatively for a bridge result (raises its exception, or gevent.Timeout)."""
    return result.get(timeout=timeout_s)
