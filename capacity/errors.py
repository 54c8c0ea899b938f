"""Exceptions that the CLI turns into one line and an exit code."""

from __future__ import annotations

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = 3


class CapacityError(Exception):
    """An error the user can act on; its message is printed as one line."""

    exit_code = EXIT_USAGE


class ConfigError(CapacityError):
    """Bad input: a scenario, baseline or argument that is missing or wrong (exit 2)."""


class TargetUnreachable(CapacityError):
    """A target failed its health check before any load was sent (exit 2)."""


class StackError(CapacityError):
    """The embedded stack could not start or stop (port in use, binary missing...)."""
