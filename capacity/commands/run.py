"""`capacity run [SCENARIO]`: one measured run, from stack to report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from capacity.errors import EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS
from capacity.runner import DEFAULT_STATE_DIR, REPO_ROOT, RunOptions, run_scenario

DEFAULT_SCENARIO = REPO_ROOT / "scenarios" / "smoke.toml"
VERDICT_EXIT = {"pass": EXIT_PASS, "fail": EXIT_FAIL, "inconclusive": EXIT_INCONCLUSIVE}


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
        default=DEFAULT_SCENARIO,
        help="scenario TOML file (default: scenarios/smoke.toml)",
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
    p.set_defaults(func=run)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    options = RunOptions(
        scenario_path=args.scenario,
        reports_root=args.reports,
        state_dir=args.state_dir,
        keep_stack=args.keep_stack,
    )
    result = run_scenario(options, say)
    summary = result.summary
    say(f"verdict: {summary['verdict']}")
    for reason in summary.get("reasons", []):
        say(f"  - {reason}")
    for slo in summary.get("slos", []):
        if slo["passed"] is False:
            say(f"  FAIL {slo['target']} {slo['metric']}: {slo['value']} > {slo['limit']}")
    print(result.run_dir / "report.html")
    return VERDICT_EXIT[summary["verdict"]]
