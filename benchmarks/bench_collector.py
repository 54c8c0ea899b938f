"""Benchmark: the collector's own CPU while sampling N idle containers at 1 Hz.

Starts N idle busybox containers on the engine from .ci/docker-setup.sh (DOCKER_HOST), samples
them with the cgroup-file path and then with the stats-API path, and prints each path's CPU
as a percentage of one core (process CPU time / wall time) and its cost per sample. The target
is at most 1% of one core for 20 containers at 1 Hz on the cgroup path.

    python benchmarks/bench_collector.py [--containers 20] [--duration 60] [--api-duration 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capacity.collect import DockerSource, Sampler, read_resources

IMAGE = "capacity-busybox:latest"
PRIVATE_SOCKET = Path("/var/run/capacity-docker.sock")
BUDGET_PCT = 1.0


@dataclass
class Result:
    path: str
    wall_s: float
    cpu_s: float
    ticks: int
    rows: int
    busy_s: float

    @property
    def cpu_pct(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s

    def line(self, containers: int) -> str:
        per_tick_ms = 1000.0 * self.cpu_s / max(self.ticks, 1)
        per_sample_us = 1e6 * self.cpu_s / max(self.rows, 1)
        return (
            f"{self.path:<10} {self.cpu_pct:6.3f}% of one core   {per_tick_ms:7.3f} ms CPU/tick   "
            f"{per_sample_us:8.1f} us CPU/sample   {1000 * self.busy_s / max(self.ticks, 1):7.2f} "
            f"ms wall/tick   {self.ticks} ticks, {self.rows} rows "
            f"({self.rows / max(self.ticks, 1):.1f}/tick of {containers})"
        )


def measure(source: DockerSource, path: str, duration_s: float, interval_s: float) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "resources.csv"
        sampler = Sampler([source], out, interval_s=interval_s, on_warning=print)
        cpu0, wall0 = time.process_time(), time.monotonic()
        sampler.start()
        time.sleep(duration_s)
        rows = sampler.stop()
        cpu_s, wall_s = time.process_time() - cpu0, time.monotonic() - wall0
        assert len(read_resources(out)) == rows
    return Result(path, wall_s, cpu_s, sampler.ticks, rows, sampler.busy_s)


def start_containers(client: Any, count: int, prefix: str) -> list[Any]:
    started = []
    for index in range(count):
        started.append(
            client.containers.run(
                IMAGE,
                ["sleep", "3600"],
                name=f"{prefix}{index:02d}",
                detach=True,
                labels={"capacity-test": prefix},
            )
        )
    return started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per path")
    parser.add_argument("--api-duration", type=float, default=None, help="default: --duration")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)

    if not os.environ.get("DOCKER_HOST") and PRIVATE_SOCKET.exists():
        os.environ["DOCKER_HOST"] = f"unix://{PRIVATE_SOCKET}"
    import docker

    client = docker.from_env(timeout=30)
    prefix = f"capbench-{uuid.uuid4().hex[:6]}-"
    print(f"starting {args.containers} idle containers ({prefix}*) ...", flush=True)
    started = start_containers(client, args.containers, prefix)
    try:
        pattern = prefix + "*"
        cgroup_source = DockerSource(pattern=pattern)
        print(cgroup_source.describe(), flush=True)
        api_source = DockerSource(pattern=pattern, cgroup_root=None)

        t0 = time.monotonic()
        client.api.stats(started[0].id, stream=False)
        stream_false_s = time.monotonic() - t0
        t0 = time.monotonic()
        client.api.stats(started[0].id, stream=False, one_shot=True)
        one_shot_s = time.monotonic() - t0

        print(f"sampling at {1 / args.interval:g} Hz for {args.duration:g} s per path ...")
        cgroup = measure(cgroup_source, "cgroup", args.duration, args.interval)
        api = measure(api_source, "stats-api", args.api_duration or args.duration, args.interval)
    finally:
        for container in started:
            container.remove(force=True)
        client.close()

    print()
    print(cgroup.line(args.containers))
    print(api.line(args.containers))
    print(
        f"one stats call for one container: stream=false {stream_false_s:.2f} s, "
        f"one-shot {one_shot_s:.3f} s (wall)"
    )
    ok = cgroup.cpu_pct <= BUDGET_PCT and cgroup.rows >= 0.9 * cgroup.ticks * args.containers
    verdict = "PASS" if ok else "FAIL"
    print(f"{verdict}: cgroup path {cgroup.cpu_pct:.3f}% of one core (budget {BUDGET_PCT}%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
