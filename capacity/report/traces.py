"""The report's "Where the time goes" section: rows and the stacked chart from `summary.traces`.

Pure over the summary document, shared by the HTML and Markdown reports (as `views` is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capacity.report.views import fmt
from capacity.traces.analysis import OUTSIDE

MAX_STATEMENTS = 10
STATEMENT_CHARS = 160


def section(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    traces = summary.get("traces")
    return traces if isinstance(traces, Mapping) else None


def headline(traces: Mapping[str, Any]) -> str:
    """How many traces the figures rest on, or why there are none."""
    if traces.get("note"):
        return str(traces["note"])
    receiver = traces.get("receiver") or {}
    foreign = receiver.get("spans_foreign")
    dropped = receiver.get("spans_over_limit")
    text = (
        f"{traces.get('traces', 0)} traces ({traces.get('spans', 0)} spans) in steady state, "
        f"from {traces.get('sampled_requests', 0)} sampled requests"
    )
    if foreign:
        text += f"; {foreign} spans of other traces ignored"
    if dropped:
        text += f"; {dropped} spans over the limit dropped"
    return text + "."


def components(traces: Mapping[str, Any]) -> list[str]:
    """Every component of any breakdown, the largest overall first."""
    totals: dict[str, float] = {}
    for op in (traces.get("operations") or {}).values():
        for name, ms in (op.get("breakdown_ms") or {}).items():
            totals[name] = totals.get(name, 0.0) + float(ms) * int(op.get("traces") or 0)
    return sorted(totals, key=lambda n: -totals[n])


def breakdown_rows(traces: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(component columns, one row per operation: mean ms per component, server, outside)."""
    names = components(traces)
    rows = []
    for name, op in sorted((traces.get("operations") or {}).items()):
        parts = op.get("breakdown_ms") or {}
        server = op.get("server_mean_ms")
        cells = []
        for c in names:
            ms = parts.get(c)
            share = f" ({100 * ms / server:.0f}%)" if ms and server else ""
            cells.append(fmt(ms) + share if ms is not None else "–")
        rows.append(
            {
                "operation": name,
                "traces": op.get("traces"),
                "cells": cells,
                "server_mean_ms": fmt(server),
                "server_p95_ms": fmt(op.get("server_p95_ms")),
                "outside_mean_ms": fmt(op.get("outside_mean_ms")),
                "client_mean_ms": fmt(op.get("client_mean_ms")),
            }
        )
    return names, rows


def statement_rows(traces: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The slowest statements by P95 (at most MAX_STATEMENTS)."""
    rows = []
    for s in (traces.get("statements") or [])[:MAX_STATEMENTS]:
        text = str(s.get("statement") or "")
        rows.append(
            {
                "statement": text[:STATEMENT_CHARS] + ("…" if len(text) > STATEMENT_CHARS else ""),
                "system": s.get("system"),
                "services": ", ".join(s.get("services") or []),
                "count": s.get("count"),
                "traces": s.get("traces"),
                "p50_ms": fmt(s.get("p50_ms")),
                "p95_ms": fmt(s.get("p95_ms")),
                "p99_ms": fmt(s.get("p99_ms")),
                "total_ms": fmt(s.get("total_ms")),
            }
        )
    return rows


def target_rows(traces: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Server time per service and database time per system (not per statement)."""
    return [
        {
            "target": name,
            "count": t.get("count"),
            "traces": t.get("traces"),
            "p50_ms": fmt(t.get("p50_ms")),
            "p95_ms": fmt(t.get("p95_ms")),
            "p99_ms": fmt(t.get("p99_ms")),
            "max_ms": fmt(t.get("max_ms")),
        }
        for name, t in (traces.get("targets") or {}).items()
        if not name.startswith("sql ")
    ]


def exemplar_rows(traces: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "trace_id": e.get("trace_id"),
            "url": e.get("url"),
            "workflow_id": e.get("workflow_id"),
            "workflow_url": e.get("workflow_url"),
            "operation": e.get("operation"),
            "server_ms": fmt(e.get("server_ms")),
            "client_ms": fmt(e.get("client_ms")),
            "spans": e.get("spans"),
        }
        for e in traces.get("exemplars") or []
    ]


