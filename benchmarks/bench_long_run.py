"""Benchmark: `capacity report` and the progress reader on soak-length run folders.

Builds synthetic run folders of 15 minutes, 4 hours and 24 hours: real slice records (15
operations per 2 s slice, each with a real HDR histogram of ~60 requests, drawn from a pool
of recorded histograms), a 1 Hz resources.csv for eight targets, and a schema 2 run.json with
the smoke scenario's SLOs. Then, per folder, in a fresh process each:

- `capacity report DIR`: wall time and peak RSS (the process's maximum resident set);
- the progress reader per tick: the CPU time to read one tick's new slices (2.5 slices per
  worker) at the end of the file, with `SliceTail` (what `capacity run` uses) and, for
  comparison, re-reading the whole file (what it did before).

Targets (issue 14): the 24 h report's peak memory at most 1.2x the 15 min report's and under
500 MB, its wall time at most 30 s; the per-tick cost flat (24 h / 15 min at most 1.5).

    python benchmarks/bench_long_run.py [--hours 0.25 4 24] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPS = [
    f"{kind} Op{i}" for kind, n in (("graphql", 8), ("rules", 4), ("workflow", 3)) for i in range(n)
]
TARGETS = [
    "gateway",
    "master-data",
    "rules-engine",
    "workflow",
    "temporal",
    "host",
    "locust",
    "postgres",
]
SLICE_S = 2.0
T0 = 1_764_000_000.0
POOL = 64
REPORT_WALL_BUDGET_S = 30.0
REPORT_MEM_BUDGET_MB = 500.0
REPORT_MEM_RATIO_BUDGET = 1.2
TICK_RATIO_BUDGET = 1.5


def histogram_pool(seed: int) -> list[str]:
    """Recorded histograms (~60 requests each, lognormal around 20 ms), encoded as slices are."""
    from capacity.runfolder.histograms import encode_histogram, new_histogram

    rng = random.Random(seed)
    pool = []
    for _ in range(POOL):
        hist = new_histogram()
        for _ in range(60):
            hist.record_value(max(1, int(rng.lognormvariate(9.9, 0.6))))
        pool.append(encode_histogram(hist))
    return pool


def build(run_dir: Path, hours: float) -> dict[str, float]:
    """Write a run folder of `hours` of load; returns its slice count and file sizes."""
    run_dir.mkdir(parents=True)
    pools = {op: histogram_pool(i) for i, op in enumerate(OPS)}
    n_slices = int(hours * 3600 / SLICE_S)
    rng = random.Random(1)
    with (run_dir / "slices.jsonl").open("w") as fh:
        for i in range(n_slices):
            ops = {
                op: {
                    "count": 60,
                    "failures": 0,
                    "partial": 0,
                    "hist": pools[op][rng.randrange(POOL)],
                    "errors": {},
                }
                for op in OPS
            }
            record = {
                "schema": 1,
                "t_start_s": round(T0 + i * SLICE_S, 3),
                "t_end_s": round(T0 + (i + 1) * SLICE_S, 3),
                "worker": "bench-1",
                "users": 20,
                "ops": ops,
            }
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
    with (run_dir / "resources.csv").open("w") as fh:
        fh.write(
            "ts_unix_s,source,target,cpu_cores,mem_mb,mem_limit_mb,cpu_throttled_s,host,container_id\n"
        )
        for second in range(int(hours * 3600)):
            ts = T0 + second + 1
            for target in TARGETS:
                source = "host" if target == "host" else "process"
                cpu = 0.2 + 0.05 * rng.random()
                fh.write(
                    f"{ts:.3f},{source},{target},{cpu:.4f},{150 + rng.random():.3f},,,bench,\n"
                )
    slos = [
        {"kind": "operation", "pattern": "graphql *", "metric": "p95_ms", "limit": 500.0},
        {"kind": "operation", "pattern": "graphql *", "metric": "error_rate", "limit": 0.01},
        {"kind": "operation", "pattern": "rules *", "metric": "p95_ms", "limit": 50.0},
        {"kind": "service", "pattern": "*", "metric": "mem_mb_max", "limit": 512.0},
    ]
    meta = {
        "schema": 2,
        "run_id": run_dir.name,
        "scenario": "soak",
        "started_at": "2026-12-01T00:00:00Z",
        "status": "complete",
        "warmup_s": 60.0,
        "slice_s": SLICE_S,
        "load_started_at": T0,
        "load": {"users": 20, "duration_s": hours * 3600, "stages": [], "think_time_s": 0.4},
        "slos": slos,
        "host_cores": 2,
        "locust_exit_code": 0,
    }
    (run_dir / "run.json").write_text(json.dumps(meta))
    return {
        "slices": n_slices,
        "slices_mb": (run_dir / "slices.jsonl").stat().st_size / 2**20,
        "resources_mb": (run_dir / "resources.csv").stat().st_size / 2**20,
    }


MEASURE_REPORT = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
cmd = [sys.executable, "-m", "capacity", "report", sys.argv[1]]
done = subprocess.run(cmd, capture_output=True)
wall = time.perf_counter() - t0
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(wall, peak_kb / 1024, done.returncode)
"""

