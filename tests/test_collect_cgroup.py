"""cgroup v1/v2 layouts with the cgroupfs and systemd drivers, on fake trees in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from cgroup_trees import Figures, make_container, v1_dirs, v2_dir, write_v1, write_v2

from capacity.collect.cgroup import (
    CgroupGone,
    CgroupReader,
    detect_version,
    find_container_files,
    keyed_value,
    parse_limit,
    parse_proc_cgroup,
    working_set_bytes,
)

CID = "8921e70e505dbc8d5ed01ea3df7a2c82526878cdeb1fbc65ec7e1f724f1d3129"
MB = 1024 * 1024

LAYOUTS = [
    pytest.param(1, "cgroupfs", False, id="v1-cgroupfs"),
    pytest.param(1, "systemd", False, id="v1-systemd"),
    pytest.param(1, "cgroupfs", True, id="v1-cgroupfs-comounted"),
    pytest.param(1, "systemd", True, id="v1-systemd-comounted"),
    pytest.param(2, "cgroupfs", False, id="v2-cgroupfs"),
    pytest.param(2, "systemd", False, id="v2-systemd"),
]


@pytest.mark.parametrize(("version", "driver", "comount"), LAYOUTS)
def test_reads_every_layout(tmp_path: Path, version: int, driver: str, comount: bool) -> None:
    figures = Figures(
        cpu_usage_ns=7_250_000_000,
        throttled_ns=1_500_000_000,
        mem_usage_bytes=300 * MB,
        inactive_file_bytes=100 * MB,
        limit_bytes=512 * MB,
    )
    make_container(tmp_path, CID, version, driver, figures, comount=comount)
    # Another container next to it must not be picked up instead.
    make_container(tmp_path, "f" * 64, version, driver, Figures(cpu_usage_ns=1), comount=comount)

    assert detect_version(tmp_path) == version
    files = find_container_files(CID, tmp_path)
    assert files is not None and files.version == version
    assert CID in str(files.mem_usage)
    reader = CgroupReader(files)
    try:
        counters = reader.read()
    finally:
        reader.close()
    assert counters.cpu_usage_s == pytest.approx(7.25)
    assert counters.cpu_throttled_s == pytest.approx(1.5)
    assert counters.mem_working_set_bytes == 200 * MB  # usage minus inactive_file
    assert counters.mem_limit_bytes == 512 * MB


@pytest.mark.parametrize(("version", "driver", "comount"), LAYOUTS)
def test_no_limit_reads_as_none(tmp_path: Path, version: int, driver: str, comount: bool) -> None:
    make_container(tmp_path, CID, version, driver, Figures(limit_bytes=None), comount=comount)
    files = find_container_files(CID, tmp_path)
    assert files is not None
    reader = CgroupReader(files)
    assert reader.read().mem_limit_bytes is None
    reader.close()


def test_unknown_container_or_tree(tmp_path: Path) -> None:
    assert find_container_files(CID, tmp_path) is None  # nothing mounted
    make_container(tmp_path, "a" * 64, 1, "cgroupfs", Figures())
    assert find_container_files(CID, tmp_path) is None


def test_hybrid_host_reads_v1_controllers(tmp_path: Path) -> None:
    """v1 controllers plus an empty cgroup2 at <root>/unified (this CI machine's layout)."""
    make_container(tmp_path, CID, 1, "cgroupfs", Figures())
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("\n")
    assert detect_version(tmp_path) == 1
    files = find_container_files(CID, tmp_path)
    assert files is not None and files.version == 1


def test_v2_path_from_proc_cgroup(tmp_path: Path) -> None:
    """A layout we do not guess (e.g. nested under kubepods) is found via /proc/<pid>/cgroup."""
    root = tmp_path / "cgroup"
    path = v2_dir(root, CID, "systemd", subpath=f"kubepods.slice/pod1/cri-{CID[:12]}")
    write_v2(path, Figures(cpu_usage_ns=2_000_000_000))
    assert find_container_files(CID, root) is None
    proc = parse_proc_cgroup(f"0::/kubepods.slice/pod1/cri-{CID[:12]}\n")
    files = find_container_files(CID, root, proc)
    assert files is not None
    reader = CgroupReader(files)
    assert reader.read().cpu_usage_s == pytest.approx(2.0)
    reader.close()


def test_v1_path_from_proc_cgroup(tmp_path: Path) -> None:
    for controller in ("cpu", "cpuacct", "memory"):
        (tmp_path / controller / "custom" / "c1").mkdir(parents=True)
    dirs = {c: tmp_path / c / "custom" / "c1" for c in ("cpu", "cpuacct", "memory")}
    write_v1(dirs, Figures(mem_usage_bytes=64 * MB, inactive_file_bytes=0))
    text = "12:memory:/custom/c1\n3:cpu,cpuacct:/custom/c1\n1:name=systemd:/custom/c1\n0::/\n"
    files = find_container_files(CID, tmp_path, parse_proc_cgroup(text))
    assert files is not None
    reader = CgroupReader(files)
    assert reader.read().mem_working_set_bytes == 64 * MB
    reader.close()


def test_v1_hierarchical_limit_applies(tmp_path: Path) -> None:
    """A limit set on a parent cgroup shows as hierarchical_memory_limit in memory.stat."""
    dirs = v1_dirs(tmp_path, CID, "cgroupfs", comount=False)
    write_v1(dirs, Figures(limit_bytes=None))
    stat = dirs["memory"] / "memory.stat"
    stat.write_text(
        stat.read_text().replace(
            "hierarchical_memory_limit 9223372036854771712", f"hierarchical_memory_limit {256 * MB}"
        )
    )
    files = find_container_files(CID, tmp_path)
    assert files is not None
    assert CgroupReader(files).read().mem_limit_bytes == 256 * MB


def test_emptied_cgroup_reads_as_gone(tmp_path: Path) -> None:
    make_container(tmp_path, CID, 2, "cgroupfs", Figures())
    files = find_container_files(CID, tmp_path)
    assert files is not None
    reader = CgroupReader(files)
    reader.read()
    files.cpu_usage.write_text("")
    with pytest.raises(CgroupGone):
        reader.read()
    reader.close()


def test_parsers() -> None:
    assert keyed_value("usage_usec 10\nthrottled_usec x\n", "throttled_usec") is None
    assert parse_limit("max\n", 2) is None
    assert parse_limit("1048576\n", 2) == 1048576
    assert parse_limit("9223372036854771712\n", 1) is None
    assert parse_limit("1048576\n", 1) == 1048576
    assert working_set_bytes(100, 30) == 70
    assert working_set_bytes(100, None) == 100
    assert working_set_bytes(10, 30) == 0
    stat = "inactive_file 5\ntotal_inactive_file 30\nx_inactive_file 9\nlast 7"
    assert keyed_value(stat, "inactive_file") == 5
    assert keyed_value(stat, "total_inactive_file") == 30
    assert keyed_value(stat, "last") == 7
    assert keyed_value(stat, "active_file") is None
    assert keyed_value("total_inactive_file 30\n", "inactive_file") is None
    proc = parse_proc_cgroup(
        "9:name=systemd:/docker/abc\n4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/x\n"
    )
    assert proc["memory"] == "/docker/abc"
    assert proc["cpu"] == proc["cpuacct"] == "/docker/abc"
    assert proc[""] == "/x"