def breakdown_chart(traces: Mapping[str, Any]) -> str | None:
    """Horizontal stacked bars: mean ms per request by component, then outside the stack."""
    ops = traces.get("operations") or {}
    if not ops:
        return None
    from capacity.report.charts import plt, to_data_uri

    names = [*components(traces), OUTSIDE]
    labels = sorted(ops)
    fig, ax = plt.subplots(figsize=(9.0, 1.6 + 0.45 * len(labels)))
    left = [0.0] * len(labels)
    colours = plt.get_cmap("tab10")
    for i, component in enumerate(names):
        if component == OUTSIDE:
            widths = [max(0.0, float(ops[op].get("outside_mean_ms") or 0.0)) for op in labels]
            colour: Any = "lightgrey"
        else:
            widths = [
                float((ops[op].get("breakdown_ms") or {}).get(component, 0.0)) for op in labels
            ]
            colour = colours(i % 10)
        ax.barh(labels, widths, left=left, label=component, color=colour)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlabel("mean time per request (ms): critical path by component, then outside the stack")
    ax.invert_yaxis()
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(names), fontsize=8)
    return to_data_uri(fig)


def context(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """Everything the HTML template's traces section needs (None: the run had no tracing)."""
    traces = section(summary)
    if traces is None:
        return None
    names, rows = breakdown_rows(traces)
    return {
        "headline": headline(traces),
        "components": names,
        "rows": rows,
        "targets": target_rows(traces),
        "statements": statement_rows(traces),
        "exemplars": exemplar_rows(traces),
        "client_checked": traces.get("client_checked", 0),
        "client_below_server": traces.get("client_below_server", 0),
    }


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return out + [""]


def markdown(summary: Mapping[str, Any]) -> list[str]:
    """The Markdown report's traces section (empty for a run without tracing)."""
    ctx = context(summary)
    if ctx is None:
        return []
    lines = ["## Where the time goes (server-side traces)", "", ctx["headline"], ""]
    if ctx["rows"]:
        lines += [
            "Mean time per request along the critical path, by component (ms, share of the "
            "gateway's server time); outside = client latency minus the gateway's server span.",
            "",
        ]
        lines += _md_table(
            ["operation", "traces", *ctx["components"], "server mean", "server P95", "outside"],
            [
                [
                    r["operation"],
                    r["traces"],
                    *r["cells"],
                    r["server_mean_ms"],
                    r["server_p95_ms"],
                    r["outside_mean_ms"],
                ]
                for r in ctx["rows"]
            ],
        )
    if ctx["targets"]:
        lines += ["### Server and database time", ""]
        lines += _md_table(
            ["target", "spans", "traces", "P50 ms", "P95 ms", "P99 ms", "max ms"],
            [
                [t["target"], t["count"], t["traces"], t["p50_ms"], t["p95_ms"], t["p99_ms"],
                 t["max_ms"]]
                for t in ctx["targets"]
            ],
        )  # fmt: skip
    if ctx["statements"]:
        lines += ["### Slowest statements", ""]
        lines += _md_table(
            ["statement", "count", "P50 ms", "P95 ms", "P99 ms", "total ms"],
            [
                [f"`{s['statement']}`", s["count"], s["p50_ms"], s["p95_ms"], s["p99_ms"],
                 s["total_ms"]]
                for s in ctx["statements"]
            ],
        )  # fmt: skip
    if ctx["exemplars"]:
        lines += ["### Slowest traces", ""]
        lines += _md_table(
            ["trace", "operation", "server ms", "client ms", "spans"],
            [
                [f"[{e['trace_id']}]({e['url']})" if e["url"] else e["trace_id"], e["operation"],
                 e["server_ms"], e["client_ms"], e["spans"]]
                for e in ctx["exemplars"]
            ],
        )  # fmt: skip
    return lines
