"""Distributed runs: workers ship closed slices to the master, which writes them and tracks workers.

A worker sends each slice to the master as soon as it closes (a `capacity_slices` message), so
a worker killed with SIGKILL loses at most its open slice; a slice whose send fails is kept
and rides along with Locust's next periodic report (`report_to_master` on the worker,
`worker_report` on the master). When the run stops, the master asks every live worker to stop
and send what it holds (`capacity_flush`) and waits for each answer (`capacity_final`) before
it lets the run end: with `-t`, Locust itself waits only 0.5 s for the workers' last reports.

A worker that stops answering heartbeats (killed, machine gone) is "lost": the master names
it in run.json (`lost_workers`, `lost_worker_details`) as soon as Locust marks it missing, so
even a run folder whose master was killed later says which worker's data stops early.
Everything a worker sent before it was lost is already on disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from locust.env import Environment
from locust.exception import RPCError
from locust.rpc import Message
from locust.runners import STATE_MISSING, STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from capacity import runfolder

log = logging.getLogger("capacity")

SLICES_KEY = "capacity_slices"
WORKER_KEY = "capacity_worker"
SLICES_MESSAGE = "capacity_slices"
FLUSH_REQUEST = "capacity_flush"
FINAL_SLICES = "capacity_final"
FLUSH_TIMEOUT_S = 45.0  # a worker's stop may drain in-flight workflows first
WATCH_EVERY_S = 1.0


class WorkerShipper:
    """Worker side: the recorder's sink; holds closed slices until they reach the master."""

    def __init__(self, runner: WorkerRunner, worker_id: str) -> None:
        self.runner = runner
        self.worker_id = worker_id
        self.pending: list[dict[str, Any]] = []
        runner.environment.events.report_to_master.add_listener(self.on_report_to_master)
        runner.register_message(FLUSH_REQUEST, self.on_flush_request)

    def __call__(self, record: dict[str, Any]) -> None:
        self.pending.append(record)
        self._send(SLICES_MESSAGE)

    def take(self) -> list[dict[str, Any]]:
        records, self.pending = self.pending, []
        return records

    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        data[SLICES_KEY] = self.take()
        data[WORKER_KEY] = self.worker_id

    def send_final(self) -> None:
        """Send held slices now, marked final: the master waits for this when stopping."""
        self._send(FINAL_SLICES)

    def _send(self, msg_type: str) -> None:
        records = self.take()
        try:
            self.runner.send_message(msg_type, {SLICES_KEY: records, WORKER_KEY: self.worker_id})
        except RPCError as exc:
            log.warning(
                "could not send %d slices to the master (will retry): %s", len(records), exc
            )
            self.pending[:0] = records

    def stop_and_send(self) -> None:
        """Stop the users if running (test_stop closes the last slice), then send everything."""
        if self.runner.state in (STATE_RUNNING, STATE_SPAWNING):
            self.runner.stop()
        self.send_final()

    def on_flush_request(self, environment: Environment, msg: Message, **_: Any) -> None:
        self.stop_and_send()

    def on_quitting(self) -> None:
        """A worker stopped on its own (SIGINT/SIGTERM): send what it holds before it says quit.

        After a normal end everything was sent already, and the master may be gone.
        """
        if self.pending or self.runner.state in (STATE_RUNNING, STATE_SPAWNING):
            self.stop_and_send()


