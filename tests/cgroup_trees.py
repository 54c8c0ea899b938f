"""Builders of fake cgroup v1/v2 trees (both drivers) for the collector's unit tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

V1_UNLIMITED = 9223372036854771712


@dataclass
class Figures:
    """Counter values written into a fake cgroup."""

    cpu_usage_ns: int = 5_000_000_000
    throttled_ns: int = 250_000_000
    mem_usage_bytes: int = 300 * 1024 * 1024
    inactive_file_bytes: int = 100 * 1024 * 1024
    limit_bytes: int | None = 512 * 1024 * 1024


def v1_dirs(root: Path, container_id: str, driver: str, comount: bool) -> dict[str, Path]:
    """Create v1 controller directories for a container; returns controller -> directory."""
    sub = (
        f"docker/{container_id}"
        if driver == "cgroupfs"
        else (f"system.slice/docker-{container_id}.scope")
    )
    if comount:
        shared = root / "cpu,cpuacct"
        (shared / sub).mkdir(parents=True, exist_ok=True)
        for alias in ("cpu", "cpuacct"):
            if not (root / alias).exists():
                (root / alias).symlink_to("cpu,cpuacct")
        dirs = {"cpu": shared / sub, "cpuacct": shared / sub}
    else:
        dirs = {name: root / name / sub for name in ("cpu", "cpuacct")}
    dirs["memory"] = root / "memory" / sub
    (root / "pids").mkdir(parents=True, exist_ok=True)
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return dirs


def write_v1(dirs: dict[str, Path], figures: Figures) -> None:
    (dirs["cpuacct"] / "cpuacct.usage").write_text(f"{figures.cpu_usage_ns}\n")
    (dirs["cpu"] / "cpu.stat").write_text(
        f"nr_periods 40\nnr_throttled 12\nthrottled_time {figures.throttled_ns}\n"
    )
    memory = dirs["memory"]
    (memory / "memory.usage_in_bytes").write_text(f"{figures.mem_usage_bytes}\n")
    limit = figures.limit_bytes if figures.limit_bytes is not None else V1_UNLIMITED
    (memory / "memory.limit_in_bytes").write_text(f"{limit}\n")
    (memory / "memory.stat").write_text(
        "cache 104857600\nrss 209715200\n"
        f"inactive_file {figures.inactive_file_bytes // 2}\n"
        f"hierarchical_memory_limit {limit}\n"
        f"total_inactive_file {figures.inactive_file_bytes}\n"
        "total_active_file 4096\n"
    )


def v2_dir(root: Path, container_id: str, driver: str, subpath: str | None = None) -> Path:
    """Create a v2 container directory; a pure unified root has cgroup.controllers."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    if subpath is None:
        subpath = (
            f"docker/{container_id}"
            if driver == "cgroupfs"
            else (f"system.slice/docker-{container_id}.scope")
        )
    path = root / subpath
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_v2(path: Path, figures: Figures) -> None:
    (path / "cpu.stat").write_text(
        f"usage_usec {figures.cpu_usage_ns // 1000}\nuser_usec 1\nsystem_usec 1\n"
        f"nr_periods 40\nnr_throttled 12\nthrottled_usec {figures.throttled_ns // 1000}\n"
    )
    (path / "memory.current").write_text(f"{figures.mem_usage_bytes}\n")
    (path / "memory.max").write_text(
        "max\n" if figures.limit_bytes is None else f"{figures.limit_bytes}\n"
    )
    (path / "memory.stat").write_text(
        f"anon 209715200\nfile 104857600\ninactive_file {figures.inactive_file_bytes}\n"
        "active_file 4096\n"
    )


def make_container(
    root: Path,
    container_id: str,
    version: int,
    driver: str,
    figures: Figures,
    comount: bool = False,
) -> None:
    """A container's cgroup in the given layout, filled with figures."""
    if version == 1:
        write_v1(v1_dirs(root, container_id, driver, comount), figures)
    else:
        write_v2(v2_dir(root, container_id, driver), figures)
