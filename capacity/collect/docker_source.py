"""Docker containers selected by name pattern, compose project or label.

Containers are discovered through the Docker Engine API every few seconds; their figures are
read from cgroup files when this machine sees the host's cgroup tree, else from the stats API
in one-shot mode with our own deltas. A plain `stream=false` stats call waits for two daemon
samples (1-2 s per container), so it is never used; even a one-shot call waits for the
daemon's next 1 s collection round, so all containers are asked at once, in threads, and the
answers become rows at the next tick, stamped with the daemon's own read time.
"""

from __future__ import annotations

import fnmatch
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from capacity.collect.cgroup import (
    CGROUP_ROOT,
    PROC_ROOT,
    CgroupGone,
    CgroupReader,
    detect_version,
    find_container_files,
    read_proc_cgroup,
    working_set_bytes,
)
from capacity.collect.samples import CounterDeltas, ResourceSample, bytes_to_mb
from capacity.errors import TargetUnreachable

COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
_DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
_API_WORKERS = 32  # concurrent one-shot stats calls; connect_docker sizes its pool to match


def _docker_errors() -> tuple[type[BaseException], ...]:
    import docker.errors

    return (docker.errors.DockerException, OSError)


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def connect_docker(timeout_s: float = 5.0, base_url: str | None = None) -> Any:
    """A docker client for `base_url`, else from the environment (DOCKER_HOST...), pinged once.

    Raises TargetUnreachable with one line naming the daemon address when it does not answer.
    """
    import docker

    address = base_url or os.environ.get("DOCKER_HOST") or _DEFAULT_DOCKER_HOST
    try:
        if base_url:
            client = docker.DockerClient(
                base_url=base_url, timeout=int(timeout_s), max_pool_size=_API_WORKERS
            )
        else:
            client = docker.from_env(timeout=timeout_s, max_pool_size=_API_WORKERS)
        client.ping()
    except _docker_errors() as exc:
        raise TargetUnreachable(
            f"docker daemon unreachable at {address}: {_one_line(exc)} (set DOCKER_HOST)"
        ) from exc
    return client


@dataclass(frozen=True)
class StatsCounters:
    """Cumulative figures from one one-shot stats API answer."""

    cpu_usage_s: float
    clock_s: float | None  # host CPU time / online CPUs: the daemon's own wall clock
    read_unix_s: float | None  # when the daemon read the figures
    cpu_throttled_s: float | None
    mem_working_set_bytes: int | None
    mem_limit_bytes: int | None


def parse_docker_time(text: str | None) -> float | None:
    """Unix seconds from the daemon's RFC 3339 time with nanoseconds; None for the zero time."""
    if not text or text.startswith("0001-"):
        return None
    stamp, _, zone = text.rstrip("Z").partition("+")
    whole, _, fraction = stamp.partition(".")
    try:
        moment = datetime.fromisoformat(whole + "+" + (zone or "00:00"))
    except ValueError:
        return None
    return moment.timestamp() + (float("0." + fraction) if fraction.isdigit() else 0.0)


def counters_from_stats(stats: dict[str, Any]) -> StatsCounters | None:
    """Parse a one-shot stats answer; None when the container is not running."""
    cpu = stats.get("cpu_stats") or {}
    total_ns = (cpu.get("cpu_usage") or {}).get("total_usage")
    memory = stats.get("memory_stats") or {}
    if not total_ns and not memory:
        return None
    system_ns = cpu.get("system_cpu_usage")
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    clock_s = system_ns / 1e9 / online if system_ns and online else None
    throttled_ns = (cpu.get("throttling_data") or {}).get("throttled_time")
    mem_stat = memory.get("stats") or {}
    usage = memory.get("usage")
    # The daemon reports the cgroup's own memory.stat keys: v1 has total_*, v2 does not.
    inactive = mem_stat.get("total_inactive_file", mem_stat.get("inactive_file"))
    return StatsCounters(
        cpu_usage_s=(total_ns or 0) / 1e9,
        clock_s=clock_s,
        read_unix_s=parse_docker_time(stats.get("read")),
        cpu_throttled_s=throttled_ns / 1e9 if throttled_ns is not None else None,
        mem_working_set_bytes=(
            working_set_bytes(int(usage), inactive) if usage is not None else None
        ),
        mem_limit_bytes=memory.get("limit"),
    )


