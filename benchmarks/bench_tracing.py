"""Benchmark: what tracing costs. Receiver CPU per span; load-generator CPU per request by sampling.

Part 1, the trace receiver (`capacity/traces/receiver.py`) in its own process: OTLP/HTTP
export requests encoded by the real OpenTelemetry encoders (512 SDK spans each: a server span
and database/HTTP client spans with their attributes) are POSTed over one keep-alive
connection; the receiver process's CPU (user + system, psutil) divided by the spans is the
cost per span, for spans of this run's traces (decoded and written to spans.jsonl) and for
spans of other traces (recognised by the trace-id marker and dropped), protobuf and JSON.

Part 2, the load generator: four Locust processes side by side on the same CPU, the real
GraphQL driver with the run's trace marker and a SliceRecorder closing 2 s slices into a JSON
lines file (as a run does), at `trace_sample_rate` 0 (no traceparent at all), 1e-12 (a
traceparent on every request, none sampled: the header's own cost), 0.1 and 1.0,
against the fixed-answer endpoint of bench_graphql_driver.py. The figure is Locust CPU per
request; the ratio judged is the median over rounds of each arm's CPU per request over the
"off" arm's in the same round. The stack does not take part: only the load generator's own
cost is measured (the stack's spans go to the stack's exporter, not through Locust).

    .venv/bin/python benchmarks/bench_tracing.py [--rounds 5] [--window 10] [--check]
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _locust_bench import (
    ArmResult,
    emit_and_exit,
    load_average,
    print_rounds,
    process_cpu_s,
    run_children_together,
    split_cpus,
)
from bench_graphql_driver import fast_endpoint, graphql_operation

MARKER = "c0ffee01"
# "header": a traceparent on every request but (practically) none sampled: the cost of the
# header alone, which every rate above 0 pays; the rest of "10%" is the sampled requests' own.
ARMS = {"off": 0.0, "header": 1e-12, "10%": 0.1, "100%": 1.0}
AA_ARMS = dict.fromkeys(ARMS, 0.0)  # --aa: the harness's own bias, every arm off
MAX_EXTRA_CPU_AT_10 = 0.05
SPANS_PER_REQUEST = 512
RECEIVER_CHILD = """
import sys, time
from pathlib import Path
from capacity.traces.receiver import TraceReceiver
rx = TraceReceiver(sys.argv[1], port=0, max_spans=10**9)
rx.start(Path(sys.argv[2]))
print(rx.port, flush=True)
sys.stdin.read()
rx.stop()
"""


# --- part 1: the receiver -------------------------------------------------------------------


def export_bodies(marked: bool) -> tuple[bytes, bytes]:
    """(protobuf, JSON) bodies of one export request of SPANS_PER_REQUEST real SDK spans."""
    from opentelemetry.exporter.otlp.json.common.trace_encoder import (
        encode_spans as encode_json,
    )
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.trace import SpanKind

    class Ids(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            low = super().generate_trace_id() & ((1 << 96) - 1)
            return (int(MARKER, 16) << 96 | low) if marked else super().generate_trace_id()

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "master-data"}),
                              id_generator=Ids())  # fmt: skip
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    while len(memory.get_finished_spans()) < SPANS_PER_REQUEST:
        with tracer.start_as_current_span(
            "GET /customers/{id}",
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "GET", "http.route": "/customers/{id}",
                        "http.response.status_code": 200, "url.path": "/customers/C-0001"},
        ):  # fmt: skip
            for _ in range(3):
                with tracer.start_as_current_span(
                    "SELECT",
                    kind=SpanKind.CLIENT,
                    attributes={"db.system": "postgresql", "db.name": "postgres",
                                "db.user": "postgres", "net.peer.name": "/tmp/sock",
                                "db.statement": "SELECT doc FROM customers WHERE id = $1 "
                                "AND injected_delay($2)"},
                ):  # fmt: skip
                    pass
    spans = memory.get_finished_spans()[:SPANS_PER_REQUEST]
    provider.shutdown()
    return encode_spans(spans).SerializeToString(), encode_json(spans).to_json().encode()


def receiver_cpu_per_span(requests: int) -> list[tuple[str, float, float]]:
    """(case, µs CPU per span, spans/s) for kept and foreign spans, protobuf and JSON."""
    import psutil

    bodies = {True: export_bodies(True), False: export_bodies(False)}
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-rx-") as tmp:
        child = subprocess.Popen(
            [sys.executable, "-c", RECEIVER_CHILD, MARKER, tmp],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            port = int(child.stdout.readline())
            proc = psutil.Process(child.pid)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for marked in (True, False):
                for fmt, body, ctype in (
                    ("protobuf", bodies[marked][0], "application/x-protobuf"),
                    ("JSON", bodies[marked][1], "application/json"),
                ):
                    for _ in range(2):  # warm
                        _post(conn, body, ctype)
                    cpu0, wall0 = sum(proc.cpu_times()[:2]), time.monotonic()
                    for _ in range(requests):
                        _post(conn, body, ctype)
                    cpu = sum(proc.cpu_times()[:2]) - cpu0
                    wall = time.monotonic() - wall0
                    spans = requests * SPANS_PER_REQUEST
                    case = f"{fmt:<8} {'kept' if marked else 'foreign (dropped)'}"
                    out.append((case, cpu / spans * 1e6, spans / wall))
            conn.close()
        finally:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(timeout=10)
    return out


def _post(conn: http.client.HTTPConnection, body: bytes, ctype: str) -> None:
    conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": ctype})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise SystemExit(f"receiver answered {resp.status}")


# --- part 2: the load generator ---------------------------------------------------------------


def run_arm(args: argparse.Namespace) -> None:
    """Child: one Locust process with the recorder, one window, one result line."""
    import gevent
    from locust.env import Environment

    from capacity.drivers.graphql import make_graphql_user
    from capacity.recorder import SliceRecorder
    from capacity.scenario import GraphQLSettings, Targets

    spec, cursors = graphql_operation(args.operation)
    rates = AA_ARMS if args.aa else ARMS
    spec = dataclasses.replace(spec, trace_sample_rate=rates[args.child])
    targets = Targets(
        gateway_url=args.url, graphql=GraphQLSettings(client_name="", client_version="")
    )  # as bench_graphql_driver's driver arm: no client-awareness headers
    cls = make_graphql_user(spec, targets, cursors, name="GraphQLUser")
    env = Environment(user_classes=[cls], parsed_options=argparse.Namespace(trace_id_prefix=MARKER))
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as sink:

        def write(record: dict[str, Any]) -> None:
            sink.write(json.dumps(record, separators=(",", ":")) + "\n")
            sink.flush()

        recorder = SliceRecorder(write, worker="bench")
        env.events.request.add_listener(recorder.on_request)

        def tick() -> None:
            while True:
                gevent.sleep(2.0)
                recorder.close_slice()

        ticker = gevent.spawn(tick)
        runner = env.create_local_runner()
        runner.start(args.users, spawn_rate=args.users)
        gevent.sleep(args.warmup)
        ok0, failed0 = recorder.total_requests, env.stats.total.num_failures
        cpu0, wall0 = process_cpu_s(), time.monotonic()
        gevent.sleep(args.window)
        ok1, failed1 = recorder.total_requests, env.stats.total.num_failures
        cpu1, wall1 = process_cpu_s(), time.monotonic()
        runner.quit()
        ticker.kill()
    emit_and_exit(ArmResult(args.child, ok1 - ok0, failed1 - failed0, wall1 - wall0, cpu1 - cpu0))


def child_argv(arm: str, url: str, args: argparse.Namespace) -> list[str]:
    return [
        str(Path(__file__).resolve()), "--child", arm, "--url", url, "--users", str(args.users),
        "--warmup", str(args.warmup), "--window", str(args.window),
        "--operation", args.operation, *(["--aa"] if args.aa else []),
    ]  # fmt: skip


def load_generator_rounds(args: argparse.Namespace) -> list[tuple[int, ArmResult]]:
    cpus = split_cpus() if args.pin else None
    rows: list[tuple[int, ArmResult]] = []
    with fast_endpoint(args.server, cpus[0] if cpus else None) as (url, server):
        print(f"endpoint: {url} ({server})")
        print(
            f"{args.rounds} rounds x {len(ARMS)} arms side by side, {args.users} users each, "
            f"constant(0) waits, {args.warmup:g} s warm-up + {args.window:g} s window, "
            f"operation {args.operation}"
        )
        if cpus:
            print(f"CPUs: endpoint on {sorted(cpus[0])}, Locust arms on {sorted(cpus[1])}")
        for round_no in range(1, args.rounds + 1):
            names = list(ARMS)
            order = names if round_no % 2 else list(reversed(names))
            argvs = [child_argv(arm, url, args) for arm in order]
            results = run_children_together(
                argvs, args.warmup + args.window + 60, cpus[1] if cpus else None
            )
            for result in results:
                rows.append((round_no, result))
                print(
                    f"  round {round_no} {result.arm:<7} {result.per_s:8.1f} req/s "
                    f"{1e6 / result.per_cpu_s if result.per_cpu_s else 0:8.1f} µs CPU/req",
                    flush=True,
                )
    return rows


def report(rows: list[tuple[int, ArmResult]], check: bool) -> int:
    rounds = sorted({n for n, _ in rows})

    def cpu_per_req(n: int, arm: str) -> float:
        r = next(r for k, r in rows if k == n and r.arm == arm)
        return r.cpu_s / r.count if r.count else float("inf")

    print(f"\n{'arm':<7} {'median µs CPU/request':>22} {'median extra vs off':>20}")
    extra: dict[str, list[float]] = {}
    for arm in ARMS:
        per_req = [cpu_per_req(n, arm) for n in rounds]
        extra[arm] = [cpu_per_req(n, arm) / cpu_per_req(n, "off") - 1 for n in rounds]
        print(
            f"{arm:<7} {statistics.median(per_req) * 1e6:>22.1f} "
            f"{statistics.median(extra[arm]):>+19.1%}"
        )
    failures = sum(r.failures for _, r in rows)
    at10 = statistics.median(extra["10%"])
    print(
        f"\nextra load-generator CPU per request at 10% sampling: {at10:+.1%} "
        f"(per round: {', '.join(f'{x:+.1%}' for x in extra['10%'])}; "
        f"limit +{MAX_EXTRA_CPU_AT_10:.0%}); at 100%: {statistics.median(extra['100%']):+.1%}"
    )
    ok = not failures and at10 <= MAX_EXTRA_CPU_AT_10
    if failures:
        print(f"FAIL: {failures} failed requests; the comparison is not valid")
    else:
        print("PASS" if ok else "FAIL", f"(10% sampling: {at10:+.1%})")
    return 1 if check and not ok else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--operation", default="GetCustomer")
    parser.add_argument("--server", choices=("auto", "nginx", "python"), default="auto")
    parser.add_argument(
        "--receiver-requests",
        type=int,
        default=40,
        help=f"export requests of {SPANS_PER_REQUEST} spans per receiver case",
    )
    parser.add_argument("--skip-receiver", action="store_true")
    parser.add_argument("--skip-load-generator", action="store_true")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument(
        "--aa", action="store_true", help="every arm at sampling off (A/A: the harness's bias)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if 10%% sampling costs over {MAX_EXTRA_CPU_AT_10:.0%} more CPU",
    )
    parser.add_argument("--child", choices=list(ARMS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.child:
        run_arm(args)
        return 0
    print(f"load average at start: {load_average()}", flush=True)
    code = 0
    if not args.skip_receiver:
        print(f"\nreceiver: {args.receiver_requests} export requests x {SPANS_PER_REQUEST} "
              "spans per case, one keep-alive connection")  # fmt: skip
        print(f"{'case':<27} {'µs CPU/span':>12} {'spans/s':>10}")
        for case, us, rate in receiver_cpu_per_span(args.receiver_requests):
            print(f"{case:<27} {us:>12.1f} {rate:>10.0f}", flush=True)
    if not args.skip_load_generator:
        print()
        rows = load_generator_rounds(args)
        print(f"load average at end: {load_average()}\n")
        print_rounds(rows)
        code = report(rows, args.check)
    return code


if __name__ == "__main__":
    sys.exit(main())
