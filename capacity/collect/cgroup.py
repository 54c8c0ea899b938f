"""Container CPU and memory counters read straight from cgroup files (v1 and v2).

Reading three small files costs microseconds, against milliseconds for a Docker stats API
call, which is what lets the collector watch 20 containers at 1 Hz for well under 1% of a core.
File descriptors stay open between samples: a `pread` is ten times cheaper than open/read/close,
and a descriptor whose cgroup was removed (the container stopped or restarted) fails with ENODEV,
which is how a restart is told apart from a counter that merely moved.

Layouts handled (the root is injectable so tests can build fake trees):
- v1, cgroupfs driver: `<root>/<controller>/docker/<id>/`
- v1, systemd driver: `<root>/<controller>/system.slice/docker-<id>.scope/`
- v2, systemd driver: `<root>/system.slice/docker-<id>.scope/`
- v2, cgroupfs driver: `<root>/docker/<id>/`
- anything else: the path named in `/proc/<pid>/cgroup` of the container's init process.
Controllers may be co-mounted (`cpu,cpuacct`). A hybrid host (v1 controllers plus an empty
cgroup2 at `<root>/unified`) is read as v1, where the controllers are.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_ROOT = Path("/proc")

# cgroup v1 reports "no limit" as the largest page-aligned int64; anything this big is unlimited.
_V1_UNLIMITED_BYTES = 1 << 60
_READ_SIZE = 16384


class CgroupGone(Exception):
    """The cgroup behind an open reader disappeared (container stopped, restarted or removed)."""


@dataclass(frozen=True)
class CgroupCounters:
    """One raw reading of a container's cgroup; cumulative counters, not rates."""

    cpu_usage_s: float
    cpu_throttled_s: float | None
    mem_working_set_bytes: int
    mem_limit_bytes: int | None  # None = no limit set on the cgroup


@dataclass(frozen=True)
class CgroupFiles:
    """The files that hold one container's counters; v1 spreads them over controllers."""

    version: int
    cpu_usage: Path  # v1 cpuacct.usage (ns); v2 cpu.stat (usage_usec)
    cpu_stat: Path  # v1 cpu.stat (throttled_time ns); v2 cpu.stat (throttled_usec)
    mem_usage: Path  # v1 memory.usage_in_bytes; v2 memory.current
    mem_stat: Path  # inactive_file (v1 total_inactive_file)
    mem_limit: Path  # v1 memory.limit_in_bytes; v2 memory.max


