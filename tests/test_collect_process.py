"""ProcessSource (a service with children, a dead pid) and HostSource on real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from capacity.collect import HostSource, ProcessSource, Sampler, read_resources

# The parent sleeps; its child burns CPU and holds 80 MB. Only counting children sees either.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(child.pid, flush=True)
time.sleep(60)
"""
CHILD = """
import time
block = bytearray(80 * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
end = time.monotonic() + 60
while time.monotonic() < end:
    pass
"""
MB = 1024 * 1024


@pytest.fixture
def service() -> Iterator[tuple[subprocess.Popen[str], int]]:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        yield parent, child_pid
    finally:
        for proc in (psutil.Process(child_pid) if psutil.pid_exists(child_pid) else None, parent):
            if proc is not None:
                proc.kill()
        parent.wait(timeout=10)


def test_service_includes_its_children(
    service: tuple[subprocess.Popen[str], int], tmp_path: Path
) -> None:
    parent, child_pid = service
    child = psutil.Process(child_pid)
    deadline = time.monotonic() + 10
    while child.memory_info().rss < 80 * MB and time.monotonic() < deadline:
        time.sleep(0.05)
    source = ProcessSource({"worker": parent.pid})
    cpu_before = sum(child.cpu_times()[:2])
    with Sampler([source], tmp_path / "r.csv", interval_s=0.25):
        time.sleep(1.6)
    cpu_after = sum(child.cpu_times()[:2])
    frame = read_resources(tmp_path / "r.csv")
    assert set(frame["target"]) == {"worker"} and set(frame["source"]) == {"process"}
    assert frame["cpu_cores"].isna().iloc[0]
    measured = frame["cpu_cores"].dropna()
    assert len(measured) >= 4
    # The child's own accounting over the same window is the reference (a loaded machine
    # may give it less than a full core).
    truth_cores = (cpu_after - cpu_before) / 1.6
    assert measured.mean() == pytest.approx(truth_cores, rel=0.25)
    assert measured.mean() > 0.3
    assert frame["mem_mb"].min() >= 80  # the child's 80 MB is in the service's figure
    assert frame["mem_limit_mb"].isna().all()


def test_dead_pid_is_a_gap_with_one_warning(service: tuple[subprocess.Popen[str], int]) -> None:
    parent, child_pid = service
    short = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    source = ProcessSource({"short": short.pid, "worker": parent.pid, "never": 2**22 + 7})
    first_warnings = source.take_warnings()
    assert len(first_warnings) == 1 and "never" in first_warnings[0]
    assert {s.target for s in source.sample()} == {"short", "worker"}
    short.kill()
    short.wait()
    assert {s.target for s in source.sample()} == {"worker"}
    assert {s.target for s in source.sample()} == {"worker"}
    warnings = source.take_warnings()
    assert len(warnings) == 1 and "short" in warnings[0]


def test_host_totals() -> None:
    source = HostSource()
    first = source.sample()[0]
    time.sleep(0.2)
    second = source.sample()[0]
    assert first.cpu_cores is None and first.source == "host" and first.target == "host"
    assert second.cpu_cores is not None
    assert 0 <= second.cpu_cores <= psutil.cpu_count() * 1.05
    total_mb = psutil.virtual_memory().total / MB
    assert second.mem_limit_mb == pytest.approx(total_mb)
    assert second.mem_mb is not None and 0 < second.mem_mb < total_mb
