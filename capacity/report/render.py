"""Render a summary (plus charts) as a self-contained HTML page and as Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from capacity.report import traces, views
from capacity.report.compare import RESOURCE_METRICS
from capacity.report.views import fmt, headline

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("capacity.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
COMPARE_OPERATION_METRICS = ("rps", "p95_ms", "error_rate")

ChartSections = Mapping[str, Sequence[tuple[str, str]]]


def error_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    rows = []
    for name, op in summary.get("operations", {}).items():
        for msg, n in (op.get("errors") or {}).items():
            rows.append((name, msg, int(n)))
    return sorted(rows, key=lambda r: -r[2])[:30]


def render_html(
    summary: Mapping[str, Any], charts: ChartSections, capacity_note: str | None = None
) -> str:
    """The report page; `charts` maps a section ("capacity", "time", "compare") to charts.

    `capacity_note` says why a staged run has no capacity section.
    """
    cap = summary.get("capacity")
    comparison = summary.get("comparison")
    template = _ENV.get_template("report.html.j2")
    return template.render(
        s=summary,
        cap=cap,
        capacity_note=capacity_note,
        charts=charts,
        headline=headline(summary),
        verdict_sentence=views.verdict_sentence(summary),
        fmt=fmt,
        errors=error_rows(summary),
        tiles=views.key_figures(cap) if cap else [],
        usl_rows=views.usl_rows(cap["usl"]) if cap and cap["usl"].get("ok") else [],
        step_rows=views.step_rows(cap) if cap else [],
        service_rows=views.service_rows(cap) if cap else [],
        projection_rows=views.projection_rows(cap) if cap else [],
        model_warnings=views.model_warnings(cap) if cap else [],
        comparison=comparison,
        compare_ops=views.comparison_rows(comparison, "operations", COMPARE_OPERATION_METRICS)
        if comparison
        else [],
        compare_ops_metrics=COMPARE_OPERATION_METRICS,
        compare_res=views.comparison_rows(comparison, "resources", RESOURCE_METRICS)
        if comparison
        else [],
        compare_res_metrics=RESOURCE_METRICS,
        fmt_pct=views.fmt_pct,
        fmt_users=views.fmt_users,
        headroom=views.headroom,
        client_rows=views.client_rows(summary),
        latency_notes=views.latency_notes(summary),
        tr=traces.context(summary),
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> list[str]:
    aligns = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|"
    out = ["| " + " | ".join(header) + " |", rule]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return out + [""]


def _capacity_markdown(cap: Mapping[str, Any]) -> list[str]:
    lines = ["## Capacity", ""]
    lines += [f"- **{label}**: {value} ({note})" for label, value, note in views.key_figures(cap)]
    lines.append("")
    usl = cap.get("usl") or {}
    if usl.get("ok"):
        lines += ["### Scalability model (USL)", ""]
        lines += _table(
            ("parameter", "value", "95% interval", "meaning"), views.usl_rows(usl), "lrrl"
        )
    warnings = views.model_warnings(cap)
    if warnings:
        lines += ["### Caveats", ""] + [f"- {w}" for w in warnings] + [""]
    lines += ["### Steps", ""]
    lines += _table(
        ("users", "steady s", "req/s", "P50 ms", "P95 ms", "P99 ms", "errors", "Little's law"),
        [
            (
                r["users"],
                r["duration_s"],
                r["rps"],
                r["p50_ms"],
                r["p95_ms"],
                r["p99_ms"],
                r["error_pct"],
                f"{r['littles']} ({r['littles_ratio']})",
            )
            for r in views.step_rows(cap)
        ],
    )
    lines += ["### Demand per service", ""]
    lines += _table(
        (
            "service",
            "CPU ms/request",
            "base cores",
            "cores at top step",
            "base MB",
            "MB/user",
            "MB at top step",
        ),
        [
            (
                ("**" + r["service"] + "** (bottleneck)") if r["bottleneck"] else r["service"],
                r["cpu_ms_per_request"],
                r["cpu_cores_base"],
                r["cpu_cores_top"],
                r["mem_mb_base"],
                r["mem_mb_per_user"],
                r["mem_mb_top"],
            )
            for r in views.service_rows(cap)
        ],
    )
    proj = cap.get("projection")
    if proj:
        lines += [
            f"### Projection for {fmt(proj['target_rps'])} req/s "
            f"(~{views.fmt_users(proj['target_users'])} users, {proj['headroom']:.0%} headroom)",
            "",
        ]
        lines += _table(
            (
                "service",
                "replicas",
                "limited by",
                "cores demand",
                "cores with headroom",
                "MB demand",
                "MB with headroom",
            ),
            [
                (
                    r["service"],
                    r["replicas"],
                    r["limited_by"],
                    r["cpu_cores_demand"],
                    r["cpu_cores_needed"],
                    r["mem_mb_demand"],
                    r["mem_mb_needed"],
                )
                for r in views.projection_rows(cap)
            ],
            "lrlrrrr",
        )
    return lines


def _comparison_markdown(comparison: Mapping[str, Any]) -> list[str]:
    lines = [
        f"## Comparison with {comparison.get('other_run')}",
        "",
        "Change is this run against the other. " + str(comparison.get("note", "")),
        "",
    ]
    for title, section, metrics in (
        ("Operations", "operations", COMPARE_OPERATION_METRICS),
        ("Resources", "resources", RESOURCE_METRICS),
    ):
        header = ["name"] + [f"{m} (this / other / change)" for m in metrics]
        rows = [
            [r["name"]] + [f"{a} / {b} / {c}" for a, b, c, _ in r["cells"]]
            for r in views.comparison_rows(comparison, section, metrics)
        ]
        lines += [f"### {title}", ""] + _table(header, rows)
    if comparison.get("capacity"):
        lines += ["### Capacity", ""]
        lines += _table(
            ("figure", "this", "other", "change"),
            [
                (k, fmt(v["this"]), fmt(v["other"]), views.fmt_pct(v["change_pct"], signed=True))
                for k, v in comparison["capacity"].items()
            ],
        )
    return lines


def _temporal_markdown(t: Mapping[str, Any]) -> list[str]:
    """The Temporal saturation section (capacity.analysis.temporal)."""
    lines = ["## Temporal saturation (steady state)", "", str(t.get("reading", "")), ""]
    lines += _table(
        ("workflow type", "starts", "start p50 ms", "start p95 ms", "schedule-to-start samples",
         "p50 ms", "p95 ms", "p99 ms", "max ms"),
        [
            (name, w["starts"], fmt(w["start_p50_ms"]), fmt(w["start_p95_ms"]),
             w["schedule_to_start_samples"], fmt(w["schedule_to_start_p50_ms"]),
             fmt(w["schedule_to_start_p95_ms"]), fmt(w["schedule_to_start_p99_ms"]),
             fmt(w["schedule_to_start_max_ms"]))
            for name, w in t.get("workflow_types", {}).items()
        ],
    )  # fmt: skip
    lines += _table(
        ("task queue", "backlog max", "backlog mean", "oldest task s", "polls"),
        [
            (name, fmt(q["backlog_max"]), fmt(q["backlog_mean"]), fmt(q["backlog_age_max_s"]),
             q["samples"]) if q["reported"] else (name, "not reported", "", "", q["samples"])
            for name, q in t.get("task_queues", {}).items()
        ],
    )  # fmt: skip
    lines += [
        f"CPU of {t.get('worker_service') or 'the worker'} (workers): mean "
        f"{fmt(t.get('worker_cpu_cores_mean'))}, max {fmt(t.get('worker_cpu_cores_max'))} cores; "
        f"of the Temporal server: mean {fmt(t.get('temporal_cpu_cores_mean'))}, max "
        f"{fmt(t.get('temporal_cpu_cores_max'))} cores.",
        "",
    ]
    return lines


def _client_markdown(summary: Mapping[str, Any]) -> list[str]:
    """Client-observed latency and client overhead per operation, with the notes."""
    rows = views.client_rows(summary)
    if not rows:
        return []
    lines = ["### Latency basis and client overhead", ""]
    lines += [f"- {note}" for note in views.latency_notes(summary)]
    lines += [f"- **Warning:** {w}" for w in summary.get("warnings") or []]
    lines.append("")
    lines += _table(
        (
            "operation",
            "basis",
            "client p50 ms",
            "client p95 ms",
            "client p99 ms",
            "overhead p50 ms",
            "overhead p99 ms",
            "connections",
            "connect p50 / max ms",
        ),
        [
            (
                r["name"],
                r["basis"],
                r["p50_client_ms"],
                r["p95_client_ms"],
                r["p99_client_ms"],
                r["overhead_p50_ms"],
                r["overhead_p99_ms"],
                r["connects"],
                r["connect_ms"],
            )
            for r in rows
        ],
        "llrrrrrrr",
    )
    return lines


def render_markdown(summary: Mapping[str, Any], capacity_note: str | None = None) -> str:
    lines = [
        f"# Capacity run {summary.get('run_id')}",
        "",
        f"Scenario **{summary.get('scenario')}**, started {summary.get('started_at')}, "
        f"{fmt(summary.get('duration_s'))} s, status {summary.get('status')}.",
        "",
        f"**{headline(summary)}**",
        "",
    ]
    if summary.get("capacity"):
        lines += [views.verdict_sentence(summary), ""]
    for reason in summary.get("reasons", []):
        lines.append(f"- {reason}")
    if summary.get("reasons"):
        lines.append("")
    if summary.get("capacity"):
        lines += _capacity_markdown(summary["capacity"])
    elif capacity_note:
        lines += ["## Capacity", "", capacity_note, ""]
    lines += ["## SLOs", ""]
    lines += _table(
        ("target", "metric", "limit", "measured", "headroom", "result"),
        [
            (
                s["target"],
                s["metric"],
                fmt(s["limit"]),
                fmt(s["value"]),
                views.headroom(s),
                {True: "pass", False: "**FAIL**"}.get(s["passed"], "inconclusive"),
            )
            for s in summary.get("slos", [])
        ],
        "llrrrl",
    )
    lines += ["## Operations (steady state)", ""]
    lines += _table(
        ("operation", "count", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"),
        [
            (
                name,
                op["count"],
                op["failures"],
                fmt(op.get("rps")),
                fmt(op.get("p50_ms")),
                fmt(op.get("p95_ms")),
                fmt(op.get("p99_ms")),
                fmt(op.get("max_ms")),
            )
            for name, op in summary.get("operations", {}).items()
        ],
    )
    lines += _client_markdown(summary)
    if summary.get("temporal"):
        lines += _temporal_markdown(summary["temporal"])
    lines += ["## Resources (steady state)", ""]
    lines += _table(
        ("service", "CPU cores mean", "CPU cores max", "memory MB mean", "memory MB max"),
        [
            (
                name,
                fmt(r.get("cpu_cores_mean")),
                fmt(r.get("cpu_cores_max")),
                fmt(r.get("mem_mb_mean")),
                fmt(r.get("mem_mb_max")),
            )
            for name, r in summary.get("resources", {}).items()
        ],
    )
    lines += traces.markdown(summary)
    errors = error_rows(summary)
    if errors:
        lines += ["## Failures", ""]
        lines += _table(("operation", "error", "count"), errors, "llr")
    if summary.get("comparison"):
        lines += _comparison_markdown(summary["comparison"])
    return "\n".join(lines).rstrip("\n") + "\n"
