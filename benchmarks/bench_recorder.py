"""Benchmark: the recorder's cost per request (CPU) and its memory over millions of requests.

CPU: one Locust FastHttpUser (in this process, no wait) against a local server that answers at
once (tests/servers.py, its own process), in alternating rounds with and without the
recorder's `events.request` listener; prints this process's CPU time per request for each and
their ratio (target <= 1.05, comparing the medians of the rounds).

Memory: this process's RSS after 1M and after 10M `on_request` calls through a SliceRecorder
writing to a real slices.jsonl, a slice closed every 100k calls (target: growth <= 50 MB).

    python benchmarks/bench_recorder.py [--rounds 6] [--round-s 4] [--calls 10000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gevent
import psutil
from locust import FastHttpUser, constant, events, task
from locust.env import Environment

from capacity.recorder import INTENDED_START_KEY, SliceRecorder
from capacity.runfolder import SliceWriter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import running_server  # noqa: E402

CPU_RATIO_BUDGET = 1.05
MEM_GROWTH_BUDGET_MB = 50.0


class FastUser(FastHttpUser):
    wait_time = constant(0)
    host = ""

    @task
    def get(self) -> None:
        self.client.get("/", name="bench fast")


def cpu_per_request_us(env: Environment, round_s: float) -> tuple[float, int]:
    runner = env.runner
    assert runner is not None
    runner.start(1, spawn_rate=1)
    gevent.sleep(0.5)  # connection set up, first requests out of the way
    env.stats.reset_all()
    t0 = os.times()
    gevent.sleep(round_s)
    t1 = os.times()
    count = env.stats.total.num_requests
    runner.stop()
    cpu_s = (t1.user + t1.system) - (t0.user + t0.system)
    return cpu_s / max(count, 1) * 1e6, count


def bench_cpu(rounds: int, round_s: float) -> float:
    with running_server("delay", "--dist", "none") as server:
        FastUser.host = server.url
        env = Environment(user_classes=[FastUser], events=events)
        env.create_local_runner()
        recorder = SliceRecorder(lambda record: None, worker="bench")
        results: dict[bool, list[float]] = {False: [], True: []}
        for i in range(rounds * 2):
            with_recorder = i % 2 == 1
            if with_recorder:
                env.events.request.add_listener(recorder.on_request)
            us, count = cpu_per_request_us(env, round_s)
            if with_recorder:
                env.events.request.remove_listener(recorder.on_request)
                recorder.close_slice()
            results[with_recorder].append(us)
            label = "with recorder   " if with_recorder else "without recorder"
            print(f"  round {i + 1:2d} {label}: {us:7.1f} us CPU/request over {count} requests")
    off, on = statistics.median(results[False]), statistics.median(results[True])
    ratio = on / off
    verdict = "ok" if ratio <= CPU_RATIO_BUDGET else "OVER BUDGET"
    print(
        f"CPU per request: without {off:.1f} us, with recorder {on:.1f} us, "
        f"ratio {ratio:.3f} (budget {CPU_RATIO_BUDGET}) {verdict}"
    )
    return ratio


def bench_memory(calls: int) -> float:
    proc = psutil.Process()
    names = [f"graphql Op{i}" for i in range(10)]
    with tempfile.TemporaryDirectory() as tmp:
        writer = SliceWriter(Path(tmp))
        recorder = SliceRecorder(writer, worker="bench")
        rss_mb: dict[int, float] = {}
        checkpoints = {1_000_000, calls}
        started = time.perf_counter()
        context = {INTENDED_START_KEY: 0.0}
        now = time.time()
        for i in range(1, calls + 1):
            # latencies from 0.1 ms to ~1.6 s; every 4th request from an open-model iteration
            latency_ms = 0.1 + (i * 7919 % 16_000_000) / 10_000.0
            if i & 3:
                recorder.on_request(names[i % 10], latency_ms)
            else:
                context[INTENDED_START_KEY] = now - 0.002
                recorder.on_request(names[i % 10], latency_ms, None, context, start_time=now)
            if i % 100_000 == 0:
                recorder.close_slice()
            if i in checkpoints:
                rss_mb[i] = proc.memory_info().rss / 2**20
                rate = i / (time.perf_counter() - started)
                print(f"  after {i:>10,} requests: RSS {rss_mb[i]:7.1f} MB ({rate:,.0f} calls/s)")
        writer.close()
    growth = rss_mb[calls] - rss_mb[1_000_000]
    verdict = "ok" if growth <= MEM_GROWTH_BUDGET_MB else "OVER BUDGET"
    print(
        f"memory growth from 1M to {calls / 1e6:g}M requests: {growth:+.1f} MB "
        f"(budget {MEM_GROWTH_BUDGET_MB:g} MB) {verdict}"
    )
    return growth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=6, help="rounds with and without, each")
    parser.add_argument("--round-s", type=float, default=4.0)
    parser.add_argument("--calls", type=int, default=10_000_000)
    args = parser.parse_args()
    print("recorder CPU, one FastHttpUser against a local instant server:")
    ratio = bench_cpu(args.rounds, args.round_s)
    print("recorder memory:")
    growth = bench_memory(max(args.calls, 1_000_000))
    ok = ratio <= CPU_RATIO_BUDGET and growth <= MEM_GROWTH_BUDGET_MB
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
