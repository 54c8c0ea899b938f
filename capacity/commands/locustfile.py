"""`capacity locustfile [NAME]`: the path of a shipped locustfile, for `locust -f`."""

from __future__ import annotations

import argparse

from capacity import shipped
from capacity.errors import EXIT_PASS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "locustfile",
        help="print the path of a shipped locustfile (erp, graphql_ops, rules, workflows)",
        description="Print the installed path of a shipped locustfile, so `locust -f` works "
        "from any folder and any install: locust -f $(capacity locustfile graphql_ops) "
        "--scenario my.toml --headless -u 10 -t 30s. Without NAME: erp (all traffic kinds).",
        epilog="example: locust -f $(capacity locustfile rules) --scenario rules.toml --headless",
    )
    p.add_argument("name", nargs="?", default=shipped.DEFAULT_LOCUSTFILE, help="locustfile name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(shipped.locustfile_path(args.name))
    return EXIT_PASS
