"""Process trees (the embedded stack's services) and host totals, read through psutil.

A service is its process plus all descendants: a server that forks workers would otherwise
look idle. Descendants are re-listed every few seconds, not every sample, because listing them
scans every process on the machine; CPU of children that exited and were reaped still counts,
since it lands in the parent's children_user/children_system times.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import psutil

from capacity.collect.samples import CounterDeltas, ResourceSample, bytes_to_mb

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def _alive(proc: psutil.Process) -> bool:
    return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE


class _Tree:
    """A root process and its cached descendants."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.descendants: list[psutil.Process] = []
        self.listed_at = float("-inf")


class ProcessSource:
    """CPU and resident memory of named process trees (service name -> root pid)."""

    name = "process"

    def __init__(self, targets: Mapping[str, int], tree_refresh_s: float = 5.0) -> None:
        self.targets = dict(targets)
        self.tree_refresh_s = tree_refresh_s
        self._trees: dict[str, _Tree] = {}
        self._dead: set[str] = set()
        self.gone: list[str] = []  # services whose process ended, in order
        self._deltas = CounterDeltas()
        self._warnings: list[str] = []
        for service, pid in self.targets.items():
            try:
                self._trees[service] = _Tree(psutil.Process(pid))
            except _GONE:
                self._mark_dead(service, pid)

    def describe(self) -> str:
        listed = ", ".join(f"{name}={pid}" for name, pid in self.targets.items())
        return f"processes (with children): {listed or 'none'}"

    def take_warnings(self) -> list[str]:
        warnings, self._warnings = self._warnings, []
        return warnings

    def _mark_dead(self, service: str, pid: int) -> None:
        if service not in self._dead:
            self._dead.add(service)
            self._warnings.append(f"process {service} (pid {pid}) is gone; no more samples for it")
            self.gone.append(service)
        self._trees.pop(service, None)
        self._deltas.forget(service)

    def _read_tree(self, tree: _Tree, now_mono: float) -> tuple[float, int]:
        if now_mono - tree.listed_at >= self.tree_refresh_s:
            tree.descendants = tree.root.children(recursive=True)
            tree.listed_at = now_mono
        with tree.root.oneshot():
            cpu_s = _cpu_seconds(tree.root)
            rss = tree.root.memory_info().rss
        alive = []
        for child in tree.descendants:
            try:
                with child.oneshot():
                    cpu_s += _cpu_seconds(child)
                    rss += child.memory_info().rss
                alive.append(child)
            except _GONE:
                continue
        tree.descendants = alive
        return cpu_s, rss

    def sample(self) -> list[ResourceSample]:
        samples = []
        for service, tree in list(self._trees.items()):
            ts = time.time()
            now_mono = time.monotonic()
            try:
                # A killed child of this process stays a zombie until reaped: it is gone, and
                # its zero CPU and memory must not read as a healthy, idle service.
                if not _alive(tree.root):
                    raise psutil.NoSuchProcess(tree.root.pid)
                cpu_s, rss = self._read_tree(tree, now_mono)
                # Killed while being read: a dying process reads 0 MB resident (and its last
                # CPU delta is partial), so a sample taken then is dropped, not kept as idle.
                if rss == 0 or not _alive(tree.root):
                    raise psutil.NoSuchProcess(tree.root.pid)
            except _GONE:
                self._mark_dead(service, tree.root.pid)
                continue
            samples.append(
                ResourceSample(
                    ts_unix_s=ts,
                    source="process",
                    target=service,
                    cpu_cores=self._deltas.rate((service, "cpu"), now_mono, cpu_s),
                    mem_mb=bytes_to_mb(rss),
                    mem_limit_mb=None,
                    cpu_throttled_s=None,
                )
            )
        return samples


class HostSource:
    """Whole-machine CPU busy time (in cores) and memory in use (total minus available)."""

    name = "host"

    def __init__(self, target: str = "host") -> None:
        self.target = target
        self._deltas = CounterDeltas()
        self._total_mb = bytes_to_mb(psutil.virtual_memory().total)

    def describe(self) -> str:
        return f"host totals ({psutil.cpu_count()} CPUs, {self._total_mb:.0f} MB)"

    def sample(self) -> list[ResourceSample]:
        ts = time.time()
        now_mono = time.monotonic()
        times = psutil.cpu_times()
        # guest time is already inside user time on Linux; idle and iowait are not busy.
        busy_s = sum(
            getattr(times, field, 0.0)
            for field in ("user", "nice", "system", "irq", "softirq", "steal")
        )
        memory = psutil.virtual_memory()
        return [
            ResourceSample(
                ts_unix_s=ts,
                source="host",
                target=self.target,
                cpu_cores=self._deltas.rate("cpu", now_mono, busy_s),
                mem_mb=bytes_to_mb(memory.total - memory.available),
                mem_limit_mb=bytes_to_mb(memory.total),
                cpu_throttled_s=None,
            )
        ]
