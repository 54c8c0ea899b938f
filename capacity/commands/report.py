"""`capacity report RUN_DIR`: re-make summary.json, report.html and report.md from a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from capacity.commands.run import VERDICT_EXIT
from capacity.report.build import build_report


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="render a run folder's summary and reports",
        description="Re-make summary.json, report.html and report.md from a run folder alone "
        "(also a partial one: a killed run is reported and marked partial). "
        "Exit code follows the verdict: 0 pass, 1 fail, 3 inconclusive.",
        epilog="example: capacity report reports/20261126-220501-smoke",
    )
    p.add_argument("run_dir", type=Path, help="run folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = build_report(args.run_dir)
    print(args.run_dir / "report.html")
    return VERDICT_EXIT[summary["verdict"]]
