"""Render a summary (plus charts) as a self-contained HTML page and as Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("capacity.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def headline(summary: Mapping[str, Any]) -> str:
    """The answer in one sentence."""
    slos = summary.get("slos", [])
    failed = [s for s in slos if s["passed"] is False]
    total_rps = sum((op.get("rps") or 0.0) for op in summary.get("operations", {}).values())
    verdict = summary.get("verdict", "inconclusive")
    if verdict == "pass":
        return (
            f"PASS: all {len(slos)} SLOs held at {total_rps:.0f} req/s "
            f"across {len(summary.get('operations', {}))} operations."
        )
    if verdict == "fail":
        first = failed[0]
        return (
            f"FAIL: {len(failed)} of {len(slos)} SLOs failed; first: {first['target']} "
            f"{first['metric']} {fmt(first['value'])} > {fmt(first['limit'])}."
        )
    reasons = summary.get("reasons") or ["see below"]
    return f"INCONCLUSIVE: {reasons[0]}."


def error_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    rows = []
    for name, op in summary.get("operations", {}).items():
        for msg, n in (op.get("errors") or {}).items():
            rows.append((name, msg, int(n)))
    return sorted(rows, key=lambda r: -r[2])[:30]


def render_html(summary: Mapping[str, Any], charts: Sequence[tuple[str, str]]) -> str:
    template = _ENV.get_template("report.html.j2")
    return template.render(
        s=summary, charts=charts, headline=headline(summary), fmt=fmt, errors=error_rows(summary)
    )


def render_markdown(summary: Mapping[str, Any]) -> str:
    lines = [
        f"# Capacity run {summary.get('run_id')}",
        "",
        f"Scenario **{summary.get('scenario')}**, started {summary.get('started_at')}, "
        f"{fmt(summary.get('duration_s'))} s, status {summary.get('status')}.",
        "",
        f"**{headline(summary)}**",
        "",
    ]
    for reason in summary.get("reasons", []):
        lines.append(f"- {reason}")
    if summary.get("reasons"):
        lines.append("")
    lines += [
        "## SLOs",
        "",
        "| target | metric | limit | measured | result |",
        "|---|---|---:|---:|---|",
    ]
    for s in summary.get("slos", []):
        result = {True: "pass", False: "**FAIL**"}.get(s["passed"], "inconclusive")
        lines.append(
            f"| {s['target']} | {s['metric']} | {fmt(s['limit'])} | {fmt(s['value'])} | {result} |"
        )
    lines += [
        "",
        "## Operations (steady state)",
        "",
        "| operation | count | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, op in summary.get("operations", {}).items():
        lines.append(
            f"| {name} | {op['count']} | {op['failures']} | {fmt(op.get('rps'))} | "
            f"{fmt(op.get('p50_ms'))} | {fmt(op.get('p95_ms'))} | {fmt(op.get('p99_ms'))} | "
            f"{fmt(op.get('max_ms'))} |"
        )
    lines += [
        "",
        "## Resources (steady state)",
        "",
        "| service | CPU cores mean | CPU cores max | memory MB mean | memory MB max |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in summary.get("resources", {}).items():
        lines.append(
            f"| {name} | {fmt(r.get('cpu_cores_mean'))} | {fmt(r.get('cpu_cores_max'))} | "
            f"{fmt(r.get('mem_mb_mean'))} | {fmt(r.get('mem_mb_max'))} |"
        )
    errors = error_rows(summary)
    if errors:
        lines += ["", "## Failures", "", "| operation | error | count |", "|---|---|---:|"]
        lines += [f"| {op} | {msg.replace('|', '/')} | {n} |" for op, msg, n in errors]
    return "\n".join(lines) + "\n"