class MasterTracker:
    """Master side: writes workers' slices, lists the workers and names the lost ones."""

    def __init__(
        self,
        runner: MasterRunner,
        sink: Callable[[dict[str, Any]], None],
        run_dir: Path,
        *,
        flush_timeout_s: float = FLUSH_TIMEOUT_S,
    ) -> None:
        self.runner = runner
        self.sink = sink
        self.run_dir = run_dir
        self.flush_timeout_s = flush_timeout_s
        self.worker_ids: dict[str, str] = {}  # Locust client id -> our worker id
        self.last_report_s: dict[str, float] = {}
        self.last_slice_end_s: dict[str, float] = {}
        self.lost: dict[str, dict[str, Any]] = {}  # worker id -> details
        self.finals: set[str] = set()
        self.flushed = False
        runner.environment.events.worker_report.add_listener(self.on_worker_report)
        runner.register_message(SLICES_MESSAGE, self.on_slices)
        runner.register_message(FINAL_SLICES, self.on_final)
        self._watcher = gevent.spawn(self._watch)

    def worker_id(self, client_id: str) -> str:
        """Our id for a worker (as in its slices); Locust's client id if it never reported."""
        return self.worker_ids.get(client_id, client_id)

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        self._accept(client_id, data)

    def on_slices(self, environment: Environment, msg: Message, **_: Any) -> None:
        self._accept(msg.node_id, msg.data or {})

    def on_final(self, environment: Environment, msg: Message, **_: Any) -> None:
        self._accept(msg.node_id, msg.data or {})
        self.finals.add(msg.node_id)

    def _accept(self, client_id: str, data: dict[str, Any]) -> None:
        worker = data.get(WORKER_KEY)
        if worker and client_id not in self.worker_ids:
            self.worker_ids[client_id] = str(worker)
            self._write_workers()
        self.last_report_s[client_id] = time.time()
        for record in data.get(SLICES_KEY, ()):
            self.sink(record)
            end_s = float(record.get("t_end_s", 0.0))
            self.last_slice_end_s[client_id] = max(end_s, self.last_slice_end_s.get(client_id, 0.0))

    def on_test_start(self) -> None:
        self.flushed = False

    def check_missing(self) -> None:
        """Name every worker Locust marks missing (no heartbeat for ~3 s) as lost."""
        for client in list(self.runner.clients.all):
            if client.state == STATE_MISSING:
                self.mark_lost(client.id, "stopped sending heartbeats")

    def mark_lost(self, client_id: str, reason: str) -> None:
        worker = self.worker_id(client_id)
        if worker in self.lost:
            return
        last_end = self.last_slice_end_s.get(client_id)
        self.lost[worker] = {
            "locust_client_id": client_id,
            "reason": reason,
            "detected_at": runfolder.iso_utc(time.time()),
            "last_report_s": round(self.last_report_s[client_id], 3)
            if client_id in self.last_report_s
            else None,
            "last_slice_end_s": round(last_end, 3) if last_end is not None else None,
        }
        log.warning("worker %s lost: %s", worker, reason)
        self._write_workers()

    def flush(self) -> None:
        """Ask every live worker to stop and send its held slices; wait for all answers.

        Waiting is only safe outside the runner's own greenlets (the message listener among
        them): from inside, the answers could not be received, so the request is only sent.
        """
        if self.flushed:
            return
        self.flushed = True
        self.check_missing()
        targets = {c.id for c in self.runner.clients.all if c.state != STATE_MISSING}
        self.finals.clear()
        for client_id in targets:
            self.runner.send_message(FLUSH_REQUEST, None, client_id=client_id)
        if gevent.getcurrent() in self.runner.greenlet:
            return
        deadline = time.monotonic() + self.flush_timeout_s
        waiting = set(targets)
        while waiting and time.monotonic() < deadline:
            gevent.sleep(0.05)
            self.check_missing()
            clients = self.runner.clients
            waiting = {
                cid
                for cid in waiting
                if cid not in self.finals and cid in clients and clients[cid].state != STATE_MISSING
            }
        for client_id in waiting:
            self.mark_lost(client_id, f"sent no final slices within {self.flush_timeout_s:g} s")

    def close(self) -> None:
        self.check_missing()
        self._watcher.kill(block=False)

    def _watch(self) -> None:
        while True:
            gevent.sleep(WATCH_EVERY_S)
            self.check_missing()

    def _write_workers(self) -> None:
        runfolder.update_run_json(
            self.run_dir,
            workers=list(dict.fromkeys(self.worker_ids.values())),
            lost_workers=list(self.lost),
            lost_worker_details=self.lost,
        )
