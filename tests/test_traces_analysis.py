"""Pure trace analysis on recorded spans: critical path, statements, time outside, span SLOs.

Also the load generator's side: trace ids carry the run's marker, sampled requests are listed
in their slice, and the scenario's `[traces]` keys are validated.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from capacity.drivers.tracing import TraceSampler, new_prefix, parse_prefix
from capacity.errors import ConfigError
from capacity.recorder import SliceRecorder
from capacity.runfolder.histograms import new_histogram, percentile_ms
from capacity.scenario import load_scenario
from capacity.slos import SloSpec, check_run
from capacity.traces.analysis import (
    NO_TRACES,
    ClientRecord,
    ClientTap,
    analyse_traces,
    critical_path,
    slo_targets,
    traces_summary,
    unmatched_rows,
)

MS = 1_000_000  # ns
T0 = 1_800_000_000 * 1_000_000_000


def span(trace: str, sid: str, parent: str, service: str, start_ms: float, end_ms: float,
         kind: str = "server", **attrs: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "trace_id": trace,
        "span_id": sid,
        "parent_id": parent,
        "name": f"{service} {sid}",
        "kind": kind,
        "service": service,
        "start_ns": T0 + int(start_ms * MS),
        "end_ns": T0 + int(end_ms * MS),
        "status": 0,
        "attrs": attrs,
    }


def db(trace: str, sid: str, parent: str, start_ms: float, end_ms: float, sql: str) -> dict:
    return span(trace, sid, parent, "master-data", start_ms, end_ms, "client",
                **{"db.system": "postgresql", "db.statement": sql})  # fmt: skip


def customer_trace(trace: str, db_ms: float = 4.0) -> list[dict[str, Any]]:
    """gateway 0-20 ms: a client call 2-15 with master-data 3-14 and its query, plus a rules
    call 12-18 that overlaps the first call's end; then 2 ms of its own."""
    return [
        span(trace, "g", "lg-span", "gateway", 0, 20, **{"graphql.operation.name": "GetCustomer"}),
        span(trace, "c1", "g", "gateway", 2, 15, "client"),
        span(trace, "m", "c1", "master-data", 3, 14),
        db(trace, "q", "m", 5, 5 + db_ms, "SELECT doc FROM customers WHERE id = $1"),
        span(trace, "c2", "g", "gateway", 12, 18, "client"),
        span(trace, "r", "c2", "rules-engine", 13, 17),
    ]


def test_critical_path_tiles_the_entry_span() -> None:
    spans = customer_trace("t1")
    children: dict[str, list[dict]] = {}
    for s in spans:
        children.setdefault(s["parent_id"], []).append(s)
    ns = critical_path(spans[0], children)
    # rules path 12-18 (gateway client 12-13, 17-18; rules 13-17), then c1 clipped to 2-12:
    # gateway 2-3, master-data 3-5 and 9-12, the query 5-9; gateway's own 0-2 and 18-20.
    assert {k: v / MS for k, v in ns.items()} == {
        "gateway": 2 + 2 + 1 + 2,
        "rules-engine": 4,
        "master-data": 2 + 3,
        "postgresql": 4,
    }
    assert sum(ns.values()) == 20 * MS


def test_breakdown_sums_to_the_gateway_server_time() -> None:
    spans = [s for i in range(30) for s in customer_trace(f"t{i:02d}", db_ms=1 + i % 5)]
    clients = [ClientRecord("graphql GetCustomer", f"t{i:02d}", None, 23.0, False)
               for i in range(30)]  # fmt: skip
    result = analyse_traces(spans, clients)
    op = result["operations"]["graphql GetCustomer"]
    assert op["traces"] == 30
    assert op["breakdown_sum_ms"] == pytest.approx(op["server_mean_ms"], abs=0.01)
    assert op["server_mean_ms"] == pytest.approx(20.0)
    assert op["outside_mean_ms"] == pytest.approx(3.0)
    assert result["client_checked"] == 30 and result["client_below_server"] == 0


def test_a_client_latency_below_the_server_span_is_counted() -> None:
    clients = [ClientRecord("graphql GetCustomer", "t1", None, 19.0, False)]
    result = analyse_traces(customer_trace("t1"), clients)
    assert result["client_below_server"] == 1


