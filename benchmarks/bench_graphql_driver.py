"""Benchmark: requests per Locust CPU second, GraphQL driver against a raw FastHttpUser POST.

Both arms POST the same GraphQL body to the same fast local endpoint (nginx with a fixed
`{"data": ...}` answer, or a tiny asyncio responder where nginx is missing), each arm in its
own Locust process with constant(0) users, pinned to the last CPU and the endpoint to the
others (`--no-pin`: the scheduler places them). By default the two arms run side by side on
that CPU, so whatever the shared machine does during a window hits both (`--mode alternate`
runs them one after the other). The figure compared is
requests completed per CPU second of the Locust process (user + system), so it does not
matter whether the client or the server saturates first; raw req/s are shown too. The ratio
judged is the median over rounds of each round's driver/raw ratio.
The driver arm is the real driver as a scenario builds it (pooled variables, a new traceparent
on every request, the `errors` check); the raw arm posts the driver's first body as fixed
bytes with fixed headers: by default the same header set as the driver, its traceparent
fixed (`--raw-headers same`: the same request on the wire, so the difference is the driver's
own per-request work), or only the content headers (`--raw-headers minimal`).

    .venv/bin/python benchmarks/bench_graphql_driver.py [--rounds 3] [--window 10] [--check]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _locust_bench import (
    MIN_RATIO,
    ArmResult,
    emit_and_exit,
    load_average,
    measure_locust,
    median_of,
    pin_to,
    print_rounds,
    print_verdict,
    run_children_together,
    split_cpus,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIO = REPO_ROOT / "scenarios" / "graphql.toml"
GRAPHQL_PATH = "/graphql"
ARMS = ("driver", "raw")
# What the gateway answers GetCustomer with, minus the per-customer values.
RESPONSE_BODY = (
    '{"data":{"customer":{"id":"C-0332","name":"Customer 332","country":"IN","tier":"gold",'
    '"creditLimit":50000.0,"invoices":[{"number":"INV-000001","total":1180.5,"status":"PAID"},'
    '{"number":"INV-000002","total":99.0,"status":"OPEN"}]}}}'
)
NGINX_CONF = """\
# One process (master_process off) so it is cheap and easy to stop; no logs on the hot path.
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


def graphql_operation(operation_name: str) -> tuple[Any, Any]:
    """(spec, cursors) of one scenario operation, with constant(0)-like waits."""
    from capacity.drivers.variables import PoolCursor
    from capacity.scenario import load_scenario

    scenario = load_scenario(SCENARIO)
    spec = scenario.users["graphql"]
    ops = [op for op in spec.operations if op.operation_name == operation_name]
    if not ops:
        names = ", ".join(op.operation_name for op in spec.operations)
        raise SystemExit(f"{SCENARIO}: no operation {operation_name} (have: {names})")
    spec = dataclasses.replace(spec, operations=(ops[0],), wait_s=(0.0, 0.0), weight=1)
    cursors = {name: PoolCursor(pool) for name, pool in scenario.data.items()}
    return spec, cursors


def user_class(arm: str, url: str, operation_name: str, raw_headers: str = "same") -> type:
    """The Locust user class of one arm."""
    from locust import FastHttpUser, constant, task

    from capacity.drivers.graphql import compile_operation, make_graphql_user
    from capacity.drivers.tracing import TraceSampler

    spec, cursors = graphql_operation(operation_name)
    if arm == "driver":
        from capacity.scenario import GraphQLSettings, Targets

        # No client-awareness headers: both arms send the same bytes.
        targets = Targets(
            gateway_url=url, graphql=GraphQLSettings(client_name="", client_version="")
        )
        return make_graphql_user(spec, targets, cursors, name="DriverUser")
    body = compile_operation(spec.operations[0], cursors).body()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if raw_headers == "same":
        headers["traceparent"] = TraceSampler(1.0, seed=1).traceparent() or ""
    host, path = url[: url.index(GRAPHQL_PATH)], GRAPHQL_PATH

    class RawPostUser(FastHttpUser):
        wait_time = constant(0)

        @task
        def post(self) -> None:
            self.client.post(path, data=body, headers=headers, name="raw POST")  # type: ignore[arg-type]

    RawPostUser.host = host
    return RawPostUser


def run_arm(args: argparse.Namespace) -> None:
    """Child process: one arm, one window, one result line."""

    def count(stats: Any) -> tuple[int, int]:
        total = stats.total
        return total.num_requests - total.num_failures, total.num_failures

    cls = user_class(args.child, args.url, args.operation, args.raw_headers)
    result = measure_locust(args.child, [cls], args.users, args.warmup, args.window, count)
    emit_and_exit(result)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on 127.0.0.1:{port} within 10 s")


