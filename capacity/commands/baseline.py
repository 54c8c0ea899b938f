"""`capacity baseline save|show`: record reference results; inspect a baseline file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from capacity.analysis.gate import format_value
from capacity.baseline import (
    Baseline,
    load_baseline,
    new_baseline,
    read_runs,
    save_baseline,
    select_side,
)
from capacity.errors import EXIT_PASS

SAVE_EPILOG = """\
examples:
  capacity baseline save reports/2026*-smoke --out baselines/smoke.toml \\
      --slos scenarios/baselines/development.toml
  capacity baseline save reports/RUN1 reports/RUN2 reports/RUN3 --out baselines/smoke.toml

Records, per run, the P95 of every operation and the CPU and memory means of every service.
SLO ceilings and [gate] settings come from --slos, else from FILE if it already exists.
Record several runs (capacity run --repeat N): with one run the gate can only be weak."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "baseline",
        help="record reference results of runs; show a baseline file",
        description="Baseline files hold SLO ceilings and reference results for `capacity check`.",
        epilog="examples:\n"
        "  capacity baseline save reports/2026*-smoke --out baselines/smoke.toml\n"
        "  capacity baseline show scenarios/baselines/development.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    save = actions.add_parser(
        "save",
        help="record runs as a baseline's reference results",
        description="Record run folders as the reference results of a baseline file.",
        epilog=SAVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    save.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    save.add_argument("--out", required=True, type=Path, metavar="FILE")
    save.add_argument(
        "--slos", type=Path, metavar="FILE", help="baseline to copy SLO ceilings and settings from"
    )
    save.add_argument("--name", help="baseline name (default: the scenario's)")
    save.add_argument(
        "--side",
        choices=("A", "B"),
        help="only the runs recorded as this side of `capacity run --repeat N --interleave` "
        "(A: the scenario, B: the interleaved one)",
    )
    save.set_defaults(func=run_save)
    show = actions.add_parser(
        "show",
        help="validate a baseline file and print what it gates",
        description="Validate a baseline file and print its SLOs and reference results.",
        epilog="example:\n  capacity baseline show scenarios/baselines/development.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("file", type=Path, metavar="FILE")
    show.set_defaults(func=run_show)


def run_save(args: argparse.Namespace) -> int:
    args.run_dirs = select_side(args.run_dirs, args.side)
    runs = read_runs(args.run_dirs)
    template_path = args.slos or (args.out if args.out.exists() else None)
    template = load_baseline(template_path) if template_path else None
    baseline = new_baseline(runs, args.name or runs[0].scenario, template)
    save_baseline(baseline, args.out)
    ref = baseline.reference
    assert ref is not None
    print(
        f"saved {args.out}: {len(ref.run_ids)} run(s) of scenario '{ref.scenario}', "
        f"{len(ref.operations)} operation(s), {len(ref.services)} service(s), "
        f"{len(baseline.slos)} SLO ceiling(s)" + (f" from {template_path}" if template else "")
    )
    if len(ref.run_ids) == 1:
        print(
            "note: one reference run: `capacity check` can only make a weak comparison",
            file=sys.stderr,
        )
    return EXIT_PASS


def describe(baseline: Baseline) -> str:
    lines = [f"baseline '{baseline.name}' (schema {baseline.schema})"]
    if baseline.description:
        lines.append(baseline.description)
    cfg = baseline.config
    lines.append(
        f"gate: alpha={cfg.alpha:g} min_effect={cfg.min_effect:.0%} "
        f"weak_min_effect={cfg.weak_min_effect:.0%}"
    )
    for slo in baseline.slos:
        lines.append(
            f"slo {slo.kind} '{slo.pattern}': {slo.metric} <= {format_value(slo.metric, slo.limit)}"
        )
    ref = baseline.reference
    if ref is None:
        lines.append("no reference results")
    else:
        lines.append(
            f"reference: scenario '{ref.scenario}', {len(ref.run_ids)} run(s), saved "
            f"{baseline.saved_at or '(unknown)'}"
        )
        for kind, targets in (("operation", ref.operations), ("service", ref.services)):
            for name, metrics in sorted(targets.items()):
                cells = ", ".join(
                    f"{m} {' '.join(f'{v:.4g}' for v in values)}" for m, values in metrics.items()
                )
                lines.append(f"  {kind} '{name}': {cells}")
    return "\n".join(lines) + "\n"


def run_show(args: argparse.Namespace) -> int:
    print(describe(load_baseline(args.file)), end="")
    return EXIT_PASS
