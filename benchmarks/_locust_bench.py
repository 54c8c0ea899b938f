"""Shared parts of the driver benchmarks: one Locust arm per child process, medians, tables.

Each arm runs in its own fresh process so the two arms never share a gevent hub, a
connection pool or a temporalio runtime, and so `getrusage(RUSAGE_SELF)` counts exactly one
arm's CPU (every thread of that process: gevent hub, asyncio bridge thread, temporalio's Rust
threads). The parent never imports Locust, so it is not monkey-patched. A child prints one
JSON line as its last line of output and leaves with `os._exit`, because temporalio's runtime
threads can crash an interpreter that finalizes normally.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "


@dataclass(frozen=True)
class ArmResult:
    """One arm's measured window: completed operations, failures, wall and CPU seconds."""

    arm: str
    count: int
    failures: int
    wall_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.count / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def per_cpu_s(self) -> float:
        return self.count / self.cpu_s if self.cpu_s > 0 else 0.0

    @property
    def cpu_cores(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def process_cpu_s() -> float:
    """User + system CPU seconds of this whole process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_locust(
    arm: str,
    user_classes: Sequence[type],
    users: int,
    warmup_s: float,
    window_s: float,
    count: Callable[[Any], tuple[int, int]],
) -> ArmResult:
    """Run Locust as a library in this process and measure one window after a warm-up.

    `count(stats)` returns (successes, failures) so far. All users spawn at once; the
    warm-up lets connections open and rates settle before the window's first snapshot.
    The Environment gets its own Events, so no plugin hooks (run folders) fire.
    """
    import gevent
    from locust.env import Environment

    env = Environment(user_classes=list(user_classes))
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=max(users, 1))
    gevent.sleep(warmup_s)
    ok0, failed0 = count(env.stats)
    cpu0, wall0 = process_cpu_s(), time.monotonic()
    gevent.sleep(window_s)
    ok1, failed1 = count(env.stats)
    cpu1, wall1 = process_cpu_s(), time.monotonic()
    runner.quit()
    return ArmResult(arm, ok1 - ok0, failed1 - failed0, wall1 - wall0, cpu1 - cpu0)


def emit_and_exit(result: ArmResult) -> None:
    """Print the child's result line and leave without interpreter finalization."""
    print(RESULT_PREFIX + json.dumps(asdict(result)), flush=True)
    sys.stderr.flush()
    os._exit(0)


def run_child(argv: Sequence[str], timeout_s: float) -> ArmResult:
    """Run one arm in a child Python process and parse its result line."""
    proc = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=timeout_s
    )
    return parse_result(argv, proc.returncode, proc.stdout, proc.stderr)


def parse_result(argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> ArmResult:
    """The child's result line, or an error with the end of its output."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return ArmResult(**json.loads(line[len(RESULT_PREFIX) :]))
    tail = (stdout[-1500:] + stderr[-1500:]).strip()
    arm = " ".join(argv[1:])
    raise RuntimeError(f"arm {arm} exited {returncode} without a result:\n{tail}")


def run_children_together(
    argvs: Sequence[Sequence[str]], timeout_s: float, cpus: set[int] | None
) -> list[ArmResult]:
    """Run arms at the same time, optionally all pinned to `cpus`; results in argv order.

    Arms measured side by side share whatever the machine does during the window (other
    tenants, frequency changes, a noisy neighbour), so their ratio cancels it; run one after
    the other on this shared VM, the same arm's rate moved by 30% from window to window.
    """
    procs = [
        subprocess.Popen(
            [sys.executable, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=pin_to(cpus),
        )
        for argv in argvs
    ]
    results = []
    for argv, proc in zip(argvs, procs, strict=True):
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise RuntimeError(f"arm {' '.join(argv[1:])} took over {timeout_s:.0f} s") from None
        results.append(parse_result(argv, proc.returncode, out, err))
    return results


def pin_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A `preexec_fn` pinning the child to `cpus` (None: no pinning)."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(server CPUs, load-generator CPU) when there are 2+ CPUs: the arms share the last one."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return set(cpus[:-1]), {cpus[-1]}


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} CPUs)"


def median_of(results: Sequence[ArmResult], metric: Callable[[ArmResult], float]) -> float:
    return statistics.median(metric(r) for r in results)


def print_rounds(rows: Sequence[tuple[int, ArmResult]]) -> None:
    """One line per arm per round: count, failures, rate, CPU, rate per CPU second."""
    print(
        f"{'round':>5} {'arm':<8} {'count':>8} {'fail':>5} {'wall_s':>7} {'cpu_s':>7} "
        f"{'cores':>6} {'per_s':>9} {'per_cpu_s':>10}"
    )
    for round_no, r in rows:
        print(
            f"{round_no:>5} {r.arm:<8} {r.count:>8} {r.failures:>5} {r.wall_s:>7.2f} "
            f"{r.cpu_s:>7.2f} {r.cpu_cores:>6.2f} {r.per_s:>9.1f} {r.per_cpu_s:>10.1f}"
        )


MIN_RATIO = 0.9  # both driver benchmarks: the driver keeps 90% of its plain baseline


def print_verdict(
    label: str, ratio: float, per_round: list[float], failures: int, what: str, check: bool
) -> int:
    """Print the ratio line and PASS/FAIL against MIN_RATIO; the exit code under --check."""
    print(
        f"\nratio {label}: {ratio:.3f}  "
        f"(per round: {', '.join(f'{x:.3f}' for x in per_round)}; threshold {MIN_RATIO})"
    )
    if failures:
        print(f"FAIL: {failures} failed {what}; the comparison is not valid")
    elif ratio < MIN_RATIO:
        print(f"FAIL: ratio {ratio:.3f} is below {MIN_RATIO}")
    else:
        print(f"PASS: ratio {ratio:.3f} >= {MIN_RATIO}")
    return 1 if check and (failures or ratio < MIN_RATIO) else 0