def test_statement_percentiles_use_the_recorder_definition() -> None:
    rng = random.Random(7)
    durations = [round(rng.uniform(0.5, 60.0), 3) for _ in range(200)]
    spans = [s for i, d in enumerate(durations) for s in customer_trace(f"t{i:03d}", db_ms=d)]
    result = analyse_traces(spans, [])
    (stmt,) = result["statements"]
    assert stmt["statement"] == "SELECT doc FROM customers WHERE id = $1"
    assert stmt["count"] == 200 and stmt["traces"] == 200
    hist = new_histogram()
    for d in durations:
        hist.record_value(int(d * 1000 + 0.5))
    for key, pct in (("p50_ms", 50.0), ("p95_ms", 95.0), ("p99_ms", 99.0)):
        assert stmt[key] == pytest.approx(percentile_ms(hist, pct), abs=0.001)
    assert result["targets"]["db postgresql"]["p95_ms"] == stmt["p95_ms"]
    assert result["targets"]["server gateway"]["count"] == 200


def test_traces_outside_steady_state_are_left_out() -> None:
    spans = customer_trace("early") + customer_trace("late")
    for s in spans[:6]:
        s["start_ns"] -= 60 * 1_000_000_000
        s["end_ns"] -= 60 * 1_000_000_000
    clients = [ClientRecord("graphql GetCustomer", "late", None, 25.0, False)]
    result = analyse_traces(spans, clients, steady_start_s=T0 / 1e9 - 30)
    assert result["traces"] == 1 and result["exemplars"][0]["trace_id"] == "late"


def test_span_slos_are_judged_on_traces_not_spans() -> None:
    targets = slo_targets(
        {
            "db postgresql": {"p95_ms": 120.0, "count": 400, "traces": 40},
            "server gateway": {"p95_ms": 20.0, "count": 390, "traces": 39},
        }
    )
    specs = [SloSpec("span", "db *", "p95_ms", 100), SloSpec("span", "server *", "p95_ms", 50),
             SloSpec("span", "queue *", "p99_ms", 10)]  # fmt: skip
    rows = check_run(specs, {}, {}, targets) + unmatched_rows(specs, targets)
    by_target = {r["target"]: r for r in rows}
    assert by_target["db postgresql"]["passed"] is False
    assert by_target["server gateway"]["passed"] is None  # 39 traces < MIN_SAMPLES["p95_ms"]
    assert by_target["queue *"] == {
        "kind": "span", "target": "queue *", "metric": "p99_ms", "limit": 10, "value": None,
        "passed": None, "pattern": "queue *", "samples": 0,
    }  # fmt: skip
    assert all(r["kind"] == "span" and {"limit", "value", "passed"} <= set(r) for r in rows)


def tap_of(*clients: ClientRecord) -> ClientTap:
    tap = ClientTap(0.0)
    tap.clients.extend(clients)
    return tap


def test_no_traces_received_is_said_and_inconclusive() -> None:
    receiver = {"endpoint": "http://127.0.0.1:9/v1/traces", "spans_kept": 0, "spans_foreign": 0}
    tap = tap_of(ClientRecord("graphql GetCustomer", "t1", None, 25.0, False))
    result = traces_summary([], tap, [SloSpec("span", "db *", "p95_ms", 100)], receiver=receiver)
    assert result.section is not None
    assert result.section["note"].startswith(NO_TRACES)
    assert "1 sampled requests" in result.section["note"]
    assert [r["passed"] for r in result.rows] == [None]
    assert result.reasons and result.reasons[0].startswith(NO_TRACES)
    result = traces_summary([], tap, [], receiver=receiver)
    assert result.section is not None and result.section["note"].startswith(NO_TRACES)
    assert result.rows == [] and result.reasons == []
    assert traces_summary([], tap_of(), [], receiver=None).section is None


def test_exemplars_link_through_the_templates() -> None:
    spans = customer_trace("a" * 32)
    spans[2]["attrs"]["temporalWorkflowID"] = "PurchaseOrderApproval-1"
    receiver = {
        "spans_kept": 6,
        "trace_url": "http://localhost:3301/trace/{trace_id}",
        "workflow_url": "http://localhost:8088/namespaces/{namespace}/workflows/{workflow_id}",
        "namespace": "vextrus",
    }
    section = traces_summary(spans, tap_of(), [], receiver=receiver).section
    assert section is not None
    (row,) = section["exemplars"]
    assert row["url"] == "http://localhost:3301/trace/" + "a" * 32
    assert row["workflow_url"] == (
        "http://localhost:8088/namespaces/vextrus/workflows/PurchaseOrderApproval-1"
    )


