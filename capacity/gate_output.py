"""Renderers of a GateReport: terminal table, JUnit XML, Markdown and JSON.

One row / test case per gated metric (an SLO ceiling on one target, or one relative
comparison), so CI systems show exactly which metric failed. All functions return text;
writing files is the command's business.
"""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from typing import Any

from capacity.analysis.gate import (
    GateReport,
    RelativeCheck,
    SloCheck,
    Verdict,
    format_change,
    format_value,
)

JSON_SCHEMA = 1
_MARK = {
    Verdict.PASS: "✅",
    Verdict.IMPROVEMENT: "🟢",
    Verdict.INCONCLUSIVE: "⚠️",
    Verdict.SUSPECT: "⚠️",
    Verdict.REGRESSION: "❌",
    Verdict.FAIL: "❌",
}
_HEADERS = ("check", "target", "metric", "baseline", "current", "change / limit", "verdict")


def _rows(report: GateReport) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for slo in report.slo_checks:
        current = "-" if slo.value is None else format_value(slo.metric, slo.value)
        rows.append(
            (
                "slo",
                slo.target,
                slo.metric,
                "",
                current,
                f"<= {format_value(slo.metric, slo.limit)}",
                slo.verdict.value,
            )
        )
    for rel in report.relative_checks:
        rows.append(
            (
                "relative (weak)" if rel.weak else "relative",
                rel.target,
                rel.metric,
                format_value(rel.metric, rel.baseline_median),
                format_value(rel.metric, rel.current_median),
                format_change(rel.change),
                rel.verdict.value,
            )
        )
    return rows


def _header_lines(report: GateReport) -> list[str]:
    lines = [
        f"scenario {report.scenario}: {len(report.run_ids)} current run(s)"
        + (
            f" vs {len(report.reference_run_ids)} reference run(s)"
            if report.reference_run_ids
            else ""
        ),
    ]
    cfg = report.config
    if report.relative_checks:
        lines.append(
            f"regression = one-sided Mann-Whitney p <= {cfg.alpha:g} and median shift > "
            f"{cfg.min_effect:.0%} (weak comparisons: shift > {cfg.weak_min_effect:.0%}); "
            f"CI {cfg.confidence:.0%} bootstrap over runs"
        )
    return lines


def render_table(report: GateReport) -> str:
    """A fixed-width table for the terminal, then the evidence of every non-pass."""
    rows = _rows(report)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(_HEADERS)]
    lines = _header_lines(report)
    lines.append("")
    lines.append("  ".join(h.ljust(w) for h, w in zip(_HEADERS, widths, strict=True)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
    checks: list[SloCheck | RelativeCheck] = [*report.slo_checks, *report.relative_checks]
    details = [
        f"  {c.verdict.value}: {c.name}: {c.evidence}" for c in checks if c.verdict != Verdict.PASS
    ]
    if details:
        lines.append("")
        lines.extend(details)
    lines.extend(f"note: {note}" for note in report.notes)
    lines.append("")
    lines.append(f"verdict: {report.verdict.value} (exit {report.exit_code})")
    return "\n".join(lines) + "\n"


def _case(suite: ET.Element, classname: str, name: str, check: SloCheck | RelativeCheck) -> None:
    case = ET.SubElement(suite, "testcase", name=name, classname=classname, time="0")
    message = f"{check.verdict.value}: {check.evidence}"
    if check.verdict in (Verdict.FAIL, Verdict.REGRESSION):
        failure = ET.SubElement(case, "failure", message=message, type=check.verdict.value)
        failure.text = message
    elif check.verdict == Verdict.INCONCLUSIVE:
        error = ET.SubElement(case, "error", message=message, type="inconclusive")
        error.text = message
    else:
        ET.SubElement(case, "system-out").text = message


def render_junit(report: GateReport, suite_name: str = "capacity check") -> str:
    """JUnit XML: one <testsuite> per check family, one <testcase> per gated metric.

    Inconclusive comparisons are <error> rather than <skipped>: they make the gate exit 3,
    and a skip would read as harmless in CI dashboards.
    """
    families: list[tuple[str, list[tuple[str, str, SloCheck | RelativeCheck]]]] = [
        (
            "slo",
            [(f"capacity.slo.{c.kind}", c.name, c) for c in report.slo_checks],
        ),
        (
            "relative",
            [(f"capacity.relative.{c.kind}", c.name, c) for c in report.relative_checks],
        ),
    ]
    root = ET.Element("testsuites", name=suite_name)
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for family, cases in families:
        failures = sum(c.verdict in (Verdict.FAIL, Verdict.REGRESSION) for _, _, c in cases)
        errors = sum(c.verdict == Verdict.INCONCLUSIVE for _, _, c in cases)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"{suite_name}: {family}",
            tests=str(len(cases)),
            failures=str(failures),
            errors=str(errors),
            skipped="0",
            time="0",
        )
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="scenario", value=report.scenario)
        ET.SubElement(props, "property", name="runs", value=" ".join(report.run_ids))
        ET.SubElement(
            props, "property", name="reference_runs", value=" ".join(report.reference_run_ids)
        )
        for classname, name, check in cases:
            _case(suite, classname, name, check)
        totals["tests"] += len(cases)
        totals["failures"] += failures
        totals["errors"] += errors
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: GateReport) -> str:
    """A GitHub-flavoured Markdown summary (also suitable for $GITHUB_STEP_SUMMARY)."""
    verdict = report.verdict
    lines = [f"### Capacity gate: {_MARK[verdict]} {verdict.value}", ""]
    lines.extend(f"{line}  " for line in _header_lines(report))
    lines.append("")
    lines.append("| | check | target | metric | baseline | current | change / limit | evidence |")
    lines.append("|---|---|---|---|---|---|---|---|")
    checks: list[SloCheck | RelativeCheck] = [*report.slo_checks, *report.relative_checks]
    for row, check in zip(_rows(report), checks, strict=True):
        cells = (_MARK[check.verdict], *row[:-1], check.evidence)
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    if report.notes:
        lines.append("")
        lines.extend(f"- {_md_cell(note)}" for note in report.notes)
    lines.append("")
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    """Dataclass fields to JSON; infinities (0 -> x changes) become strings, not invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Verdict):
        return value.value
    return value


def report_to_dict(report: GateReport) -> dict[str, Any]:
    """A JSON-ready description of the gate's decision and every check's evidence."""
    checks: list[dict[str, Any]] = []
    all_checks: list[SloCheck | RelativeCheck] = [*report.slo_checks, *report.relative_checks]
    for check in all_checks:
        row = {f.name: _jsonable(getattr(check, f.name)) for f in dataclasses.fields(check)}
        row = {"check": "slo" if isinstance(check, SloCheck) else "relative", **row}
        row["name"] = check.name
        checks.append(row)
    return {
        "schema": JSON_SCHEMA,
        "verdict": report.verdict.value,
        "exit_code": report.exit_code,
        "scenario": report.scenario,
        "run_ids": list(report.run_ids),
        "reference_run_ids": list(report.reference_run_ids),
        "config": dataclasses.asdict(report.config),
        "checks": checks,
        "notes": list(report.notes),
    }


def render_json(report: GateReport) -> str:
    return json.dumps(report_to_dict(report), indent=2, ensure_ascii=False) + "\n"
