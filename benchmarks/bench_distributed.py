"""Benchmark: distributed efficiency, master + 2 workers against one Locust process.

Both arms run the real GraphQL locustfile with the toolkit's plugin (recording, slices, the
run folder) against one fixed-answer nginx endpoint, at the same time, pinned to the same CPU
(nginx on the other): each arm saturates its share, and their ratio cancels whatever else the
machine does in that window. An arm's figure is requests per Locust CPU second over a
measured window after a warm-up: requests from its own slices.jsonl, CPU from every process
of the arm (the master too, which sends no requests but merges the workers' slices).

Efficiency = (distributed requests per CPU s) / (single-process requests per CPU s); the
target (issue 14) is at least 0.9.

    python benchmarks/bench_distributed.py [--rounds 3] [--users 20] [--warmup 5] [--window 12]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _locust_bench import (  # noqa: E402
    ArmResult,
    emit_and_exit,
    load_average,
    run_children_together,
    split_cpus,
)
from bench_graphql_driver import fast_endpoint  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPO_ROOT / "capacity" / "locustfiles" / "graphql_ops.py"
TARGET = 0.9
SCENARIO = """
[scenario]
name = "bench-distributed"
[targets]
gateway = "{url}"
embedded_stack = false
[targets.graphql]
client_name = ""
[load]
users = {users}
spawn_rate = {users}
duration_s = {duration}
[data.customers]
csv = "{data}/customers.csv"
[users.graphql]
wait_s = [0.0, 0.0]
[[users.graphql.operations]]
document = "{docs}/customer.graphql"
variables = {{ id = "${{customers.id}}" }}
"""


def run_arm(kind: str, url: str, users: int, warmup_s: float, window_s: float) -> None:
    """One arm as a process tree; prints its window's requests and CPU (`emit_and_exit`)."""
    import psutil

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-dist-{kind}-"))
    scenarios = REPO_ROOT / "capacity" / "scenarios"
    duration = int(warmup_s + window_s + 3)
    scenario = tmp / "scenario.toml"
    scenario.write_text(
        SCENARIO.format(
            url=url, users=users, duration=duration, data=scenarios / "data",
            docs=scenarios / "graphql",
        )
    )  # fmt: skip
    run_dir = tmp / "run"
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--scenario", str(scenario)]
    common = ["--no-preflight", "--only-summary", "--loglevel", "WARNING"]
    load = ["-u", str(users), "-r", str(users), "-t", f"{duration}s"]
    if kind == "single":
        cmds = [[*base, "--headless", "--run-dir", str(run_dir), *common, *load]]
    else:
        port = _free_port()
        cmds = [
            [*base, "--headless", "--run-dir", str(run_dir), *common, *load, "--master",
             "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
             "--expect-workers", "2"],
        ] + [
            [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
             "--loglevel", "WARNING"]
            for _ in range(2)
        ]  # fmt: skip
    procs = [
        subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
        for c in cmds
    ]
    tree = [psutil.Process(p.pid) for p in procs]
    time.sleep(warmup_s + (1.0 if kind != "single" else 0.0))
    t0, cpu0 = time.time(), sum(_cpu(p) for p in tree)
    time.sleep(window_s)
    t1, cpu1 = time.time(), sum(_cpu(p) for p in tree)
    for p in procs:
        p.wait(timeout=duration + 60)
    rate = _rate(run_dir, t0, t1)
    emit_and_exit(ArmResult(kind, int(rate * (t1 - t0)), 0, t1 - t0, cpu1 - cpu0))


def _cpu(proc: object) -> float:
    times = proc.cpu_times()  # type: ignore[attr-defined]
    return float(times.user + times.system)


def _rate(run_dir: Path, t0: float, t1: float) -> float:
    """Requests per second over [t0, t1] from the slices whose midpoint lies inside."""
    count = 0
    span: dict[str, float] = {}
    for line in (run_dir / "slices.jsonl").read_text().splitlines():
        record = json.loads(line)
        mid = (record["t_start_s"] + record["t_end_s"]) / 2
        if t0 <= mid <= t1:
            count += sum(op["count"] for op in record["ops"].values())
            worker = record["worker"]
            span[worker] = span.get(worker, 0.0) + record["t_end_s"] - record["t_start_s"]
    return count / max(span.values()) if span else 0.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--window", type=float, default=12.0)
    p.add_argument("--child", choices=("single", "distributed"))
    p.add_argument("--url")
    args = p.parse_args(argv)
    if args.child:
        run_arm(args.child, args.url, args.users, args.warmup, args.window)
        return 0
    cpus = split_cpus()
    server_cpus, load_cpus = cpus if cpus else (None, None)
    print(f"load average before: {load_average()}")
    ratios = []
    with fast_endpoint("auto", server_cpus) as (url, what):
        print(f"endpoint: {what}; arms pinned to CPU {sorted(load_cpus or [])}")
        for round_no in range(1, args.rounds + 1):
            argvs = [
                [str(Path(__file__).resolve()), "--child", kind, "--url", url,
                 "--users", str(args.users), "--warmup", str(args.warmup),
                 "--window", str(args.window)]
                for kind in ("single", "distributed")
            ]  # fmt: skip
            single, dist = run_children_together(argvs, 300, load_cpus)
            ratio = dist.per_cpu_s / single.per_cpu_s if single.per_cpu_s else 0.0
            ratios.append(ratio)
            print(
                f"round {round_no}: single {single.per_cpu_s:7.1f} req/CPU-s "
                f"({single.per_s:6.1f} req/s, {single.cpu_cores:.2f} cores); distributed "
                f"{dist.per_cpu_s:7.1f} req/CPU-s ({dist.per_s:6.1f} req/s, "
                f"{dist.cpu_cores:.2f} cores); ratio {ratio:.3f}",
                flush=True,
            )
    median = statistics.median(ratios)
    print(f"load average after: {load_average()}")
    verdict = "PASS" if median >= TARGET else "FAIL"
    print(
        f"{verdict} distributed efficiency {median:.3f} (median of {len(ratios)}; "
        f"target >= {TARGET})"
    )
    return 0 if median >= TARGET else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
