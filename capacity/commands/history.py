"""`capacity history [show]` and `capacity history import RUN_DIR...`: the results store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from capacity.errors import EXIT_PASS, ConfigError

STORE_HELP = (
    "results store: a SQLite file or a postgresql:// URL (default: $CAPACITY_HISTORY, else "
    ".capacity/history.sqlite)"
)
EPILOG = """\
examples:
  capacity history                                  # every scenario, table on stdout
  capacity history --scenario smoke --target 'graphql *' --out reports/history
  capacity history import reports/* --this-machine
  capacity history --history postgresql://capacity@db.example/perf --json history.json

Series per operation (P95, P99, error rate) and per service (mean CPU cores, mean memory MB)
over the recorded runs of each scenario, oldest first. Change points come from E-Divisive
means with a permutation test (each with its size and p-value); where the environment
fingerprint changes (toolkit, scenario, schema, revision, cores, limits, Temporal version)
the series break and the changed fields are named. `capacity run` records every completed
run (unless --no-history).
exit codes: 0 done, 2 bad input (store unreadable, nothing recorded for the filter)."""

IMPORT_EPILOG = """\
examples:
  capacity history import reports/*
  capacity history import reports/2026* --this-machine --sut-revision 4f2c9e1

Complete run folders are imported (their summary.json, or a summary re-made from the slices
when it is missing); others are listed and skipped. Importing a run again replaces it.
A run folder records its core counts but not the toolkit or Temporal version: without
--this-machine those fingerprint fields are "unknown", so imported runs are not compared with
recorded ones."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "history",
        help="run history: series with change points; import run folders",
        description="Show how each operation's latency and errors and each service's CPU and "
        "memory moved over the recorded runs, with change points.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    _show_arguments(parser)
    parser.set_defaults(func=run_show)
    show = actions.add_parser(
        "show",
        help="series and change points (the default action)",
        description="Series and change points of the recorded runs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _show_arguments(show, keep_parent=True)
    show.set_defaults(func=run_show)
    imp = actions.add_parser(
        "import",
        help="import existing run folders into the store",
        description="Import run folders into the results store.",
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    imp.add_argument("--history", metavar="DB", help=STORE_HELP)
    imp.add_argument(
        "--this-machine",
        action="store_true",
        help="the runs were made on this machine with this toolkit: take the toolkit version, "
        "core counts and Temporal version from here",
    )
    imp.add_argument("--sut-revision", metavar="REV", help="revision of the system under test")
    imp.set_defaults(func=run_import)


def _show_arguments(parser: argparse.ArgumentParser, keep_parent: bool = False) -> None:
    """The show options, on `history` itself and on `history show`; on the latter they do not
    reset what was given before the action (`capacity history --history DB show`)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if keep_parent else value

    parser.add_argument("--history", metavar="DB", help=STORE_HELP, default=default(None))
    parser.add_argument("--scenario", action="append", default=default([]), metavar="NAME")
    parser.add_argument(
        "--target",
        action="append",
        default=default([]),
        metavar="PATTERN",
        help="only operations/services matching this shell pattern (repeatable)",
    )
    parser.add_argument(
        "--last", type=int, metavar="N", help="only the N most recent runs", default=default(None)
    )
    parser.add_argument(
        "--sig-level",
        type=float,
        default=default(0.01),
        metavar="P",
        help="a change point needs a permutation p-value <= P (default 0.01)",
    )
    for flag, meta, text in (
        ("--out", "DIR", "write history.html, history.md, history.json"),
        ("--json", "FILE", "write the history as JSON"),
        ("--markdown", "FILE", "write the Markdown tables"),
        ("--html", "FILE", "write the HTML page"),
    ):
        parser.add_argument(flag, type=Path, metavar=meta, help=text, default=default(None))


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from None


def run_show(args: argparse.Namespace) -> int:
    from capacity.history.changepoints import ChangePointConfig
    from capacity.history.render import render_html, render_json, render_markdown
    from capacity.history.series import scenario_history
    from capacity.history.store import open_store

    if args.last is not None and args.last < 2:
        raise ConfigError(f"--last must be at least 2, got {args.last}")
    try:
        config = ChangePointConfig(sig_level=args.sig_level)
    except ValueError as exc:
        raise ConfigError(f"--sig-level: {exc}") from None
    with open_store(args.history) as store:
        scenarios = args.scenario or store.scenarios()
        histories = []
        for scenario in scenarios:
            runs = store.runs(scenario)
            if not runs:
                raise ConfigError(f"history store {store.name}: no runs of scenario '{scenario}'")
            if args.last:
                runs = runs[-args.last :]
            histories.append(scenario_history(runs, targets=args.target, config=config))
        name = store.name
    if not histories:
        print(f"history store {name}: no runs recorded", file=sys.stderr)
    markdown = render_markdown(histories)
    outputs = [
        (args.json, render_json),
        (args.markdown, lambda h: markdown),
        (args.html, render_html),
    ]
    if args.out is not None:
        outputs += [
            (args.out / "history.json", render_json),
            (args.out / "history.md", lambda h: markdown),
            (args.out / "history.html", render_html),
        ]
    for path, render in outputs:
        if path is not None:
            _write(path, render(histories))
    print(markdown, end="")
    if args.out is not None:
        print(args.out / "history.html")
    return EXIT_PASS


def run_import(args: argparse.Namespace) -> int:
    from capacity.history.record import ImportResult, import_runs
    from capacity.history.store import open_store

    def show(result: ImportResult) -> None:
        if result.imported:
            print(f"imported {result.run_id} ({result.note})")
        else:
            print(f"skipped {result.path}: {result.note}", file=sys.stderr)

    with open_store(args.history) as store:
        results = import_runs(
            args.run_dirs,
            store,
            this_machine=args.this_machine,
            sut_revision=args.sut_revision,
            on_result=show,
        )
        done = sum(r.imported for r in results)
        print(f"{done} run(s) imported into {store.name}, {len(results) - done} skipped")
    if done == 0:
        raise ConfigError("no complete run folder among the arguments")
    return EXIT_PASS
