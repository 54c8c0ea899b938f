"""`capacity stack up | down | status`: run the embedded reference ERP stack locally.

A thin wrapper over `capacity.stack.supervisor`: parse flags, call, print. Progress goes to
stderr, the status table to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from capacity.errors import EXIT_FAIL, EXIT_PASS, EXIT_USAGE, ConfigError
from capacity.stack import supervisor
from capacity.stack.tuning import parse_tune_args

EXAMPLES = """examples:
  capacity stack up
  capacity stack up --port gateway=4100 --tune master-data.latency_ms=5 --tune gateway.cpu_ms=1
  capacity stack status
  capacity stack down
"""


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_port_args(items: list[str]) -> dict[str, int]:
    """Parse repeated `SERVICE=PORT` flags."""
    ports: dict[str, int] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not text.strip().isdigit():
            raise ConfigError(f"--port '{item}' must look like SERVICE=PORT, e.g. gateway=4100")
        ports[key.strip()] = int(text)
    return ports


def render_table(rows: list[dict[str, object]]) -> str:
    """A plain aligned text table."""
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def cmd_up(args: argparse.Namespace) -> int:
    config = supervisor.StackConfig(
        host=args.host,
        ports=parse_port_args(args.port),
        state_dir=Path(args.state_dir),
        tuning=parse_tune_args(args.tune),
        otlp_endpoint=args.otlp_endpoint or None,
    )
    state = supervisor.up(config, timeout_s=args.timeout, progress=_progress)
    print(render_table(supervisor.describe(state)))
    return EXIT_PASS


def cmd_down(args: argparse.Namespace) -> int:
    stopped = supervisor.down(Path(args.state_dir), timeout_s=args.timeout)
    _progress(f"stopped: {', '.join(stopped)}" if stopped else "stack was not running")
    return EXIT_PASS


def cmd_status(args: argparse.Namespace) -> int:
    state = supervisor.status(Path(args.state_dir))
    if state is None:
        _progress(f"stack not running (state dir {args.state_dir})")
        return EXIT_FAIL
    rows = supervisor.describe(state)
    print(render_table(rows))
    return EXIT_PASS if all(r["health"] == "healthy" for r in rows) else EXIT_FAIL


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `capacity stack` and its sub-subcommands."""
    parser = sub.add_parser(
        "stack",
        help="start, stop or inspect the embedded reference ERP stack",
        description=__doc__.splitlines()[0] + "\n\nstatus exits 0 when every service is "
        "healthy, 1 when the stack is not running or a service is unhealthy.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="stack_command", metavar="ACTION")

    def common(p: argparse.ArgumentParser, timeout_s: float | None) -> None:
        p.add_argument(
            "--state-dir",
            default=str(supervisor.DEFAULT_STATE_DIR),
            help="where pids, logs and Temporal's database live (default: %(default)s)",
        )
        if timeout_s is not None:
            p.add_argument(
                "--timeout", type=float, default=timeout_s, help="seconds (default: %(default)s)"
            )

    def no_action(_args: argparse.Namespace) -> int:
        parser.print_help()
        return EXIT_USAGE

    parser.set_defaults(func=no_action)

    up = actions.add_parser("up", help="start every service and wait until healthy")
    common(up, 60.0)
    up.add_argument("--host", default=supervisor.DEFAULT_HOST, help="bind address")
    up.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="SERVICE=PORT",
        help=f"override a port; keys: {', '.join(supervisor.DEFAULT_PORTS)}",
    )
    up.add_argument(
        "--tune",
        action="append",
        default=[],
        metavar="SERVICE.KNOB=VALUE",
        help="set a tuning knob at start, e.g. master-data.latency_ms=5 (repeatable)",
    )
    up.add_argument(
        "--otlp-endpoint",
        default=supervisor.DEFAULT_OTLP_ENDPOINT,
        metavar="URL",
        help="where the services send OpenTelemetry spans (a run's [traces] receiver); "
        "'' turns tracing off (default: %(default)s)",
    )
    up.set_defaults(func=cmd_up)
    down = actions.add_parser("down", help="stop every service of the stack")
    common(down, 15.0)
    down.set_defaults(func=cmd_down)
    status = actions.add_parser("status", help="table of service, pid, url, health")
    common(status, None)
    status.set_defaults(func=cmd_status)
