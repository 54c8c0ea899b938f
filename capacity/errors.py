"""Exit codes, the one map from verdicts to them, and the errors the CLI prints as one line.

Every command exits with one of these codes (README, "Exit codes"):
0 pass, 1 an SLO failed or a regression, 2 usage or configuration error, 3 inconclusive (the
run or comparison cannot be trusted; the reason is printed), 4 internal error (a bug: one line
and the path of a log with the traceback).
"""

from __future__ import annotations

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = 3
EXIT_INTERNAL = 4

VERDICT_EXIT = {
    "pass": EXIT_PASS,
    "improvement": EXIT_PASS,
    "fail": EXIT_FAIL,
    "regression": EXIT_FAIL,
    "inconclusive": EXIT_INCONCLUSIVE,
    "suspect": EXIT_INCONCLUSIVE,
}


def exit_code_for(verdict: str) -> int:
    """The exit code of a verdict; an unknown verdict is never a pass."""
    return VERDICT_EXIT.get(str(verdict), EXIT_INCONCLUSIVE)


def worst_exit(codes: list[int]) -> int:
    """Internal error beats usage error beats fail beats inconclusive beats pass."""
    for code in (EXIT_INTERNAL, EXIT_USAGE, EXIT_FAIL, EXIT_INCONCLUSIVE):
        if code in codes:
            return code
    return EXIT_PASS


class CapacityError(Exception):
    """An error the user can act on; its message is printed as one line."""

    exit_code = EXIT_USAGE


class ConfigError(CapacityError):
    """Bad input: a scenario, baseline or argument that is missing or wrong (exit 2)."""


class TargetUnreachable(CapacityError):
    """A target failed its health check before any load was sent (exit 2)."""


class StackError(CapacityError):
    """The embedded stack could not start or stop (port in use, binary missing...)."""


class RunFolderError(CapacityError):
    """A run folder file could not be written (disk full...): nothing can be judged (exit 3)."""

    exit_code = EXIT_INCONCLUSIVE
