"""`capacity check RUN_DIR... --baseline FILE`: the CI regression gate.

Exit 0 pass, 1 an SLO failed or a regression, 2 bad input (missing/corrupt baseline, runs
lacking what the baseline records), 3 inconclusive. Bad input is refused before anything is
judged: a gate never passes on missing data.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

from capacity.analysis.gate import (
    GateConfig,
    GateReport,
    RunMetrics,
    evaluate,
    missing_reference_data,
)
from capacity.baseline import Baseline, load_baseline, read_runs, select_side
from capacity.errors import ConfigError
from capacity.gate_output import render_json, render_junit, render_markdown, render_table
from capacity.runfolder.files import write_text_atomic

EPILOG = """\
examples:
  capacity check reports/2026*-smoke --baseline baselines/smoke.toml
  capacity check reports/RUN --baseline scenarios/baselines/development.toml \\
      --junit gate.xml --markdown gate.md --json gate.json

A regression needs both a one-sided Mann-Whitney U test on per-run values at --alpha and a
median shift above --min-effect. With too few runs for the test ever to reach --alpha (1 vs 1,
2 vs 2...) the comparison is weak: a shift above the wider weak tolerance is reported as
`suspect` (exit 3), not a regression, unless --fail-weak says to fail on it. A metric from a
run with too few requests is not judged. When $GITHUB_STEP_SUMMARY is set, the Markdown
summary is appended to it.
With --history (a results store: a SQLite file, a postgresql:// URL, or the default
.capacity/history.sqlite / $CAPACITY_HISTORY) the reference runs are the --last N most recent
recorded runs of the same scenario and environment fingerprint instead of a baseline file's;
the SLO ceilings are then --baseline's if given, else the scenario's own.
  capacity check reports/RUN1 reports/RUN2 --history .capacity/history.sqlite --last 10
exit codes: 0 pass, 1 SLO failed or regression, 2 bad input, 3 inconclusive or suspect,
4 internal error."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "check",
        help="gate runs against a baseline (SLO ceilings and a regression test)",
        description="Gate run folders against a baseline: absolute SLO ceilings, then a "
        "statistical comparison with the baseline's reference runs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="baseline file: SLO ceilings, gate settings and (without --history) the reference",
    )
    parser.add_argument(
        "--history",
        nargs="?",
        const="",
        metavar="DB",
        help="take the reference runs from this results store (default store if no DB given)",
    )
    parser.add_argument(
        "--last",
        type=int,
        default=10,
        metavar="N",
        help="with --history: how many recent matching runs form the reference (default 10)",
    )
    parser.add_argument("--alpha", type=float, help="significance level (baseline's, or 0.05)")
    parser.add_argument(
        "--side",
        choices=("A", "B"),
        help="only the runs recorded as this side of `capacity run --repeat N --interleave` "
        "(A: the scenario, B: the interleaved one)",
    )
    parser.add_argument(
        "--min-effect", type=float, help="minimum relative median shift (baseline's, or 0.10)"
    )
    parser.add_argument(
        "--fail-weak",
        action="store_true",
        default=None,
        help="fail (exit 1) on a shift a weak comparison cannot show significant, instead of "
        "reporting it suspect (exit 3)",
    )
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write a Markdown summary")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the decision as JSON")
    parser.set_defaults(func=run)


def gate_config(
    baseline: Baseline,
    alpha: float | None,
    min_effect: float | None,
    fail_weak: bool | None = None,
) -> GateConfig:
    """The baseline's settings with command-line overrides applied."""
    overrides: dict[str, Any] = {}
    if fail_weak is not None:
        overrides["fail_weak"] = fail_weak
    if alpha is not None:
        overrides["alpha"] = alpha
    if min_effect is not None:
        overrides["min_effect"] = min_effect
        overrides["weak_min_effect"] = max(baseline.config.weak_min_effect, min_effect)
    try:
        return dataclasses.replace(baseline.config, **overrides)
    except ValueError as exc:
        raise ConfigError(f"command line: {exc}") from exc


def validate_inputs(baseline_path: Path, baseline: Baseline, runs: tuple[RunMetrics, ...]) -> None:
    """Refuse runs that cannot be compared with the baseline's reference, listing why."""
    reference = baseline.reference
    if reference is None:
        return
    scenario = runs[0].scenario
    if scenario != reference.scenario:
        raise ConfigError(
            f"{baseline_path}: key 'reference.scenario' is '{reference.scenario}' but the runs "
            f"are of scenario '{scenario}'"
        )
    reused = sorted(set(reference.run_ids) & {run.run_id for run in runs})
    if reused:
        raise ConfigError(
            f"{baseline_path}: run(s) {', '.join(reused)} are the baseline's own reference runs"
        )
    missing = missing_reference_data(reference, runs)
    if missing:
        raise ConfigError(
            f"{baseline_path}: the runs lack {len(missing)} reference metric(s): "
            + "; ".join(missing)
        )


def write_outputs(report: GateReport, args: argparse.Namespace) -> None:
    markdown = render_markdown(report)
    outputs = (
        (args.junit, render_junit(report)),
        (args.markdown, markdown),
        (args.json, render_json(report)),
    )
    for path, text in outputs:
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write ({exc.strerror or exc})") from None
        write_text_atomic(path, text)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as fh:
                fh.write(markdown)
        except OSError as exc:
            raise ConfigError(f"GITHUB_STEP_SUMMARY={step_summary}: cannot append") from exc


def history_baseline(
    args: argparse.Namespace, runs: tuple[RunMetrics, ...]
) -> tuple[Path, Baseline, tuple[str, ...]]:
    """A baseline whose reference comes from the results store (`--history`), and notes."""
    from capacity.history.reference import history_reference, scenario_ceilings
    from capacity.history.store import open_store

    if args.last < 1:
        raise ConfigError(f"--last must be at least 1, got {args.last}")
    template = load_baseline(args.baseline) if args.baseline else None
    with open_store(args.history) as store:
        found = history_reference(store, runs, args.run_dirs, args.last)
        name = store.name
    slos = template.slos if template else scenario_ceilings(args.run_dirs[0])
    baseline = Baseline(
        name=f"history {name}",
        description="",
        config=template.config if template else GateConfig(),
        slos=slos,
        reference=found.reference,
    )
    notes = found.notes
    if template is not None and template.reference is not None:
        notes += (f"{args.baseline}'s reference is not used (--history)",)
    if template is None:
        notes += ("SLO ceilings: the scenario's own (from run.json)",)
    return Path(name), baseline, notes


def run(args: argparse.Namespace) -> int:
    if args.baseline is None and args.history is None:
        raise ConfigError("give --baseline FILE or --history [DB] (where the reference comes from)")
    args.run_dirs = select_side(args.run_dirs, args.side)
    runs = read_runs(args.run_dirs)
    notes: tuple[str, ...] = ()
    if args.history is not None:
        where, baseline, notes = history_baseline(args, runs)
    else:
        where, baseline = args.baseline, load_baseline(args.baseline)
    validate_inputs(where, baseline, runs)
    config = gate_config(baseline, args.alpha, args.min_effect, args.fail_weak)
    report = evaluate(baseline.slos, baseline.reference, runs, config)
    if notes:
        report = dataclasses.replace(report, notes=(*notes, *report.notes))
    write_outputs(report, args)
    print(render_table(report), end="")
    return report.exit_code
