"""The `capacity` command: parse, dispatch to a subcommand module, map errors to exit codes.

Each subcommand lives in `capacity/commands/<name>.py` and exposes `add_parser(subparsers)`,
which registers its arguments and sets `func` to a callable taking the parsed namespace and
returning an exit code. Errors derived from `CapacityError` become one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from capacity import __version__
from capacity.errors import EXIT_USAGE, CapacityError

COMMAND_MODULES = ("run", "stack", "report", "collect", "check", "baseline", "history", "find")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with `only` just that subcommand's (its imports are heavy)."""
    parser = argparse.ArgumentParser(
        prog="capacity",
        description="Load testing and capacity planning for the Vextrus ERP stack.",
    )
    parser.add_argument("--version", action="version", version=f"capacity {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES if only not in COMMAND_MODULES else (only,):
        try:
            module = importlib.import_module(f"capacity.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"capacity.commands.{name}":
                continue  # command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except CapacityError as exc:
        print(f"capacity: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("capacity: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
