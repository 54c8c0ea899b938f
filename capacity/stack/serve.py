"""Process entry point of one stand-in: `python -m capacity.stack.serve NAME [options]`.

The supervisor starts each service in its own OS process through this module so the
resource collector can measure each one. `temporal-ready` is a helper, not a service: it
waits until a temporalio client can describe the namespace, keeping the temporalio runtime
out of the supervisor's own process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence

from capacity.errors import ConfigError
from capacity.stack.tuning import DEFAULT_TUNING, HTTP_SERVICES, Tuning, apply_updates


def _tuning(service: str, text: str) -> Tuning:
    updates = json.loads(text) if text else {}
    return apply_updates(DEFAULT_TUNING[service], updates, service)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m capacity.stack.serve")
    parser.add_argument("service", choices=[*HTTP_SERVICES, "temporal-ready"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tuning-json", default="", help="knob overrides as a JSON object")
    parser.add_argument("--master-data-url", default="http://127.0.0.1:3010")
    parser.add_argument("--rules-engine-url", default="http://127.0.0.1:3012")
    parser.add_argument("--workflow-url", default="http://127.0.0.1:3011")
    parser.add_argument("--temporal-address", default="127.0.0.1:7233")
    parser.add_argument("--namespace", default="vextrus")
    parser.add_argument("--task-queue", default="vextrus-erp")
    parser.add_argument("--timeout-s", type=float, default=30.0)
    parser.add_argument("--otlp-endpoint", default="", help="OTLP/HTTP traces URL; empty: off")
    parser.add_argument("--postgres-dsn", default="", help="master-data's PostgreSQL")
    return parser


async def _temporal_ready(address: str, namespace: str, timeout_s: float) -> bool:
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client = await Client.connect(address, namespace=namespace)
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace)
            )
            return True
        except Exception:  # not up yet: connection refused, namespace not registered...
            await asyncio.sleep(0.2)
    return False


def _exit_now(code: int) -> None:
    """Exit skipping interpreter finalisation, after which temporalio's runtime threads
    sometimes crash the process (PyGILState_Release), turning a success into a failure."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.service == "temporal-ready":
        ready = asyncio.run(_temporal_ready(args.temporal_address, args.namespace, args.timeout_s))
        _exit_now(0 if ready else 1)
    try:
        tuning = _tuning(args.service, args.tuning_json)
    except (ConfigError, ValueError) as exc:
        print(f"{args.service}: bad tuning: {exc}", file=sys.stderr)
        return 2
    from capacity.stack import httpkit, telemetry

    telemetry.setup(args.service, args.otlp_endpoint)
    if args.service == "master-data":
        from capacity.stack import masterdata

        if not args.postgres_dsn:
            print("master-data: --postgres-dsn is required", file=sys.stderr)
            return 2
        app = masterdata.build_app(tuning, args.postgres_dsn)
    elif args.service == "rules-engine":
        from capacity.stack import rules_service

        app = rules_service.build_app(tuning)
    elif args.service == "workflow":
        from capacity.stack import workflow_service

        settings = workflow_service.WorkflowSettings(
            temporal_address=args.temporal_address,
            master_data_url=args.master_data_url,
            rules_engine_url=args.rules_engine_url,
            namespace=args.namespace,
            task_queue=args.task_queue,
        )
        app = workflow_service.build_app(tuning, settings)
    else:
        from capacity.stack import gateway

        urls = {
            "master-data": args.master_data_url,
            "rules-engine": args.rules_engine_url,
            "workflow": args.workflow_url,
        }
        app = gateway.build_app(tuning, urls)
    print(f"{args.service}: serving on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    httpkit.run(app, args.host, args.port)
    telemetry.shutdown()
    print(f"{args.service}: stopped", file=sys.stderr, flush=True)
    if args.service == "workflow":
        _exit_now(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
