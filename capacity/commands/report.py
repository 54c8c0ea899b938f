"""`capacity report RUN_DIR`: re-make summary.json, report.html and report.md from a run folder."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from capacity.analysis.sweep import DEFAULT_HEADROOM
from capacity.errors import ConfigError, exit_code_for
from capacity.report.build import build_report


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="render a run folder's summary and reports",
        description=textwrap.fill(
            "Re-make summary.json, report.html and report.md from a run folder alone "
            "(also a partial one: a killed run is reported and marked partial). A run with two or "
            "more load stages also gets the capacity analysis: steps, scalability fit, knee, "
            "SLO-limited capacity, first bottleneck and a projection. "
            "Exit code follows the verdict: 0 pass, 1 fail, 3 inconclusive.",
            width=80,
        ),
        epilog="examples: capacity report reports/20261126-220501-smoke\n"
        "  capacity report reports/NEW --compare reports/OLD --target-rps 500",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="run folder")
    p.add_argument(
        "--compare",
        type=Path,
        metavar="OTHER_RUN_DIR",
        help="add a side-by-side comparison with another run folder (read, never written)",
    )
    p.add_argument(
        "--target-rps",
        type=float,
        metavar="RPS",
        help="project replicas, cores and memory for this load (default: 2x the measured maximum)",
    )
    p.add_argument(
        "--headroom",
        type=float,
        default=DEFAULT_HEADROOM,
        help="spare fraction of capacity kept in projections, 0 to <1 "
        f"(default {DEFAULT_HEADROOM})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.target_rps is not None and not args.target_rps > 0:
        raise ConfigError(f"--target-rps: expected a positive number, got {args.target_rps:g}")
    if not 0 <= args.headroom < 1:
        raise ConfigError(f"--headroom: expected a fraction in [0, 1), got {args.headroom:g}")
    summary = build_report(
        args.run_dir,
        compare_dir=args.compare,
        target_rps=args.target_rps,
        headroom=args.headroom,
    )
    print(args.run_dir / "report.html")
    return exit_code_for(summary["verdict"])
