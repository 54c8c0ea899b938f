"""Pure analysis of recorded spans: where each operation's time goes, per service and statement.

Inputs are the run folder's span records (`capacity.traces.spans`) and the client side of the
same traces (the `traces` lists of the slices: trace id, send time, client latency). No I/O.

- **Critical path, self time.** A trace's entry span (the gateway's server span: the one whose
  parent is not in the trace, its parent being the load generator) is cut into segments: from
  its end backwards, the child that finished last before the cursor takes over (recursively),
  and the gaps between children are the span's own time (Jaeger's critical-path rule). The
  segments tile the entry span exactly, so per operation the time by component (service; a
  database client span counts as its `db.system`) sums to the gateway's server time. A client
  span's own time (connection, wire, the callee before its server span starts) counts to the
  calling service.
- **Time outside the stack**: client latency minus the gateway's server span (network and
  load-generator queueing), per sampled request that has both.
- **Statements**: database spans grouped by normalised statement; count, P50/P95/P99 from HDR
  histograms (`capacity.runfolder.histograms`: one percentile definition in the project).
- **Span SLOs**: span targets are `server <service>` (server spans of a service), `db <system>`
  (every database span of that system) and `sql <statement>`; `[slos.spans."<pattern>"]`
  limits are judged by `capacity.slos.check_run` like every other SLO, on the number of
  traces (not spans: the traces are the independent units) against `MIN_SAMPLES`; a span
  limit that matches no target gets an unjudged row, never a silent pass.
"""

from __future__ import annotations

import fnmatch
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from capacity.runfolder.histograms import HIGHEST_US, new_histogram, percentile_ms
from capacity.slos import SloSpec
from capacity.traces.spans import STATEMENT_KEYS, normalise_statement

PERCENTILES = {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0}
OUTSIDE = "outside the stack"
EXEMPLARS = 10
NO_TRACES = "no traces received"


@dataclass(frozen=True)
class ClientRecord:
    """One sampled request as the load generator saw it."""

    operation: str
    trace_id: str
    start_s: float | None
    latency_ms: float
    failed: bool


@dataclass
class _Trace:
    trace_id: str
    spans: list[Mapping[str, Any]] = field(default_factory=list)