@dataclass
class _Container:
    id: str
    name: str
    running: bool
    attached: bool = False  # decided how to read it (cgroup files or API)
    via_api: bool = False
    reader: CgroupReader | None = None


class DockerSource:
    """CPU, memory working set, limit and throttling of selected Docker containers."""

    name = "docker"

    def __init__(
        self,
        pattern: str | None = None,
        project: str | None = None,
        label: str | None = None,
        client: Any = None,
        *,
        cgroup_root: Path | None = CGROUP_ROOT,
        proc_root: Path = PROC_ROOT,
        rediscover_s: float = 5.0,
        timeout_s: float = 5.0,
        service_names: bool = False,
    ) -> None:
        self.pattern = pattern
        self.service_names = service_names
        self.project = project
        self.label = label
        self.cgroup_root = cgroup_root
        self.proc_root = proc_root
        self.rediscover_s = rediscover_s
        self._client = client if client is not None else connect_docker(timeout_s)
        self._api = getattr(self._client, "api", self._client)
        try:
            info = self._api.info()
        except _docker_errors() as exc:
            raise TargetUnreachable(f"docker daemon did not answer: {_one_line(exc)}") from exc
        self.host = str(info.get("Name") or "")
        mem_total = info.get("MemTotal")
        self._host_mem_mb = bytes_to_mb(mem_total) if mem_total else None
        self._cgroup_version = detect_version(cgroup_root) if cgroup_root is not None else None
        self._containers: dict[str, _Container] = {}
        self._inflight: dict[str, Future[Any]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._deltas = CounterDeltas()
        self._warnings: list[str] = []
        self.gone: list[str] = []  # targets that stopped since the sampler last looked
        self.returned: list[str] = []  # ... and that run again
        self._daemon_lost = False
        self._warned_empty = False
        self._next_discovery = 0.0
        self._discover(time.monotonic(), at_start=True)

    # -- description and warnings -------------------------------------------------------
    def selection(self) -> str:
        """The selection in words, e.g. `name vextrus-*, project vextrus`."""
        parts = []
        if self.pattern:
            parts.append(f"name {self.pattern}")
        if self.project:
            parts.append(f"project {self.project}")
        if self.label:
            parts.append(f"label {self.label}")
        return ", ".join(parts) or "all containers"

    def describe(self) -> str:
        via_cgroup = sum(1 for c in self._containers.values() if c.attached and not c.via_api)
        via_api = sum(1 for c in self._containers.values() if c.via_api)
        waiting = len(self._containers) - via_cgroup - via_api
        where = (
            f"cgroup v{self._cgroup_version} files under {self.cgroup_root}"
            if self._cgroup_version
            else "cgroup files"
        )
        return (
            f"docker containers ({self.selection()}) on {self.host or 'docker host'}: "
            f"{via_cgroup} via {where}, {via_api} via the stats API"
            + (f", {waiting} not running" if waiting else "")
        )

    def targets(self) -> dict[str, str]:
        """Container id -> name of every container currently followed."""
        return {c.id: c.name for c in self._containers.values()}

    def take_warnings(self) -> list[str]:
        warnings, self._warnings = self._warnings, []
        return warnings

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._inflight.clear()
        for container in self._containers.values():
            if container.reader is not None:
                container.reader.close()
                container.reader = None

    # -- discovery ----------------------------------------------------------------------
    def _filters(self) -> dict[str, Any]:
        labels = []
        if self.project:
            labels.append(f"{COMPOSE_PROJECT_LABEL}={self.project}")
        if self.label:
            labels.append(self.label)
        return {"label": labels} if labels else {}

    def _discover(self, now_mono: float, at_start: bool = False) -> None:
        try:
            listed = self._api.containers(all=True, filters=self._filters())
        except _docker_errors() as exc:
            if at_start:
                raise TargetUnreachable(
                    f"docker daemon did not list containers: {_one_line(exc)}"
                ) from exc
            if not self._daemon_lost:
                self._warnings.append(
                    f"docker daemon unreachable ({_one_line(exc)}); continuing with "
                    f"{len(self._containers)} known container(s), retrying every "
                    f"{self.rediscover_s:g} s"
                )
                self._daemon_lost = True
            self._next_discovery = now_mono + self.rediscover_s
            return
        if self._daemon_lost:
            self._warnings.append("docker daemon reachable again")
            self._daemon_lost = False
        seen: dict[str, tuple[str, bool]] = {}
        for entry in listed:
            names = [str(n).lstrip("/") for n in entry.get("Names") or []]
            name = next((n for n in names if "/" not in n), names[0] if names else entry["Id"][:12])
            if self.pattern and not fnmatch.fnmatchcase(name, self.pattern):
                continue
            service = (entry.get("Labels") or {}).get(COMPOSE_SERVICE_LABEL)
            if self.service_names and service:
                name = str(service)  # vextrus-master-data-1 is the service master-data
            seen[entry["Id"]] = (name, entry.get("State") == "running")
        for container_id in list(self._containers):
            if container_id not in seen:
                name = self._containers[container_id].name
                self._warnings.append(f"container {name} was removed during the run")
                self.gone.append(name)
                self._drop(container_id)
        fallback: list[str] = []
        for container_id, (name, running) in seen.items():
            known = self._containers.get(container_id)
            if known is None:
                known = _Container(id=container_id, name=name, running=running)
                self._containers[container_id] = known
            if known.running and not running:
                self._warnings.append(f"container {name} stopped during the run")
                self.gone.append(name)
            elif running and not known.running and known.attached:
                self.returned.append(name)
            known.name, known.running = name, running
            if running and not known.attached:
                reason = self._attach(known)
                if reason:
                    fallback.append(f"{name} ({reason})")
        if fallback:
            self._warnings.append(
                "cgroup files not readable for "
                + ", ".join(fallback)
                + "; reading those containers through the Docker stats API instead"
            )
        if not seen and not self._warned_empty:
            self._warnings.append(f"no container matches {self.selection()} (yet)")
            self._warned_empty = True
        api_down = any(c.via_api and not c.running for c in self._containers.values())
        self._next_discovery = now_mono + (
            min(1.0, self.rediscover_s) if api_down else self.rediscover_s
        )

    def _drop(self, container_id: str) -> None:
        container = self._containers.pop(container_id)
        self._inflight.pop(container_id, None)
        if container.reader is not None:
            container.reader.close()
        self._deltas.forget(container_id)

    def _attach(self, container: _Container) -> str | None:
        """Open the container's cgroup files, or switch it to the API; returns why it did."""
        container.attached = True
        if self.cgroup_root is None:
            container.via_api = True
            return None
        files = find_container_files(container.id, self.cgroup_root)
        if files is None:
            pid = self._init_pid(container.id)
            if pid:
                proc_paths = read_proc_cgroup(pid, self.proc_root)
                files = find_container_files(container.id, self.cgroup_root, proc_paths)
        if files is None:
            container.via_api = True
            return f"not found under {self.cgroup_root}"
        try:
            reader = CgroupReader(files)
            reader.read()
        except (OSError, ValueError, CgroupGone) as exc:
            container.via_api = True
            return _one_line(exc, 120)
        container.reader = reader
        return None

    def _init_pid(self, container_id: str) -> int | None:
        try:
            state = self._api.inspect_container(container_id).get("State") or {}
        except _docker_errors():
            return None
        pid = state.get("Pid")
        return int(pid) if pid else None

    # -- sampling -----------------------------------------------------------------------
    def sample(self) -> list[ResourceSample]:
        now_mono = time.monotonic()
        if now_mono >= self._next_discovery:
            self._discover(now_mono)
        samples = []
        for container in list(self._containers.values()):
            if not container.via_api:
                row = self._sample_cgroup(container)
                if row is not None:
                    samples.append(row)
        via_api = [c for c in self._containers.values() if c.via_api]
        if via_api or self._inflight:
            samples.extend(self._sample_api_all(via_api))
        return samples

    def _sample_cgroup(self, container: _Container) -> ResourceSample | None:
        if not container.attached or self.cgroup_root is None:
            return None
        if container.reader is None:
            # Stopped, or restarted since the last sample: its cgroup is a new directory.
            files = find_container_files(container.id, self.cgroup_root)
            if files is None:
                return None
            try:
                container.reader = CgroupReader(files)
            except OSError:
                return None
        ts = time.time()
        clock_s = time.monotonic()
        try:
            counters = container.reader.read()
        except (CgroupGone, OSError, ValueError):
            container.reader.close()
            container.reader = None
            self._deltas.forget(container.id)
            # Removed and recreated under the same name means a new id: look again soon.
            self._next_discovery = min(self._next_discovery, time.monotonic() + 1.0)
            return None
        throttled = (
            self._deltas.increase((container.id, "throttled"), clock_s, counters.cpu_throttled_s)
            if counters.cpu_throttled_s is not None
            else None
        )
        limit_mb = bytes_to_mb(counters.mem_limit_bytes)
        if limit_mb is None or (self._host_mem_mb is not None and limit_mb > self._host_mem_mb):
            limit_mb = self._host_mem_mb  # no limit: the host's memory is the limit
        return ResourceSample(
            ts_unix_s=ts,
            source="container",
            target=container.name,
            cpu_cores=self._deltas.rate((container.id, "cpu"), clock_s, counters.cpu_usage_s),
            mem_mb=bytes_to_mb(counters.mem_working_set_bytes),
            mem_limit_mb=limit_mb,
            cpu_throttled_s=throttled,
            host=self.host,
            container_id=container.id[:12],
        )

    def _sample_api_all(self, containers: list[_Container]) -> list[ResourceSample]:
        """Collect the answers that arrived since the last tick and ask again, all at once.

        A one-shot stats call returns at the daemon's next collection round (up to 1 s), so
        calls in turn would take about a second per container. Made concurrently they all
        return in the same round; the rows carry the daemon's read time, so answering one
        tick later costs no accuracy.
        """
        samples = []
        for container in containers:
            pending = self._inflight.get(container.id)
            if pending is not None:
                if not pending.done():
                    continue
                del self._inflight[container.id]
                row = self._api_row(container, pending)
                if row is not None:
                    samples.append(row)
            if container.running:
                self._inflight[container.id] = self._executor().submit(
                    self._api.stats, container.id, stream=False, one_shot=True
                )
        return samples

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=_API_WORKERS, thread_name_prefix="capacity-docker-stats"
            )
        return self._pool

    def _api_row(self, container: _Container, answer: Future[Any]) -> ResourceSample | None:
        error = answer.exception()
        counters = counters_from_stats(answer.result()) if error is None else None
        if counters is None:
            # Stopped, removed, or the daemon is gone: a gap; discovery says which.
            self._deltas.forget(container.id)
            container.running = False
            self._next_discovery = 0.0
            return None
        clock_s = counters.clock_s if counters.clock_s is not None else time.monotonic()
        cpu_cores = self._deltas.rate((container.id, "cpu"), clock_s, counters.cpu_usage_s)
        throttled = (
            self._deltas.increase((container.id, "throttled"), clock_s, counters.cpu_throttled_s)
            if counters.cpu_throttled_s is not None
            else None
        )
        return ResourceSample(
            ts_unix_s=counters.read_unix_s or time.time(),
            source="container",
            target=container.name,
            cpu_cores=cpu_cores,
            mem_mb=bytes_to_mb(counters.mem_working_set_bytes),
            mem_limit_mb=bytes_to_mb(counters.mem_limit_bytes) or self._host_mem_mb,
            cpu_throttled_s=throttled,
            host=self.host,
            container_id=container.id[:12],
        )
