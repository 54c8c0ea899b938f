"""One asyncio loop per Locust process, in a real OS thread, for asyncio-only clients.

Locust monkey-patches the process for gevent, so `asyncio.run()` from a greenlet fails (all
greenlets share one OS thread and its loop). The loop therefore runs in a thread started with
the original, unpatched `start_new_thread`, on the original epoll selector. Greenlets hand it
coroutines with `call_soon_threadsafe`; results come back into the gevent hub through
`run_callback_threadsafe`, so a waiting greenlet yields instead of blocking the hub.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import gevent
import gevent.monkey
from gevent.event import AsyncResult

T = TypeVar("T")


class AsyncioBridge:
    """An asyncio loop in a real thread, reachable from greenlets."""

    def __init__(self) -> None:
        selector_cls = gevent.monkey.get_original("selectors", "EpollSelector")
        start_new_thread = gevent.monkey.get_original("_thread", "start_new_thread")
        get_ident = gevent.monkey.get_original("_thread", "get_ident")
        self.loop = asyncio.SelectorEventLoop(
            selector_cls() if selector_cls else selectors.DefaultSelector()
        )
        self._hub = gevent.get_hub()
        self._get_ident = get_ident
        self.thread_id: int | None = None
        self.ready: AsyncResult = AsyncResult()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.thread_id = get_ident()
            self._hub.loop.run_callback_threadsafe(self.ready.set, True)
            self.loop.run_forever()

        start_new_thread(run, ())

    def submit(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> AsyncResult:
        """Run `factory()` on the loop; the returned AsyncResult fills in the hub's thread."""
        result: AsyncResult = AsyncResult()

        def done(task: asyncio.Task[T]) -> None:
            if task.cancelled():
                self.to_hub(result.set_exception, asyncio.CancelledError())
            elif task.exception() is not None:
                self.to_hub(result.set_exception, task.exception())
            else:
                self.to_hub(result.set, task.result())

        def start() -> None:
            task = self.loop.create_task(factory())
            task.add_done_callback(done)

        self.loop.call_soon_threadsafe(start)
        return result

    def spawn(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run a coroutine on the loop, fire and forget (it reports back through `to_hub`)."""
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(factory()))

    def to_hub(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call `fn(*args)` in the gevent hub's thread (from the loop's thread)."""
        self._hub.loop.run_callback_threadsafe(fn, *args)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


_bridge: AsyncioBridge | None = None


def get_bridge() -> AsyncioBridge:
    """The process's one bridge, created on first use.

    The constructor does not yield, so two greenlets can never both create one; waiting for
    the loop thread to be ready happens after the bridge is published.
    """
    global _bridge
    if _bridge is None:
        _bridge = AsyncioBridge()
    _bridge.ready.get(timeout=10)
    return _bridge


def wait(result: AsyncResult, timeout_s: float) -> Any:
    """Wait cooperatively for a bridge result (raises its exception, or gevent.Timeout)."""
    return result.get(timeout=timeout_s)