class ClientTap:
    """Collects the sampled requests' client side from slice records as they stream past.

    `wrap(records)` yields every record unchanged (the summary's one pass over the slices),
    keeping the `traces` rows of its operations: steady-state ones as `clients`, the trace
    ids of the warm-up in `warmup_ids` (their spans are left out, not taken as unmatched).
    """

    def __init__(self, steady_start_s: float) -> None:
        self.steady_start_s = steady_start_s
        self.clients: list[ClientRecord] = []
        self.warmup_ids: set[str] = set()
        self.dropped = 0

    def wrap(self, records: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for record in records:
            self.add(record)
            yield record

    def add(self, record: Mapping[str, Any]) -> None:
        # the summary's rule (capacity.analysis.summary.in_steady_state): no warm-up sample
        steady = float(record["t_start_s"]) >= self.steady_start_s
        for name, op in (record.get("ops") or {}).items():
            self.dropped += int(op.get("traces_dropped", 0) or 0)
            for row in op.get("traces") or ():
                trace_id, start_s, latency_ms, failed = row
                if steady:
                    self.clients.append(
                        ClientRecord(name, str(trace_id), start_s, float(latency_ms), bool(failed))
                    )
                else:
                    self.warmup_ids.add(str(trace_id))


def duration_ms(span: Mapping[str, Any]) -> float:
    return max(0, int(span["end_ns"]) - int(span["start_ns"])) / 1e6


def db_system(span: Mapping[str, Any]) -> str | None:
    attrs = span.get("attrs") or {}
    system = attrs.get("db.system") or attrs.get("db.system.name")
    return str(system) if system else None


def statement(span: Mapping[str, Any]) -> str | None:
    attrs = span.get("attrs") or {}
    for key in STATEMENT_KEYS:
        if attrs.get(key):
            return normalise_statement(str(attrs[key]))
    return None


def component(span: Mapping[str, Any]) -> str:
    """What a span's own time is charged to: its database system, else its service."""
    return db_system(span) or str(span.get("service") or "unknown")


def entry_span(spans: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The trace's entry: the earliest span whose parent is not in the trace, server first."""
    ids = {s["span_id"] for s in spans}
    orphans = [s for s in spans if s.get("parent_id") not in ids]
    if not orphans:
        return None
    servers = [s for s in orphans if s.get("kind") == "server"]
    return min(servers or orphans, key=lambda s: int(s["start_ns"]))


def critical_path(
    root: Mapping[str, Any], children: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, int]:
    """Nanoseconds of the root's window charged to each component along its critical path."""
    totals: Counter[str] = Counter()

    def walk(span: Mapping[str, Any], start_ns: int, end_ns: int) -> None:
        cursor = end_ns
        kids = sorted(children.get(span["span_id"], ()), key=lambda s: -int(s["end_ns"]))
        for child in kids:
            child_start = max(int(child["start_ns"]), start_ns)
            child_end = min(int(child["end_ns"]), cursor)
            if child_end <= child_start or child_start >= cursor:
                continue  # outside the window, or hidden behind a later-finishing sibling
            totals[component(span)] += cursor - child_end
            walk(child, child_start, child_end)
            cursor = child_start
            if cursor <= start_ns:
                break
        totals[component(span)] += max(0, cursor - start_ns)

    walk(root, int(root["start_ns"]), int(root["end_ns"]))
    return dict(totals)


def _histogram_stats(values_ms: Sequence[float]) -> dict[str, Any]:
    hist = new_histogram()
    for value in values_ms:
        hist.record_value(min(max(int(value * 1000 + 0.5), 1), HIGHEST_US))
    out: dict[str, Any] = {"count": len(values_ms)}
    for key, pct in PERCENTILES.items():
        p = percentile_ms(hist, pct)
        out[key] = round(p, 3) if p is not None else None
    out["max_ms"] = round(max(values_ms), 3) if values_ms else None
    out["mean_ms"] = round(sum(values_ms) / len(values_ms), 3) if values_ms else None
    return out


def _group(spans: Iterable[Mapping[str, Any]]) -> dict[str, _Trace]:
    traces: dict[str, _Trace] = {}
    for span in spans:
        trace = traces.get(span["trace_id"])
        if trace is None:
            trace = traces[span["trace_id"]] = _Trace(span["trace_id"])
        trace.spans.append(span)
    return traces


def _operation_name(root: Mapping[str, Any]) -> str:
    name = (root.get("attrs") or {}).get("graphql.operation.name")
    return f"graphql {name}" if name else str(root.get("name") or "unknown")


def _workflow_ids(trace: _Trace) -> tuple[str, str] | None:
    for span in trace.spans:
        attrs = span.get("attrs") or {}
        if attrs.get("temporalWorkflowID"):
            return str(attrs["temporalWorkflowID"]), str(attrs.get("temporalRunID") or "")
    return None


def analyse_traces(
    spans: Iterable[Mapping[str, Any]],
    clients: Sequence[ClientRecord],
    *,
    steady_start_s: float | None = None,
    end_s: float | None = None,
    excluded: Collection[str] = (),
) -> dict[str, Any]:
    """Per operation breakdowns, span targets, statements and exemplars of the steady traces.

    A trace counts when its sampled request is in `clients` (already steady-state), or, with no
    client record at all (not in `clients`, not in `excluded`: the requests of the warm-up),
    when its entry span starts within [steady_start_s, end_s].
    """
    by_client = {c.trace_id: c for c in clients}
    ops: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"traces": 0, "ns": Counter(), "server": [], "client": [], "outside": []}
    )
    server_ms: dict[str, list[float]] = defaultdict(list)
    server_traces: dict[str, set[str]] = defaultdict(set)
    db_ms: dict[str, list[float]] = defaultdict(list)
    db_traces: dict[str, set[str]] = defaultdict(set)
    sql: dict[tuple[str, str], dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    checked = violations = 0
    traces = _group(spans)
    n_spans = 0
    for trace in traces.values():
        root = entry_span(trace.spans)
        if root is None:
            continue
        client = by_client.get(trace.trace_id)
        if client is None and trace.trace_id in excluded:
            continue
        if client is None:
            start_s = int(root["start_ns"]) / 1e9
            if steady_start_s is not None and start_s < steady_start_s:
                continue
            if end_s is not None and start_s > end_s:
                continue
        n_spans += len(trace.spans)
        operation = client.operation if client else _operation_name(root)
        children: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for span in trace.spans:
            children[span.get("parent_id") or ""].append(span)
            if span.get("kind") == "server":
                server_ms[str(span.get("service"))].append(duration_ms(span))
                server_traces[str(span.get("service"))].add(trace.trace_id)
            system = db_system(span)
            if system is not None:
                db_ms[system].append(duration_ms(span))
                db_traces[system].add(trace.trace_id)
                text = statement(span) or span.get("name") or "?"
                entry = sql.setdefault(
                    (system, text), {"ms": [], "traces": set(), "services": set()}
                )
                entry["ms"].append(duration_ms(span))
                entry["traces"].add(trace.trace_id)
                entry["services"].add(str(span.get("service")))
        op = ops[operation]
        op["traces"] += 1
        op["ns"].update(critical_path(root, children))
        root_ms = duration_ms(root)
        op["server"].append(root_ms)
        row: dict[str, Any] = {
            "trace_id": trace.trace_id,
            "operation": operation,
            "server_ms": round(root_ms, 3),
            "client_ms": None,
            "spans": len(trace.spans),
        }
        if client is not None:
            checked += 1
            op["client"].append(client.latency_ms)
            op["outside"].append(client.latency_ms - root_ms)
            violations += client.latency_ms < root_ms
            row["client_ms"] = round(client.latency_ms, 3)
        workflow = _workflow_ids(trace)
        if workflow:
            row["workflow_id"], row["run_id"] = workflow
        rows.append(row)
    operations = {name: _operation_row(op) for name, op in sorted(ops.items())}
    targets: dict[str, dict[str, Any]] = {}
    for service, values in sorted(server_ms.items()):
        targets[f"server {service}"] = {
            **_histogram_stats(values),
            "traces": len(server_traces[service]),
        }
    for system, values in sorted(db_ms.items()):
        targets[f"db {system}"] = {**_histogram_stats(values), "traces": len(db_traces[system])}
    statements = []
    for (system, text), entry in sql.items():
        stats = _histogram_stats(entry["ms"])
        statements.append(
            {
                "statement": text,
                "system": system,
                "services": sorted(entry["services"]),
                "traces": len(entry["traces"]),
                "total_ms": round(sum(entry["ms"]), 3),
                **stats,
            }
        )
        targets[f"sql {text}"] = {**stats, "traces": len(entry["traces"])}
    statements.sort(key=lambda s: (-(s["p95_ms"] or 0.0), -s["count"]))
    rows.sort(key=lambda r: -r["server_ms"])
    return {
        "traces": sum(op["traces"] for op in operations.values()),
        "spans": n_spans,
        "client_checked": checked,
        "client_below_server": violations,
        "operations": operations,
        "targets": targets,
        "statements": statements,
        "exemplars": rows[:EXEMPLARS],
    }


def _operation_row(op: Mapping[str, Any]) -> dict[str, Any]:
    """Mean time per request by component (ms, critical path), plus server/client/outside."""
    n = op["traces"]
    breakdown = {
        name: round(ns / 1e6 / n, 3)
        for name, ns in sorted(op["ns"].items(), key=lambda kv: -kv[1])
        if n
    }
    server = _histogram_stats(op["server"])
    row: dict[str, Any] = {
        "traces": n,
        "breakdown_ms": breakdown,
        "breakdown_sum_ms": round(sum(breakdown.values()), 3),
        "server_mean_ms": server["mean_ms"],
        "server_p95_ms": server["p95_ms"],
        "client_traces": len(op["client"]),
        "client_mean_ms": _mean(op["client"]),
        "outside_mean_ms": _mean(op["outside"]),
        "outside_p95_ms": _histogram_stats([max(0.0, v) for v in op["outside"]])["p95_ms"]
        if op["outside"]
        else None,
    }
    return row


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def trace_url(template: str, row: Mapping[str, Any], namespace: str = "") -> str | None:
    """A link for an exemplar: the trace view, or for a workflow the Temporal UI (None: no link)."""
    if not template:
        return None
    try:
        return template.format(
            trace_id=row.get("trace_id", ""),
            workflow_id=row.get("workflow_id", ""),
            run_id=row.get("run_id", ""),
            namespace=namespace,
        )
    except (KeyError, IndexError, ValueError):
        return None


def slo_targets(targets: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Span targets as `capacity.slos.check_run` judges them: `count` is the number of traces
    (the independent units the minimum-sample rule counts), not of spans."""
    return {name: {**stats, "count": stats.get("traces", 0)} for name, stats in targets.items()}


def unmatched_rows(
    specs: Sequence[SloSpec], targets: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """A row per span limit whose pattern matches no target: a limit nobody measured is never
    a pass (`passed` None, like a service pattern with no resource samples)."""
    rows = []
    for spec in specs:
        if spec.kind != "span" or any(fnmatch.fnmatchcase(t, spec.pattern) for t in targets):
            continue
        rows.append(
            {
                "kind": "span",
                "target": spec.pattern,
                "metric": spec.metric,
                "limit": spec.limit,
                "value": None,
                "passed": None,
                "pattern": spec.pattern,
                "samples": 0,
            }
        )
    return rows


@dataclass
class TraceResult:
    """What the run summary takes from the traces: its section, span targets, extra rows."""

    section: dict[str, Any] | None
    targets: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]
    reasons: list[str]


def traces_summary(
    spans: Iterable[Mapping[str, Any]],
    tap: ClientTap,
    specs: Sequence[SloSpec],
    *,
    receiver: Mapping[str, Any] | None,
    steady_start_s: float | None = None,
    end_s: float | None = None,
) -> TraceResult:
    """The summary's `traces` section, span targets for the SLO check, and why not judged.

    `receiver` is what the run's receiver recorded in run.json (`traces`); None: the run had
    no `[traces]`, so span SLOs cannot be judged. (None section when there is nothing at all.)
    """
    span_specs = [s for s in specs if s.kind == "span"]
    spans = list(spans)
    if receiver is None and not span_specs and not spans:
        return TraceResult(None, {}, [], [])
    result = analyse_traces(
        spans,
        tap.clients,
        steady_start_s=steady_start_s,
        end_s=end_s,
        excluded=tap.warmup_ids,
    )
    links = receiver or {}
    for row in result["exemplars"]:
        row["url"] = trace_url(str(links.get("trace_url") or ""), row)
        if row.get("workflow_id") and links.get("workflow_url"):
            row["workflow_url"] = trace_url(
                str(links["workflow_url"]), row, str(links.get("namespace") or "")
            )
    reasons: list[str] = []
    note = None
    if receiver is None:
        note = "tracing off: no trace receiver ran (capacity run starts one for [traces])"
        if span_specs:
            reasons.append(
                "span SLOs not judged: no trace receiver ran (capacity run starts one for a "
                "scenario with [traces]; a plain locust run has none)"
            )
    elif not spans:
        endpoint = receiver.get("endpoint") or "the receiver"
        note = (
            f"{NO_TRACES}: nothing was exported to {endpoint} for this run's traces "
            f"({len(tap.clients)} sampled requests); check the collector's otlphttp exporter"
        )
        if span_specs:
            reasons.append(note)
    section = {
        "enabled": receiver is not None,
        "note": note,
        "receiver": dict(receiver) if receiver is not None else None,
        "spans_recorded": len(spans),
        "sampled_requests": len(tap.clients),
        "sampled_requests_dropped": tap.dropped,
        **result,
    }
    targets = slo_targets(result["targets"])
    return TraceResult(section, targets, unmatched_rows(span_specs, targets), reasons)


GATE_PREFIX = "span "


def gate_targets(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Span targets as the regression gate reads operations: `span server gateway`, `span db
    postgresql` with `p50_ms`/`p95_ms`/`p99_ms`/`max_ms` and `count` = traces (its minimum-
    sample rule counts independent units). Per-statement targets are left out: a rare
    statement missing from one run would make runs disagree on what to compare."""
    traces = summary.get("traces")
    if not isinstance(traces, Mapping):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, stats in (traces.get("targets") or {}).items():
        if str(name).startswith("sql ") or not isinstance(stats, Mapping):
            continue
        row = {key: stats.get(key) for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms")}
        row["count"] = stats.get("traces")
        out[GATE_PREFIX + str(name)] = row
    return out