def test_trace_ids_carry_the_marker_and_sampling_follows_the_rate() -> None:
    prefix = new_prefix(random.Random(3))
    sampler = TraceSampler(0.1, seed=5, prefix=parse_prefix(prefix))
    drawn = [sampler.sample() for _ in range(20_000)]
    assert all(d is not None and d[0][3:11] == prefix for d in drawn)
    sampled = [d for d in drawn if d is not None and d[1] is not None]
    assert 0.09 < len(sampled) / len(drawn) < 0.11
    assert all(d[0].endswith("-01") and d[0][3:35] == d[1] for d in sampled)
    assert len({d[1] for d in sampled}) == len(sampled)
    assert TraceSampler(0.0, prefix=1).sample() is None
    with pytest.raises(ValueError):
        parse_prefix("0000000")


def test_sampled_requests_are_listed_in_their_slice() -> None:
    records: list[dict] = []
    rec = SliceRecorder(records.append, worker="w", clock=lambda: 1000.0)
    rec.on_request("graphql A", 12.5, None, {"trace_id": "ab" * 16}, start_time=999.5)
    rec.on_request("graphql A", 3.0, None, {}, start_time=999.6)
    rec.on_request("graphql A", 7.25, "boom", {"trace_id": "cd" * 16}, start_time=999.7)
    rec.close_slice()
    assert records[0]["ops"]["graphql A"]["traces"] == [
        ["ab" * 16, 999.5, 12.5, 0],
        ["cd" * 16, 999.7, 7.25, 1],
    ]
    tap = ClientTap(steady_start_s=0.0)
    assert list(tap.wrap(records)) == records
    assert [(c.trace_id, c.latency_ms, c.failed) for c in tap.clients] == [
        ("ab" * 16, 12.5, False),
        ("cd" * 16, 7.25, True),
    ]
    warmup = ClientTap(steady_start_s=2000.0)
    warmup.add(records[0])
    assert warmup.clients == [] and warmup.warmup_ids == {"ab" * 16, "cd" * 16}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(
        "[users.health]\nrate_per_s = 1\n[targets]\nembedded_stack = false\n" + text,
        encoding="utf-8",
    )
    return path


def test_traces_section_and_span_slos_load(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, """
[traces]
port = 14400
max_spans = 5000
flush_wait_s = 2
trace_url = "http://localhost:3301/trace/{trace_id}"
[slos.spans."db *"]
p95_ms = 100
[slos.spans."server gateway"]
p50_ms = 20
p99_ms = 200
"""))  # fmt: skip
    assert scenario.traces is not None and scenario.traces.port == 14400
    assert scenario.traces.endpoint == "http://127.0.0.1:14400/v1/traces"
    assert [s for s in scenario.slos if s.kind == "span"] == [
        SloSpec("span", "db *", "p95_ms", 100.0),
        SloSpec("span", "server gateway", "p50_ms", 20.0),
        SloSpec("span", "server gateway", "p99_ms", 200.0),
    ]
    assert load_scenario(write(tmp_path, "[traces]\nenabled = false\n")).traces is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[traces]\nport = 70000", "key 'traces.port': must be a port number"),
        ("[traces]\ntrace_url = 'http://x/{span}'", "'traces.trace_url': unknown field '{span}'"),
        ("[traces]\nspans = 3", "key 'traces.spans': unknown key"),
        ('[slos.spans."db *"]\np90_ms = 3', "key 'slos.spans.db *.p90_ms': unknown key"),
        ('[slos.spans."db *"]\np95_ms = "fast"', "key 'slos.spans.db *.p95_ms': expected number"),
    ],
)
def test_bad_traces_keys_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("{", r"\{")) as exc:
        load_scenario(write(tmp_path, text))
    assert exc.value.exit_code == 2


def test_span_targets_reach_the_gate_as_operations(tmp_path: Path) -> None:
    import json

    from capacity.analysis.gate import GateConfig, evaluate
    from capacity.baseline import load_baseline, read_run_metrics

    spans = [s for i in range(50) for s in customer_trace(f"t{i:02d}", db_ms=150.0)]
    section = traces_summary(spans, tap_of(), [], receiver={"spans_kept": len(spans)}).section
    summary = {"schema": 1, "run_id": "r1", "scenario": "smoke", "operations": {},
               "resources": {}, "traces": section}  # fmt: skip
    (tmp_path / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    run = read_run_metrics(tmp_path)
    assert set(run.operations) == {"span server gateway", "span server master-data",
                                   "span server rules-engine", "span db postgresql"}  # fmt: skip
    assert run.operations["span db postgresql"]["count"] == 50
    development = load_baseline(Path(__file__).resolve().parent.parent / "scenarios" /
                                "baselines" / "development.toml")  # fmt: skip
    report = evaluate(development.slos, None, [run], GateConfig())
    (check,) = [c for c in report.slo_checks if c.target == "span db postgresql"]
    assert check.verdict == "fail" and check.value == pytest.approx(150.0, abs=0.2)
