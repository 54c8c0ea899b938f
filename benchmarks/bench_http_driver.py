"""Benchmark: the rules scenario through the HTTP driver against the former rules driver.

`scenarios/rules.toml` runs through `[users.rules]`, which the HTTP driver now serves (one
configuration of it: `POST /evaluate` per rule set, one body and its outcome assertions per
case). The "before" arm is the dedicated rules driver as it was (`_rules_driver_before.py`,
frozen). Both arms send the same rule-set cases to the same rules-engine stand-in (started
here alone on a free port, its CPU burn knob at 0, pinned to the first CPUs), each arm in its
own Locust process with constant(0) users, side by side on the last CPU. The figure compared
is requests completed per CPU second of the Locust process; the ratio judged is the median
over rounds of each round's http/before ratio, target >= 0.97 (within 3%). Any failed
request invalidates the run: both arms check every outcome, so a failure means a wrong
answer or a broken driver, not load.

    .venv/bin/python benchmarks/bench_http_driver.py [--rounds 5] [--window 10] [--check]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _locust_bench import (
    ArmResult,
    emit_and_exit,
    load_average,
    measure_locust,
    median_of,
    pin_to,
    print_rounds,
    run_children_together,
    split_cpus,
)
from bench_graphql_driver import free_port, wait_listening

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIO = REPO_ROOT / "scenarios" / "rules.toml"
ARMS = ("http", "before")
MIN_RATIO = 0.97


def user_class(arm: str, url: str) -> type:
    """The arm's user class, built from rules.toml's `[users.rules]` with constant(0) waits."""
    import dataclasses

    from locust import constant

    from capacity.scenario import load_scenario

    scenario = load_scenario(SCENARIO)
    targets = dataclasses.replace(scenario.targets, rules_url=url)
    spec = dataclasses.replace(scenario.users["rules"], wait_s=(0.0, 0.0), weight=1)
    if arm == "http":
        from capacity.drivers.http import make_http_user
        from capacity.scenario.calls import rules_requests

        cls = make_http_user(
            spec, targets, {}, "HttpRulesUser", requests=rules_requests(spec.rule_sets),
            trace_sample_rate=0.0,
        )  # fmt: skip
    else:
        from _rules_driver_before import make_rules_user

        cls = make_rules_user(spec, targets, "BeforeRulesUser")
    cls.wait_time = constant(0)  # type: ignore[attr-defined]
    return cls


def run_arm(args: argparse.Namespace) -> None:
    def count(stats: Any) -> tuple[int, int]:
        total = stats.total
        return total.num_requests - total.num_failures, total.num_failures

    cls = user_class(args.child, args.url)
    emit_and_exit(measure_locust(args.child, [cls], args.users, args.warmup, args.window, count))


@contextmanager
def rules_engine(cpus: set[int] | None) -> Iterator[str]:
    """The rules-engine stand-in alone on a free port, without its CPU burn (stopped after)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "capacity.stack.serve", "rules-engine", "--port", str(port),
         "--tuning-json", json.dumps({"cpu_ms": 0.0})],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=pin_to(cpus),
    )  # fmt: skip
    try:
        wait_listening(port, proc, "rules-engine")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def child_argv(arm: str, url: str, args: argparse.Namespace) -> list[str]:
    return [
        str(Path(__file__).resolve()), "--child", arm, "--url", url, "--users", str(args.users),
        "--warmup", str(args.warmup), "--window", str(args.window),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of both arms")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per arm")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the window")
    parser.add_argument("--users", type=int, default=10, help="concurrent users per arm")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="no CPU pinning")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if ratio < {MIN_RATIO}")
    parser.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.child:
        run_arm(args)
        return 0
    cpus = split_cpus() if args.pin else None
    with rules_engine(cpus[0] if cpus else None) as url:
        print(f"rules engine: {url} (capacity.stack.serve, cpu_ms 0), scenario {SCENARIO.name}")
        print(
            f"{args.rounds} rounds x {len(ARMS)} arms side by side, {args.users} users each, "
            f"constant(0) waits, {args.warmup:g} s warm-up + {args.window:g} s window"
        )
        if cpus:
            print(f"CPUs: rules engine on {sorted(cpus[0])}, Locust arms on {sorted(cpus[1])}")
        print(f"load average at start: {load_average()}", flush=True)
        rows: list[tuple[int, ArmResult]] = []
        for round_no in range(1, args.rounds + 1):
            order = ARMS if round_no % 2 else tuple(reversed(ARMS))
            argvs = [child_argv(arm, url, args) for arm in order]
            timeout_s = args.warmup + args.window + 60
            for result in run_children_together(argvs, timeout_s, cpus[1] if cpus else None):
                rows.append((round_no, result))
                print(
                    f"  round {round_no} {result.arm:<6} {result.per_s:8.1f} req/s "
                    f"{result.per_cpu_s:8.1f} req/CPU-s ({result.failures} failed)",
                    flush=True,
                )
            time.sleep(0.5)
    print(f"load average at end: {load_average()}\n")
    print_rounds(rows)
    return report(rows, args.check)


def report(rows: list[tuple[int, ArmResult]], check: bool) -> int:
    by_arm = {arm: [r for _n, r in rows if r.arm == arm] for arm in ARMS}
    print(f"\n{'arm':<8} {'median req/s':>13} {'median req/CPU-s':>17} {'failures':>9}")
    for arm, results in by_arm.items():
        print(
            f"{arm:<8} {median_of(results, lambda r: r.per_s):>13.1f} "
            f"{median_of(results, lambda r: r.per_cpu_s):>17.1f} "
            f"{sum(r.failures for r in results):>9}"
        )
    per_round = [
        next(r for n, r in rows if n == k and r.arm == "http").per_cpu_s
        / next(r for n, r in rows if n == k and r.arm == "before").per_cpu_s
        for k in sorted({n for n, _r in rows})
    ]
    ratio = statistics.median(per_round)
    failures = sum(r.failures for _n, r in rows)
    print(
        f"\nratio http/before (median over rounds of req per Locust CPU second): {ratio:.3f}  "
        f"(per round: {', '.join(f'{x:.3f}' for x in per_round)}; threshold {MIN_RATIO})"
    )
    if failures:
        print(f"FAIL: {failures} failed requests; the comparison is not valid")
    elif ratio < MIN_RATIO:
        print(f"FAIL: ratio {ratio:.3f} is below {MIN_RATIO}")
    else:
        print(f"PASS: ratio {ratio:.3f} >= {MIN_RATIO}")
    return 1 if check and (failures or ratio < MIN_RATIO) else 0


if __name__ == "__main__":
    sys.exit(main())
