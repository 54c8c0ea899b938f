"""Benchmark: Temporal workflow starts through the Locust driver and a plain asyncio script.

Starts the embedded stack on free ports (Temporal dev server, namespace vextrus, and the
worker in the `workflow` process), then runs two arms over a few rounds, each in its own
process with the same concurrency N, side by side (default; whatever the shared machine and
server do during a window hits both) or one after the other (`--mode alternate`): the
Locust driver (`make_workflow_user`, N users with constant(0) waits) and a plain asyncio
temporalio script (N coroutines starting workflows back to back on one Client). Both start
the same two workflow types with the same arguments, and do the same with each result
(`--results await`, the default: the driver reports every completion, the script awaits
every result in a task; `--results forget`: the driver's workflows are fire-and-forget,
`wait_result = false`, and the script does not await). Before every round (every arm, when
alternating) the previous workflows are drained (none left running), so each round starts
against an idle server and worker. Two figures, each the median over rounds of each round's
locust/asyncio ratio: successful starts per wall second (target >= 0.9) and CPU per start
(all threads of the arm's process; target <= 1.3).

    .venv/bin/python benchmarks/bench_temporal_driver.py [--rounds 3] [--users 10] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from _locust_bench import (
    MIN_RATIO,
    ArmResult,
    emit_and_exit,
    load_average,
    measure_locust,
    median_of,
    print_rounds,
    print_verdict,
    process_cpu_s,
    run_child,
    run_children_together,
)

ARMS = ("locust", "asyncio")
EXECUTION_TIMEOUT_S = 30.0
WORKFLOWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("PurchaseOrderApproval", {"vendorId": "V-001", "amount": 1000.0, "requestedBy": "bench"}),
    ("InvoicePosting", {"invoiceId": "INV-000001"}),
)
RUNNING_QUERY = 'ExecutionStatus="Running"'
MAX_CPU_RATIO = 1.3  # the driver's CPU per start against the bare script's


def locust_arm(args: argparse.Namespace) -> ArmResult:
    """The driver exactly as a scenario builds it, with constant(0) waits."""
    from locust import constant

    from capacity.drivers.temporal import make_workflow_user
    from capacity.scenario import UserClass, WorkflowLoad
    from capacity.scenario.model import WorkflowOptions

    options = WorkflowOptions(wait_result=False) if args.results == "forget" else None
    spec = UserClass(
        kind="workflows",
        wait_s=(0.0, 0.0),
        workflows=tuple(
            WorkflowLoad(name, wf_args, options=options) for name, wf_args in WORKFLOWS
        ),
        timeout_s=EXECUTION_TIMEOUT_S,
    )
    cls = make_workflow_user(spec, args.address, args.namespace, args.task_queue, {})
    cls.wait_time = constant(0)  # type: ignore[attr-defined]

    def count(stats: Any) -> tuple[int, int]:
        starts = [e for (name, _t), e in stats.entries.items() if name.startswith("workflow start")]
        failures = sum(e.num_failures for e in starts)
        return sum(e.num_requests for e in starts) - failures, failures

    return measure_locust("locust", [cls], args.users, args.warmup, args.window, count)


async def asyncio_arm(args: argparse.Namespace) -> ArmResult:
    """N coroutines starting workflows back to back on one Client; counts over the window."""
    from temporalio.client import Client

    client = await Client.connect(args.address, namespace=args.namespace)
    started = failed = 0
    stop = asyncio.Event()
    tracking: set[asyncio.Task[Any]] = set()

    async def starter() -> None:
        nonlocal started, failed
        while not stop.is_set():
            name, wf_args = random.choice(WORKFLOWS)
            try:
                handle = await client.start_workflow(
                    name,
                    dict(wf_args),
                    id=f"bench-{name}-{uuid.uuid4().hex[:16]}",
                    task_queue=args.task_queue,
                    execution_timeout=timedelta(seconds=EXECUTION_TIMEOUT_S),
                )
                started += 1
            except Exception:
                failed += 1
                continue
            if args.results == "await":
                task = asyncio.create_task(handle.result())
                tracking.add(task)
                task.add_done_callback(tracking.discard)

    tasks = [asyncio.create_task(starter()) for _ in range(args.users)]
    await asyncio.sleep(args.warmup)
    ok0, failed0, cpu0, wall0 = started, failed, process_cpu_s(), time.monotonic()
    await asyncio.sleep(args.window)
    ok1, failed1, cpu1, wall1 = started, failed, process_cpu_s(), time.monotonic()
    stop.set()
    await asyncio.gather(*tasks)
    return ArmResult("asyncio", ok1 - ok0, failed1 - failed0, wall1 - wall0, cpu1 - cpu0)


async def drain(args: argparse.Namespace) -> None:
    """Wait until no workflow runs, so the next arm meets an idle server and worker."""
    from temporalio.client import Client

    client = await Client.connect(args.address, namespace=args.namespace)
    deadline = time.monotonic() + args.drain_timeout
    while (running := (await client.count_workflows(RUNNING_QUERY)).count) > 0:
        if time.monotonic() > deadline:
            print(f"still {running} workflows running after {args.drain_timeout:g} s", flush=True)
            return
        await asyncio.sleep(0.5)


def run_drain(args: argparse.Namespace) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, *child_argv("drain", args)],
        capture_output=True,
        text=True,
        timeout=args.drain_timeout + 60,
    )
    if proc.returncode != 0 or proc.stdout.strip():
        raise SystemExit(f"drain failed: {(proc.stdout + proc.stderr).strip()[-1500:]}")
    return time.monotonic() - t0


def child_argv(arm: str, args: argparse.Namespace) -> list[str]:
    return [
        str(Path(__file__).resolve()),
        "--child",
        arm,
        "--address",
        args.address,
        "--namespace",
        args.namespace,
        "--task-queue",
        args.task_queue,
        "--users",
        str(args.users),
        "--warmup",
        str(args.warmup),
        "--window",
        str(args.window),
        "--drain-timeout",
        str(args.drain_timeout),
        "--results",
        args.results,
    ]


def run_child_mode(args: argparse.Namespace) -> None:
    """Child process: one arm (or the drain), then leave without finalization."""
    if args.child == "locust":
        emit_and_exit(locust_arm(args))
    if args.child == "asyncio":
        emit_and_exit(asyncio.run(asyncio_arm(args)))
    asyncio.run(drain(args))
    sys.stdout.flush()
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both arms")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per arm")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window")
    parser.add_argument("--users", type=int, default=10, help="concurrent starters per arm")
    parser.add_argument("--drain-timeout", type=float, default=180.0, help="seconds")
    parser.add_argument(
        "--results",
        choices=("await", "forget"),
        default="await",
        help="both arms await every workflow's result (default), or neither does",
    )
    parser.add_argument(
        "--mode",
        choices=("together", "alternate"),
        default="together",
        help="both arms at the same time against the stack (default), or one after the other",
    )
    parser.add_argument("--check", action="store_true", help=f"exit 1 if ratio < {MIN_RATIO}")
    parser.add_argument("--child", choices=(*ARMS, "drain"), help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--task-queue", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the endpoint or stack started here is always stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.child:
        run_child_mode(args)
        return 0

    from capacity.stack.supervisor import StackConfig, down, pick_free_ports, up

    with tempfile.TemporaryDirectory(prefix="bench-temporal-") as tmp:
        state_dir = Path(tmp) / "stack"
        print("starting the embedded stack on free ports ...", flush=True)
        state = up(StackConfig(ports=pick_free_ports(), state_dir=state_dir), timeout_s=120)
        try:
            args.address, args.namespace = state.temporal_address, state.namespace
            args.task_queue = state.task_queue
            rows = measure_rounds(args)
        finally:
            down(state_dir)
    print(f"load average at end: {load_average()}\n")
    print_rounds(rows)
    return report(rows, args.check)


def measure_rounds(args: argparse.Namespace) -> list[tuple[int, ArmResult]]:
    print(
        f"Temporal {args.address} namespace {args.namespace} task queue {args.task_queue}; "
        f"{args.rounds} rounds x {len(ARMS)} arms ({args.mode}), {args.users} concurrent "
        "starters each, "
        f"{args.warmup:g} s warm-up + {args.window:g} s window; both arms "
        + ("await each result" if args.results == "await" else "only start (fire-and-forget)")
    )
    print(f"load average at start: {load_average()}", flush=True)
    rows: list[tuple[int, ArmResult]] = []
    timeout_s = args.warmup + args.window + EXECUTION_TIMEOUT_S + 60
    for round_no in range(1, args.rounds + 1):
        order = ARMS if round_no % 2 else tuple(reversed(ARMS))
        if args.mode == "together":
            drained_s = run_drain(args)
            argvs = [child_argv(arm, args) for arm in order]
            results = run_children_together(argvs, timeout_s, cpus=None)
        else:
            results = []
            for arm in order:
                drained_s = run_drain(args)
                results.append(run_child(child_argv(arm, args), timeout_s=timeout_s))
        for result in results:
            rows.append((round_no, result))
            print(
                f"  round {round_no} {result.arm:<7} {result.per_s:7.1f} starts/s "
                f"({result.failures} failed; drained {drained_s:.1f} s before)",
                flush=True,
            )
    return rows


def report(rows: list[tuple[int, ArmResult]], check: bool) -> int:
    by_arm = {arm: [r for _n, r in rows if r.arm == arm] for arm in ARMS}
    print(
        f"\n{'arm':<8} {'median starts/s':>16} {'median starts/CPU-s':>20} "
        f"{'median CPU ms/start':>20} {'failures':>9}"
    )
    for arm, results in by_arm.items():
        print(
            f"{arm:<8} {median_of(results, lambda r: r.per_s):>16.1f} "
            f"{median_of(results, lambda r: r.per_cpu_s):>20.1f} "
            f"{median_of(results, cpu_ms_per_start):>20.3f} "
            f"{sum(r.failures for r in results):>9}"
        )
    pairs = [
        (
            next(r for n, r in rows if n == k and r.arm == "locust"),
            next(r for n, r in rows if n == k and r.arm == "asyncio"),
        )
        for k in sorted({n for n, _r in rows})
    ]
    # Each round pairs the arms under the same conditions; the median of the pairs is judged.
    per_round = [a.per_s / b.per_s for a, b in pairs]
    cpu_per_round = [cpu_ms_per_start(a) / cpu_ms_per_start(b) for a, b in pairs]
    failures = sum(r.failures for _n, r in rows)
    code = print_verdict(
        "locust/asyncio (median over rounds of starts/s)",
        statistics.median(per_round),
        per_round,
        failures,
        "starts",
        check,
    )
    cpu_ratio = statistics.median(cpu_per_round)
    print(
        f"\nratio locust/asyncio (median over rounds of CPU per start): {cpu_ratio:.3f}  "
        f"(per round: {', '.join(f'{x:.3f}' for x in cpu_per_round)}; "
        f"ceiling {MAX_CPU_RATIO})"
    )
    if cpu_ratio > MAX_CPU_RATIO:
        print(f"FAIL: the driver's CPU per start is {cpu_ratio:.2f}x the bare script's")
        return 1 if check else code
    print(f"PASS: CPU per start ratio {cpu_ratio:.3f} <= {MAX_CPU_RATIO}")
    return code


def cpu_ms_per_start(result: ArmResult) -> float:
    """CPU milliseconds (every thread of the arm's process) per successful start."""
    return result.cpu_s * 1000.0 / result.count if result.count else float("inf")


if __name__ == "__main__":
    sys.exit(main())
