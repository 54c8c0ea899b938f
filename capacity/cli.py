"""The `capacity` command: parse, dispatch to a subcommand module, map errors to exit codes.

Each subcommand lives in `capacity/commands/<name>.py` and exposes `add_parser(subparsers)`,
which registers its arguments and sets `func` to a callable taking the parsed namespace and
returning an exit code. Errors derived from `CapacityError` become one line on stderr with
their exit code; anything else is a bug: one line naming a log file that holds the traceback,
and exit 4, so a CI gate never reads a crash as a failed SLO (1) or a pass.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from capacity import __version__
from capacity.addresses import redact
from capacity.errors import EXIT_INTERNAL, EXIT_USAGE, CapacityError

COMMAND_MODULES = (
    "run",
    "stack",
    "report",
    "collect",
    "check",
    "baseline",
    "init",
    "locustfile",
    "history",
    "find",
)


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors as one line (`capacity: error: ...`) and exit 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("capacity").strip()
        where = f"{command}: " if command else ""
        print(f"capacity: error: {where}{message} (see: {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with `only` just that subcommand's (its imports are heavy)."""
    parser = OneLineParser(
        prog="capacity",
        description="Load testing and capacity planning for the Vextrus ERP stack.",
    )
    parser.add_argument("--version", action="version", version=f"capacity {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error already printed as one line (2)
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except CapacityError as exc:
        print(f"capacity: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("capacity: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: never a traceback on the terminal, never exit 1
        log = internal_error_log(argv)
        print(
            f"capacity: internal error ({type(exc).__name__}); the traceback is in {log}",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def internal_error_log(argv: Sequence[str]) -> Path:
    """Write the current exception's traceback (secrets in URLs removed) to a log file."""
    text = f"capacity {__version__} {' '.join(argv)}\n{traceback.format_exc()}"
    name = f"capacity-internal-{time.strftime('%Y%m%d-%H%M%S')}.log"
    for folder in (Path(".capacity") / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(redact(text), encoding="utf-8")
            return path.absolute()
        except OSError:
            continue
    return Path("(no writable log folder)")


if __name__ == "__main__":
    sys.exit(main())
