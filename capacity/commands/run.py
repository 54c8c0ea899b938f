"""`capacity run [SCENARIO]`: one measured run, from stack to report."""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from capacity import shipped
from capacity.errors import ConfigError, exit_code_for, worst_exit
from capacity.report.text import verdict_text
from capacity.runner import DEFAULT_STATE_DIR, RunOptions, run_scenario
from capacity.scenario import load_scenario
from capacity.stack.embedded import EmbeddedStack


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a scenario and write a report",
        description="Run a scenario: start the embedded stack if the scenario targets it, check "
        "every target, run Locust headless while sampling resources, and write "
        "reports/<run-id>/ (run.json, slices.jsonl, resources.csv, summary.json, report.html, "
        "report.md). Exit 0 pass, 1 an SLO failed, 2 bad input, 3 inconclusive.",
        epilog="example: capacity run scenarios/smoke.toml",
    )
    p.add_argument(
        "scenario",
        nargs="?",
        type=Path,
        default=None,
        help="scenario TOML file (default: the shipped smoke scenario)",
    )
    p.add_argument(
        "--reports",
        type=Path,
        default=Path("reports"),
        help="folder that receives the run folder (default: reports)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="embedded stack state folder (default: .capacity/stack)",
    )
    p.add_argument(
        "--keep-stack",
        action="store_true",
        help="leave an embedded stack this run started running afterwards",
    )
    p.add_argument(
        "--share-stack",
        action="store_true",
        help="run even if another run holds the embedded stack (both runs are marked shared "
        "and cannot pass)",
    )
    p.add_argument(
        "--repeat",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run the scenario N times, one run folder each (for capacity check)",
    )
    p.add_argument(
        "--interleave",
        type=Path,
        default=None,
        metavar="SCENARIO",
        help="with --repeat: alternate with runs of this scenario (e.g. a baseline build's "
        "targets), A B A B ..., so drift hits both sides alike",
    )
    p.add_argument(
        "--time-scale",
        type=_positive_float,
        default=None,
        metavar="X",
        help="multiply every duration of the scenario by X (e.g. 0.1 to try a soak quickly)",
    )
    p.add_argument(
        "--workers",
        type=_workers_count,
        default=0,
        metavar="N",
        help="run Locust as a master plus N worker processes on this machine (default 0: one "
        "process); see deploy/README.md for workers on other machines",
    )
    # --- results store (capacity.history) ---
    p.add_argument(
        "--history",
        metavar="DB",
        help="results store each completed run is recorded in: a SQLite file or a "
        "postgresql:// URL (default: $CAPACITY_HISTORY, else .capacity/history.sqlite)",
    )
    p.add_argument("--no-history", action="store_true", help="do not record the run")
    p.add_argument(
        "--sut-revision",
        metavar="REV",
        help="revision of the system under test, kept in the run's fingerprint "
        "(default: $CAPACITY_SUT_REVISION)",
    )
    p.set_defaults(func=run)


def _workers_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 0 and 64, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be in (0, 100], got {value}")
    return value


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.scenario is None:
        args.scenario = shipped.scenario_path()
    if args.interleave is not None and args.repeat < 2:
        raise ConfigError("--interleave needs --repeat N with N >= 2")
    plan = [args.scenario] * args.repeat
    if args.interleave is not None:
        plan = [p for _ in range(args.repeat) for p in (args.scenario, args.interleave)]
    if len(plan) == 1:
        return _one_run(args, args.scenario, None)
    codes: list[int] = []
    group = uuid.uuid4().hex[:12]
    keep_state = load_scenario(plan[0], time_scale=args.time_scale or 1.0).stack_keep_state
    with _shared_stack(args, plan) as stack:
        for i, scenario in enumerate(plan, start=1):
            say(f"run {i} of {len(plan)}: {scenario}")
            repeat: dict[str, Any] = {
                "group": group,
                "index": (i - 1) // (len(plan) // args.repeat),
            }
            repeat["of"] = args.repeat
            if args.interleave is not None:
                repeat["side"] = "A" if i % 2 else "B"
            reset = None
            if stack is not None and i > 1:
                reset = "not reset: [stack] keep_state = true" if keep_state else stack.reset()
            codes.append(_one_run(args, scenario, stack, repeat=repeat, reset=reset))
    return worst_exit(codes)


@contextlib.contextmanager
def _shared_stack(args: argparse.Namespace, plan: list[Path]) -> Iterator[EmbeddedStack | None]:
    """Start the embedded stack once for repeated runs, held by this process for all of them."""
    scenario = load_scenario(plan[0], time_scale=args.time_scale or 1.0)
    if not scenario.targets.embedded_stack:
        yield None
        return
    with EmbeddedStack(
        scenario, args.state_dir.absolute(), say, share=args.share_stack, keep=args.keep_stack
    ) as stack:
        yield stack


def _one_run(
    args: argparse.Namespace,
    scenario: Path,
    stack: EmbeddedStack | None,
    *,
    repeat: dict[str, Any] | None = None,
    reset: str | None = None,
) -> int:
    options = RunOptions(
        scenario_path=scenario,
        reports_root=args.reports,
        state_dir=args.state_dir,
        keep_stack=args.keep_stack,
        workers=args.workers,
        time_scale=args.time_scale or 1.0,
        share_stack=args.share_stack,
        repeat=repeat,
        reset=reset,
    )
    result = run_scenario(options, say, stack=stack)
    summary = result.summary
    # --- results store: recording never changes the verdict or the exit code ---
    if not args.no_history:
        _record(args, result.run_dir, summary)
    say(verdict_text(summary, result.run_dir).removeprefix("capacity: "))
    print(result.run_dir / "report.html", flush=True)
    return exit_code_for(summary["verdict"])


def _record(args: argparse.Namespace, run_dir: Path, summary: dict[str, Any]) -> None:
    """Record a completed run in the results store; a failure is one warning line."""
    from capacity.history.record import record_run
    from capacity.history.store import redact, resolve_location

    try:
        record_run(run_dir, summary, args.history, sut_revision=args.sut_revision)
    except Exception as exc:  # noqa: BLE001 - the run's verdict stands whatever the store does
        detail = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        say(f"warning: run not recorded in {redact(resolve_location(args.history))}: {detail}")
