"""Benchmark: `capacity find` against the shipped capacity sweep, same stack, one run.

Starts the embedded stack on free ports, retargets scenarios/capacity-sweep.toml to it (the
rules engine tuned to 8 ms of CPU per request: the bottleneck), then runs the shipped sweep
(`capacity run`, ~5 minutes) and `capacity find` on the same scenario, one after the other
on the same stack, timing each from command start to exit. The two cannot share the stack
at the same moment (each would be the other's load), so "side by side" here means in one
invocation, back to back, with the load average printed around both.

Judged: find's SLO-limited capacity within 10% of the sweep's (`capacity.slo_capacity.max_rps`
in the sweep's summary) and find's wall time at most a third of the sweep's.

    python benchmarks/bench_find.py [--check] [--order sweep-first|find-first]
        [--probe-s 6] [--resolution 0.05] [--skip-sweep SWEEP_RPS:SWEEP_S]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import retarget  # noqa: E402

from capacity.stack import supervisor  # noqa: E402
from capacity.stack.supervisor import StackConfig  # noqa: E402

MAX_ANSWER_DIFF = 0.10
MAX_TIME_RATIO = 1 / 3


def capacity(*args: str, timeout_s: float) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "capacity", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
    )
    return proc, time.monotonic() - started


def run_sweep(
    scenario: Path, reports: Path, state_dir: Path
) -> tuple[float, float, dict[str, Any]]:
    proc, wall_s = capacity(
        "run", str(scenario), "--reports", str(reports), "--state-dir", str(state_dir),
        "--no-history", timeout_s=900,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"sweep failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads((Path(lines[-1]).parent / "summary.json").read_text())
    cap = summary["capacity"]["slo_capacity"]
    return float(cap["max_rps"]), wall_s, summary


def run_find(
    scenario: Path, reports: Path, state_dir: Path, extra: list[str]
) -> tuple[float | None, float, dict[str, Any]]:
    proc, wall_s = capacity(
        "find", str(scenario), "--reports", str(reports), "--state-dir", str(state_dir),
        *extra, timeout_s=900,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"find failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    data = json.loads((Path(lines[-1]).parent / "find.json").read_text())
    return data["capacity_rps"], wall_s, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--order", choices=("sweep-first", "find-first"), default="sweep-first")
    parser.add_argument("--probe-s", default="6")
    parser.add_argument("--resolution", default="0.05")
    parser.add_argument(
        "--skip-sweep",
        metavar="RPS:SECONDS",
        help="use this sweep answer and time instead of running the sweep (for trying find)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-find-"))
    config = StackConfig(ports=supervisor.pick_free_ports(), state_dir=tmp / "stack")
    print(f"load average at start: {os.getloadavg()}")
    state = supervisor.up(config, timeout_s=120)
    try:
        shutil.copytree(REPO / "scenarios", tmp / "scenarios")
        scenario = tmp / "scenarios" / "capacity-sweep.toml"
        scenario.write_text(retarget(scenario.read_text(encoding="utf-8"), state))
        find_extra = ["--probe-s", args.probe_s, "--resolution", args.resolution]
        results: dict[str, tuple[Any, float, dict[str, Any]]] = {}
        order = ["sweep", "find"] if args.order == "sweep-first" else ["find", "sweep"]
        for arm in order:
            if arm == "sweep":
                if args.skip_sweep:
                    rps, seconds = (float(x) for x in args.skip_sweep.split(":"))
                    results["sweep"] = (rps, seconds, {})
                else:
                    results["sweep"] = run_sweep(scenario, tmp / "sweep", config.state_dir)
            else:
                results["find"] = run_find(scenario, tmp / "find", config.state_dir, find_extra)
            print(f"{arm}: {results[arm][0]} req/s in {results[arm][1]:.0f} s")
    finally:
        supervisor.down(config.state_dir)
    print(f"load average at end: {os.getloadavg()}")
    sweep_rps, sweep_s, sweep = results["sweep"]
    find_rps, find_s, found = results["find"]
    if sweep:
        print(f"sweep headline: {sweep['capacity']['headline']}")
    print(f"find headline: {found['headline']}")
    for p in found["probes"]:
        print(
            f"  probe {p['index']}: {p['rate_per_s']:7.1f}/s -> {p['outcome']:<7} "
            f"throughput {p['throughput_rps']}/s P95 {p['p95_ms']} ms ({p['wall_s']} s)"
        )
    # A capacity from an unfinished search (out of probes) is a lower bound, not an answer.
    ok = find_rps is not None and found["status"] == "found"
    diff = (find_rps / sweep_rps - 1) if find_rps is not None else float("nan")
    ratio = find_s / sweep_s
    ok = ok and abs(diff) <= MAX_ANSWER_DIFF and ratio <= MAX_TIME_RATIO
    print(
        f"sweep {sweep_rps:.1f} req/s in {sweep_s:.0f} s; find {found['status']}: {find_rps} "
        f"req/s (interval {found['interval_rps']}) in {find_s:.0f} s"
    )
    print(
        f"answer difference {diff:+.1%} (target within {MAX_ANSWER_DIFF:.0%}); time ratio "
        f"{ratio:.3f} (target <= {MAX_TIME_RATIO:.3f}): {'PASS' if ok else 'FAIL'}"
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
