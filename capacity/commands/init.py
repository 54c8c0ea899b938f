"""`capacity init DIR`: a starter scenario folder (scenarios, documents, data pools) to edit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from capacity import shipped
from capacity.errors import EXIT_PASS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="write a starter scenario folder to edit",
        description="Copy the shipped scenarios with their GraphQL documents, rule sets, data "
        "pools and baselines into DIR (never over existing files), as a starting point for "
        "your own stack: edit [targets] and the documents, then `capacity run DIR/smoke.toml`.",
        epilog="example: capacity init my-scenarios && capacity run my-scenarios/smoke.toml",
    )
    p.add_argument("dir", type=Path, help="folder to create or fill (must not hold these files)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    written = shipped.write_starter(args.dir)
    scenarios = sorted(p.name for p in written if p.parent == args.dir and p.suffix == ".toml")
    print(f"wrote {len(written)} files to {args.dir}: {', '.join(scenarios)}", file=sys.stderr)
    print(
        f"next: edit {args.dir / 'smoke.toml'} [targets]; then: capacity run "
        f"{args.dir / 'smoke.toml'}"
    )
    return EXIT_PASS
