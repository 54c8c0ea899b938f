"""find.html (self-contained, charts embedded), find.md and find.json for a `capacity find`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from capacity.find.result import FindResult, result_to_json


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def probe_rows(data: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for p in data["probes"]:
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in sorted(p["cpu_cores_mean"].items()))
        why = "; ".join(p["slo_failures"] or p["reasons"])
        rows.append(
            [
                str(p["index"]),
                f"{p['rate_per_s']:.1f}",
                _fmt(p["throughput_rps"]),
                _fmt(p["p95_ms"]),
                _fmt(p["p99_ms"]),
                "-" if p["error_rate"] is None else f"{100 * p['error_rate']:.2f}%",
                p["outcome"],
                cpu,
                why,
                f"{p['wall_s']:.0f}",
            ]
        )
    return rows


HEADER = [
    "#",
    "offered /s",
    "throughput /s",
    "P95 ms",
    "P99 ms",
    "errors",
    "outcome",
    "CPU cores",
    "why",
    "wall s",
]


def render_markdown(data: Mapping[str, Any]) -> str:
    lo, hi = data["interval_rps"]
    lines = [
        f"# Capacity find: {data['scenario']}",
        "",
        data["headline"],
        "",
        f"- status: **{data['status']}** ({data['reason']})",
        f"- SLO-limited capacity: {_fmt(lo)} arrivals/s; interval [{_fmt(lo)}, {_fmt(hi)}]",
        f"- {data['bottleneck']['sentence']}",
        f"- {len(data['probes'])} probes in {data['elapsed_s']:.0f} s",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    lines += [
        "| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in probe_rows(data)
    ]
    return "\n".join(lines) + "\n"


def _charts(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    from capacity.report.charts import FIGSIZE, plt, to_data_uri

    probes = [p for p in data["probes"] if p["outcome"] in ("pass", "fail")]
    if not probes:
        return []
    out = []
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for outcome, color in (("pass", "tab:green"), ("fail", "tab:red")):
        pts = [(p["rate_per_s"], p["p95_ms"]) for p in probes if p["outcome"] == outcome]
        pts = [(x, y) for x, y in pts if y is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), color=color, label=outcome, zorder=3)
    for spec in data["slos"]:
        if spec["kind"] == "operation" and spec["metric"] == "p95_ms":
            ax.axhline(spec["limit"], color="black", linestyle="--", linewidth=1)
            ax.annotate(f"P95 SLO {spec['pattern']}", (0.01, spec["limit"]),
                        xycoords=("axes fraction", "data"), fontsize=8, va="bottom")  # fmt: skip
    lo, hi = data["interval_rps"]
    if lo is not None and hi is not None:
        ax.axvspan(lo, hi, color="orange", alpha=0.2, label="answer interval")
    ax.set_yscale("log")
    ax.set_xlabel("offered arrival rate (/s)")
    ax.set_ylabel("P95 from intended start (ms, log)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("P95 against offered rate, per probe")
    out.append(("P95 against offered rate", to_data_uri(fig)))
    fig, ax = plt.subplots(figsize=FIGSIZE)
    rates = [p["rate_per_s"] for p in probes]
    ax.scatter(rates, [p["throughput_rps"] for p in probes], label="throughput", zorder=3)
    top = max(rates)
    ax.plot([0, top], [0, top], color="grey", linewidth=1, label="throughput = offered")
    services = sorted({s for p in probes for s in p["cpu_cores_mean"]})
    cpu = ax.twinx()
    cpu.grid(False)
    cpu.spines["right"].set_visible(True)
    for service in services:
        pts = sorted(
            (p["rate_per_s"], p["cpu_cores_mean"][service])
            for p in probes
            if service in p["cpu_cores_mean"]
        )
        cpu.plot(*zip(*pts, strict=True), "o--", markersize=3, linewidth=1, label=f"{service} CPU")
    cpu.set_ylabel("CPU (cores)")
    ax.set_xlabel("offered arrival rate (/s)")
    ax.set_ylabel("throughput (/s)")
    lines, labels = ax.get_legend_handles_labels()
    l2, lab2 = cpu.get_legend_handles_labels()
    ax.legend(lines + l2, labels + lab2, loc="upper left", fontsize=7, ncol=2)
    ax.set_title("Throughput and CPU per service against offered rate")
    out.append(("Throughput and CPU against offered rate", to_data_uri(fig)))
    return out


_PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Capacity find: {{ d.scenario }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
.headline{font-size:1.15rem;font-weight:600;margin:1rem 0}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}td,th{border:1px solid #ccc;
padding:3px 8px;font-size:0.85rem;text-align:left}img{max-width:100%}
.pass{color:#070}.fail{color:#b00}.invalid{color:#a60}
</style></head><body>
<h1>Capacity find: {{ d.scenario }}</h1>
<p class="headline">{{ d.headline }}</p>
<ul>
<li>status: <b>{{ d.status }}</b> ({{ d.reason }})</li>
<li>SLO-limited capacity: {{ fmt(d.interval_rps[0]) }} arrivals/s, interval
[{{ fmt(d.interval_rps[0]) }}, {{ fmt(d.interval_rps[1]) }}]</li>
<li>{{ d.bottleneck.sentence }}</li>
<li>{{ d.probes|length }} probes in {{ "%.0f"|format(d.elapsed_s) }} s; each
{{ d.settings.probe_s }} s of load ({{ d.settings.warmup_s }} s warm-up)</li>
</ul>
<h2>Probes</h2>
<table><tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for c in row %}
<td{% if loop.index == 7 %} class="{{ c }}"{% endif %}>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% for title, uri in charts %}<figure><img alt="{{ title }}" src="{{ uri }}"></figure>{% endfor %}
<p>Each probe's run folder (report.html, summary.json) is under <code>probes/</code>, its
scenario under <code>scenarios/</code>.</p>
</body></html>
"""
)


def render_html(data: Mapping[str, Any]) -> str:
    return _PAGE.render(
        d=data, header=HEADER, rows=probe_rows(data), charts=_charts(data), fmt=_fmt
    )


def write_find(find_dir: Path, result: FindResult) -> dict[str, Any]:
    """Write find.json, find.html and find.md into `find_dir`; return the JSON document."""
    data = result_to_json(result)
    (find_dir / "find.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (find_dir / "find.md").write_text(render_markdown(data), encoding="utf-8")
    (find_dir / "find.html").write_text(render_html(data), encoding="utf-8")
    return data