MEASURE_TICK = """
import json, sys, time
from pathlib import Path
from capacity.runfolder import SliceTail, iter_slices
run = Path(sys.argv[1])
lines = (run / "slices.jsonl").read_bytes().splitlines(keepends=True)
tick = b"".join(lines[-3:])  # one 5 s progress tick of new 2 s slices
tail = SliceTail(run)
tail.read_new(lambda r: None)  # where a run that long would stand
times = []
for _ in range(21):  # the median of 21 ticks: one tick is a fraction of a millisecond
    with (run / "slices.jsonl").open("ab") as fh:
        fh.write(tick)
    t0 = time.process_time()
    n = tail.read_new(lambda r: None)
    times.append(time.process_time() - t0)
tail_s = sorted(times)[len(times) // 2]
t0 = time.process_time(); m = sum(1 for _ in iter_slices(run)); full_s = time.process_time() - t0
with (run / "slices.jsonl").open("r+b") as fh:  # leave the folder as it was built
    fh.truncate(len(b"".join(lines)))
print(tail_s, full_s, n)
"""


def measure(run_dir: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE_REPORT, str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    wall_s, peak_mb, code = float(out[0]), float(out[1]), int(out[2])
    if code not in (0, 1, 3):
        raise SystemExit(f"capacity report {run_dir} exited {code}")
    tick = subprocess.run(
        [sys.executable, "-c", MEASURE_TICK, str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        "wall_s": wall_s,
        "peak_mb": peak_mb,
        "tick_ms": float(tick[0]) * 1000,
        "full_ms": float(tick[1]) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--hours", type=float, nargs="+", default=[0.25, 4.0, 24.0])
    p.add_argument("--keep", type=Path, help="build the folders here and keep them")
    args = p.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-long-run-"))
    results = {}
    try:
        for hours in args.hours:
            run_dir = root / f"run-{hours:g}h"
            if not (run_dir / "run.json").exists():
                t0 = time.perf_counter()
                info = build(run_dir, hours)
                print(f"built {run_dir.name}: {info['slices']:.0f} slices, slices.jsonl "
                      f"{info['slices_mb']:.1f} MB, resources.csv {info['resources_mb']:.1f} MB "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
            results[hours] = measure(run_dir)
            r = results[hours]
            print(f"{hours:g} h: report {r['wall_s']:.1f} s wall, peak RSS {r['peak_mb']:.0f} MB; "
                  f"progress tick {r['tick_ms']:.2f} ms CPU (re-reading the file: "
                  f"{r['full_ms']:.0f} ms)", flush=True)  # fmt: skip
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    shortest, longest = results[min(results)], results[max(results)]
    mem_ratio = longest["peak_mb"] / shortest["peak_mb"]
    tick_ratio = longest["tick_ms"] / max(shortest["tick_ms"], 1e-6)
    checks = [
        (f"longest report wall time {longest['wall_s']:.1f} s <= {REPORT_WALL_BUDGET_S:g} s",
         longest["wall_s"] <= REPORT_WALL_BUDGET_S),
        (f"longest report peak RSS {longest['peak_mb']:.0f} MB < {REPORT_MEM_BUDGET_MB:g} MB",
         longest["peak_mb"] < REPORT_MEM_BUDGET_MB),
        (f"peak RSS longest / shortest {mem_ratio:.2f} <= {REPORT_MEM_RATIO_BUDGET}",
         mem_ratio <= REPORT_MEM_RATIO_BUDGET),
        (f"progress tick longest / shortest {tick_ratio:.2f} <= {TICK_RATIO_BUDGET}",
         tick_ratio <= TICK_RATIO_BUDGET),
    ]  # fmt: skip
    for text, ok in checks:
        print(("PASS " if ok else "FAIL ") + text)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
