"""The history as Markdown (tables), HTML (tables and charts, self-contained) and JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import jinja2

from capacity.analysis.gate import format_change, format_value
from capacity.history.series import ScenarioHistory, Series, history_to_json

MAX_CHARTS = 60


def describe_change_point(series: Series, index: int) -> str:
    cp = series.change_points[index]
    return (
        f"from {cp.run_id}: {format_value(series.metric, cp.mean_before)} -> "
        f"{format_value(series.metric, cp.mean_after)} ({format_change(cp.relative_change)}, "
        f"p={cp.p_value:.3g})"
    )


def _last(series: Series) -> str:
    value = series.last_value
    return format_value(series.metric, value) if value is not None else "-"


def _md_cell(text: str) -> str:
    return text.replace("|", "/")


def render_markdown(histories: Sequence[ScenarioHistory]) -> str:
    lines = ["# Run history", ""]
    if not histories:
        return "\n".join([*lines, "No runs recorded.", ""])
    for h in histories:
        lines += [
            f"## {h.scenario}",
            "",
            f"{len(h.run_ids)} run(s), {h.run_ids[0]} to {h.run_ids[-1]}.",
            "",
        ]
        if h.breaks:
            lines += ["Series break (fingerprint changed, not compared across):", ""]
            for b in h.breaks:
                lines.append(f"- before {b.run_id}: " + "; ".join(b.reasons))
            lines.append("")
        lines += [
            "| kind | target | metric | runs | last | change points |",
            "|---|---|---|---:|---:|---|",
        ]
        for s in h.series:
            points = "; ".join(describe_change_point(s, i) for i in range(len(s.change_points)))
            count = sum(v is not None for v in s.values)
            lines.append(
                f"| {s.kind} | {_md_cell(s.target)} | {s.metric} | {count} | {_last(s)} | "
                f"{_md_cell(points) or 'none'} |"
            )
        lines.append("")
    return "\n".join(lines)


def render_json(histories: Sequence[ScenarioHistory]) -> str:
    return json.dumps(history_to_json(histories), indent=2) + "\n"


def series_chart(series: Series) -> str | None:
    """Values over runs; change points as red dashed lines, fingerprint breaks as grey bars."""
    from capacity.report.charts import FIGSIZE, plt, to_data_uri

    xs = [i for i, v in enumerate(series.values) if v is not None]
    ys = [v for v in series.values if v is not None]
    if len(xs) < 2:
        return None
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], 3.0))
    ax.plot(xs, ys, "o-", markersize=3, linewidth=1, label=series.metric)
    for b in series.breaks:
        ax.axvline(b.index - 0.5, color="grey", linewidth=3, alpha=0.5)
        ax.annotate(
            "fingerprint: " + b.reasons[0].split(":")[0],
            (b.index - 0.5, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            color="dimgrey",
            rotation=90,
            va="top",
            ha="right",
        )
    for cp in series.change_points:
        ax.axvline(cp.index - 0.5, color="red", linestyle="--", linewidth=1)
        ax.annotate(
            format_change(cp.relative_change),
            (cp.index - 0.5, 0.02),
            xycoords=("data", "axes fraction"),
            fontsize=8,
            color="red",
            ha="left",
        )
    ax.set_xlabel("run (oldest first)")
    ax.set_ylabel(series.metric)
    ax.set_title(f"{series.target}: {series.metric}")
    return to_data_uri(fig)


_PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Run history</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:0.9rem;text-align:left}td.n{text-align:right}.cp{color:#b00}.brk{color:#555}
img{max-width:100%}
</style></head><body>
<h1>Run history</h1>
{% if not histories %}<p>No runs recorded.</p>{% endif %}
{% for h in histories %}
<h2>{{ h.scenario }}</h2>
<p>{{ h.run_ids|length }} run(s), {{ h.run_ids[0] }} to {{ h.run_ids[-1] }}.</p>
{% if h.breaks %}<p class="brk">Series break where the environment fingerprint changed (runs on
either side are not compared):</p><ul class="brk">
{% for b in h.breaks %}
<li>before <code>{{ b.run_id }}</code>: {{ b.reasons|join("; ") }}</li>
{% endfor %}
</ul>{% endif %}
<table><tr><th>kind</th><th>target</th><th>metric</th><th>runs</th><th>last</th>
<th>change points</th></tr>
{% for row in rows[h.scenario] %}<tr><td>{{ row.kind }}</td><td>{{ row.target }}</td>
<td>{{ row.metric }}</td><td class="n">{{ row.count }}</td><td class="n">{{ row.last }}</td>
<td class="cp">{{ row.points or "none" }}</td></tr>{% endfor %}
</table>
{% for title, uri in charts[h.scenario] %}<figure><img alt="{{ title }}" src="{{ uri }}"></figure>
{% endfor %}
{% endfor %}
</body></html>
"""
)


def render_html(histories: Sequence[ScenarioHistory], max_charts: int = MAX_CHARTS) -> str:
    """The page: per scenario its breaks, a table of series, and charts (series with change
    points first, up to `max_charts` in all)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    charts: dict[str, list[tuple[str, str]]] = {}
    budget = max_charts
    for h in histories:
        rows[h.scenario] = [
            {
                "kind": s.kind,
                "target": s.target,
                "metric": s.metric,
                "count": sum(v is not None for v in s.values),
                "last": _last(s),
                "points": "; ".join(
                    describe_change_point(s, i) for i in range(len(s.change_points))
                ),
            }
            for s in h.series
        ]
        ordered = sorted(h.series, key=lambda s: (not s.change_points, s.kind, s.target))
        charts[h.scenario] = []
        for s in ordered:
            if budget <= 0:
                break
            uri = series_chart(s)
            if uri is not None:
                charts[h.scenario].append((s.name, uri))
                budget -= 1
    return _PAGE.render(histories=histories, rows=rows, charts=charts, isfinite=math.isfinite)