@contextmanager
def fast_endpoint(kind: str, cpus: set[int] | None = None) -> Iterator[tuple[str, str]]:
    """Start the fixed-answer endpoint on a free port; yield (url, description)."""
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if Path(p).exists()), None
    )
    if kind == "auto":
        kind = "nginx" if nginx else "python"
    if kind == "nginx" and nginx is None:
        raise SystemExit("nginx not found (apt-get install -y nginx-light), or use --server python")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-gql-") as tmp:
        if kind == "nginx":
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(NGINX_CONF.format(prefix=tmp, port=port, body=RESPONSE_BODY))
            cmd = [str(nginx), "-p", tmp, "-c", str(conf), "-e", f"{tmp}/error.log"]
            version = subprocess.run([str(nginx), "-v"], capture_output=True, text=True).stderr
            what = f"{version.strip().removeprefix('nginx version: ')}, 1 process"
        else:
            responder = Path(__file__).with_name("_graphql_responder.py")
            cmd = [sys.executable, str(responder), "--port", str(port), "--body", RESPONSE_BODY]
            what = "asyncio responder (benchmarks/_graphql_responder.py), 1 process"
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=pin_to(cpus),
        )
        try:
            wait_listening(port, proc, kind)
            yield f"http://127.0.0.1:{port}{GRAPHQL_PATH}", what
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def child_argv(arm: str, url: str, args: argparse.Namespace) -> list[str]:
    return [
        str(Path(__file__).resolve()),
        "--child",
        arm,
        "--url",
        url,
        "--users",
        str(args.users),
        "--warmup",
        str(args.warmup),
        "--window",
        str(args.window),
        "--operation",
        args.operation,
        "--raw-headers",
        args.raw_headers,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of both arms")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per arm")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the window")
    parser.add_argument("--users", type=int, default=20, help="concurrent users per arm")
    parser.add_argument("--operation", default="GetCustomer", help="operation of graphql.toml")
    parser.add_argument(
        "--raw-headers",
        choices=("same", "minimal"),
        default="same",
        help="raw arm: the driver's header set with a fixed traceparent, or content headers only",
    )
    parser.add_argument("--server", choices=("auto", "nginx", "python"), default="auto")
    parser.add_argument(
        "--mode",
        choices=("together", "alternate"),
        default="together",
        help="arms side by side (default), or one after the other",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="let the scheduler place the endpoint and Locust (default: endpoint on the first "
        "CPUs, Locust on the last)",
    )
    parser.add_argument("--check", action="store_true", help=f"exit 1 if ratio < {MIN_RATIO}")
    parser.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the endpoint or stack started here is always stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.child:
        run_arm(args)
        return 0

    cpus = split_cpus() if args.pin else None
    with fast_endpoint(args.server, cpus[0] if cpus else None) as (url, server):
        print(f"endpoint: {url} ({server})")
        print(
            f"{args.rounds} rounds x {len(ARMS)} arms ({args.mode}), {args.users} users each, "
            f"constant(0) waits, {args.warmup:g} s warm-up + {args.window:g} s window, "
            f"operation {args.operation}, raw headers: {args.raw_headers}"
        )
        if cpus:
            print(f"CPUs: endpoint on {sorted(cpus[0])}, Locust arms on {sorted(cpus[1])}")
        print(f"load average at start: {load_average()}", flush=True)
        rows: list[tuple[int, ArmResult]] = []
        for round_no in range(1, args.rounds + 1):
            order = ARMS if round_no % 2 else tuple(reversed(ARMS))
            timeout_s = args.warmup + args.window + 60
            if args.mode == "together":
                argvs = [child_argv(arm, url, args) for arm in order]
                results = run_children_together(argvs, timeout_s, cpus[1] if cpus else None)
            else:
                arm_cpus = cpus[1] if cpus else None
                results = [
                    run_children_together([child_argv(arm, url, args)], timeout_s, arm_cpus)[0]
                    for arm in order
                ]
            for result in results:
                rows.append((round_no, result))
                print(
                    f"  round {round_no} {result.arm:<6} {result.per_s:8.1f} req/s "
                    f"{result.per_cpu_s:8.1f} req/CPU-s",
                    flush=True,
                )
    print(f"load average at end: {load_average()}\n")
    print_rounds(rows)
    return report(rows, args.check)


def report(rows: list[tuple[int, ArmResult]], check: bool) -> int:
    by_arm = {arm: [r for _n, r in rows if r.arm == arm] for arm in ARMS}
    print(f"\n{'arm':<8} {'median req/s':>13} {'median req/CPU-s':>17} {'failures':>9}")
    for arm, results in by_arm.items():
        print(
            f"{arm:<8} {median_of(results, lambda r: r.per_s):>13.1f} "
            f"{median_of(results, lambda r: r.per_cpu_s):>17.1f} "
            f"{sum(r.failures for r in results):>9}"
        )
    rounds = sorted({n for n, _r in rows})
    per_round = [
        next(r for n, r in rows if n == k and r.arm == "driver").per_cpu_s
        / next(r for n, r in rows if n == k and r.arm == "raw").per_cpu_s
        for k in rounds
    ]
    # Each round pairs the arms under the same conditions; the median of those pairs is the
    # figure judged (the medians of each arm apart are printed above).
    ratio = statistics.median(per_round)
    failures = sum(r.failures for _n, r in rows)
    return print_verdict(
        "driver/raw (median over rounds of req per Locust CPU second)",
        ratio,
        per_round,
        failures,
        "requests",
        check,
    )


if __name__ == "__main__":
    sys.exit(main())