def detect_version(root: Path = CGROUP_ROOT) -> int | None:
    """Return 2 for a pure unified hierarchy, 1 when v1 controllers are mounted, else None."""
    if (root / "cgroup.controllers").is_file():
        return 2
    for controller in ("memory", "cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
        if (root / controller).is_dir():
            return 1
    return None


def keyed_value(text: str, key: str) -> int | None:
    """One value of a flat keyed file, without parsing the other lines.

    memory.stat has 30-40 lines and only two matter; parsing them all into a dict was most
    of the cost of a sample.
    """
    start = 0
    needle = key + " "
    while True:
        found = text.find(needle, start)
        if found < 0:
            return None
        if found == 0 or text[found - 1] == "\n":
            end = text.find("\n", found)
            try:
                return int(text[found + len(needle) : end if end >= 0 else None])
            except ValueError:
                return None
        start = found + 1


def parse_limit(text: str, version: int) -> int | None:
    """Parse a memory limit file: v2 writes `max`, v1 a huge number, for no limit."""
    value = text.strip()
    if not value or value == "max":
        return None
    limit = int(value)
    if version == 1 and limit >= _V1_UNLIMITED_BYTES:
        return None
    return limit


def working_set_bytes(usage_bytes: int, inactive_file_bytes: int | None) -> int:
    """Usage minus inactive file cache, as the docker CLI and cAdvisor compute it.

    Page cache that the kernel would drop first is not memory the container needs; counting
    it would make every container that reads files look like it is running out of memory.
    Under v1 the figure is `total_inactive_file` (the cgroup and its children), under v2
    `inactive_file`.
    """
    return max(0, usage_bytes - (inactive_file_bytes or 0))


def inactive_file_key(version: int) -> str:
    """The memory.stat key that working_set_bytes subtracts."""
    return "total_inactive_file" if version == 1 else "inactive_file"


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Map each controller of a `/proc/<pid>/cgroup` file to its path; "" is the v2 entry."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
            continue
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def _controller_mounts(root: Path, controller: str) -> list[Path]:
    """Directories where a v1 controller may be mounted, separate or co-mounted."""
    names = (
        [controller, "cpu,cpuacct", "cpuacct,cpu"]
        if controller in ("cpu", "cpuacct")
        else [controller]
    )
    return [root / name for name in names if (root / name).is_dir()]


def _candidate_subpaths(container_id: str, proc_path: str | None) -> list[str]:
    subpaths = [f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"]
    if proc_path and proc_path not in ("/", ""):
        subpaths.append(proc_path.lstrip("/"))
    return subpaths


def _first_dir_with(bases: Iterable[Path], subpaths: list[str], filename: str) -> Path | None:
    for base in bases:
        for sub in subpaths:
            candidate = base / sub
            if (candidate / filename).exists():
                return candidate
    return None


def read_proc_cgroup(pid: int, proc_root: Path = PROC_ROOT) -> dict[str, str]:
    """Controller -> cgroup path of a process, or {} when it cannot be read."""
    try:
        return parse_proc_cgroup((proc_root / str(pid) / "cgroup").read_text())
    except OSError:
        return {}


def find_container_files(
    container_id: str,
    root: Path = CGROUP_ROOT,
    proc_paths: dict[str, str] | None = None,
) -> CgroupFiles | None:
    """Locate a container's cgroup files by its full id, or via its init process's paths.

    Returns None when the layout is unknown or the container's directories are not there
    (not visible from here, a remote engine, or the container is not running).
    """
    version = detect_version(root)
    proc_paths = proc_paths or {}
    if version == 2:
        found = _first_dir_with(
            [root], _candidate_subpaths(container_id, proc_paths.get("")), "memory.current"
        )
        if found is None:
            return None
        return CgroupFiles(
            version=2,
            cpu_usage=found / "cpu.stat",
            cpu_stat=found / "cpu.stat",
            mem_usage=found / "memory.current",
            mem_stat=found / "memory.stat",
            mem_limit=found / "memory.max",
        )
    if version == 1:
        cpuacct = _first_dir_with(
            _controller_mounts(root, "cpuacct"),
            _candidate_subpaths(container_id, proc_paths.get("cpuacct")),
            "cpuacct.usage",
        )
        cpu = _first_dir_with(
            _controller_mounts(root, "cpu"),
            _candidate_subpaths(container_id, proc_paths.get("cpu")),
            "cpu.stat",
        )
        memory = _first_dir_with(
            _controller_mounts(root, "memory"),
            _candidate_subpaths(container_id, proc_paths.get("memory")),
            "memory.usage_in_bytes",
        )
        if cpuacct is None or memory is None:
            return None
        return CgroupFiles(
            version=1,
            cpu_usage=cpuacct / "cpuacct.usage",
            cpu_stat=(cpu or cpuacct) / "cpu.stat",
            mem_usage=memory / "memory.usage_in_bytes",
            mem_stat=memory / "memory.stat",
            mem_limit=memory / "memory.limit_in_bytes",
        )
    return None


class CgroupReader:
    """Reads one container's counters through descriptors kept open between samples."""

    def __init__(self, files: CgroupFiles) -> None:
        self.files = files
        self._fds: dict[Path, int] = {}
        required = (files.cpu_usage, files.mem_usage, files.mem_stat, files.mem_limit)
        try:
            for path in required:
                if path not in self._fds:
                    self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            # Throttling is optional: a v1 host may mount cpuacct without the cpu controller.
            if files.cpu_stat not in self._fds and files.cpu_stat.exists():
                self._fds[files.cpu_stat] = os.open(files.cpu_stat, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.close()
            raise

    def _read(self, path: Path) -> str:
        fd = self._fds.get(path)
        if fd is None:
            return ""
        try:
            return os.pread(fd, _READ_SIZE, 0).decode("ascii", "replace")
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT, errno.ESTALE):
                raise CgroupGone(str(path.parent)) from exc
            raise

    def read(self) -> CgroupCounters:
        """Read the counters now; raises CgroupGone once the cgroup has been removed."""
        files = self.files
        if files.version == 2:
            cpu_stat = self._read(files.cpu_usage)
            usage_us = keyed_value(cpu_stat, "usage_usec")
            if usage_us is None:
                raise CgroupGone(str(files.cpu_usage.parent))
            cpu_usage_s = usage_us / 1e6
            throttled_us = keyed_value(cpu_stat, "throttled_usec")
            throttled_s = throttled_us / 1e6 if throttled_us is not None else None
        else:
            usage_text = self._read(files.cpu_usage).strip()
            if not usage_text:
                raise CgroupGone(str(files.cpu_usage.parent))
            cpu_usage_s = int(usage_text) / 1e9
            throttled_ns = keyed_value(self._read(files.cpu_stat), "throttled_time")
            throttled_s = throttled_ns / 1e9 if throttled_ns is not None else None
        usage_text = self._read(files.mem_usage).strip()
        if not usage_text:
            raise CgroupGone(str(files.mem_usage.parent))
        mem_stat = self._read(files.mem_stat)
        limit = parse_limit(self._read(files.mem_limit), files.version)
        if files.version == 1:
            hierarchical = keyed_value(mem_stat, "hierarchical_memory_limit")
            if hierarchical is not None and hierarchical < _V1_UNLIMITED_BYTES:
                limit = hierarchical if limit is None else min(limit, hierarchical)
        inactive = keyed_value(mem_stat, inactive_file_key(files.version))
        return CgroupCounters(
            cpu_usage_s=cpu_usage_s,
            cpu_throttled_s=throttled_s,
            mem_working_set_bytes=working_set_bytes(int(usage_text), inactive),
            mem_limit_bytes=limit,
        )

    def close(self) -> None:
        """Close every descriptor; the reader cannot be used afterwards."""
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
