"""Re-make a run's summary and reports from its run folder alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capacity import runfolder
from capacity.analysis import summarize, timeline
from capacity.report import charts
from capacity.report.render import render_html, render_markdown
from capacity.scenario import slos_from_json


def build_report(run_dir: Path) -> dict[str, Any]:
    """Write summary.json, report.html and report.md for `run_dir`; return the summary."""
    from capacity.collect import read_resources

    folder = runfolder.RunFolder.open(run_dir)
    meta = folder.meta
    slices = list(runfolder.iter_slices(run_dir))
    resources_path = run_dir / runfolder.RESOURCES
    resources = read_resources(resources_path) if resources_path.exists() else None
    op_slos, svc_slos = slos_from_json(meta.get("slos", {}))
    summary = summarize(
        slices, resources, run_meta=meta, operation_slos=op_slos, service_slos=svc_slos
    )
    runfolder.write_json(run_dir / runfolder.SUMMARY, summary)

    slice_s = float(meta.get("slice_s", 2.0) or 2.0)
    tl = timeline(slices, slice_s)
    t0 = float(meta.get("load_started_at") or (tl["t_s"].min() - slice_s if not tl.empty else 0.0))
    warmup_end = t0 + float(summary.get("warmup_s") or 0.0)
    chart_list = [
        ("Latency over time", charts.latency_chart(tl, t0, warmup_end)),
        ("Throughput over time", charts.throughput_chart(tl, t0)),
    ]
    if resources is not None:
        chart_list += [
            ("CPU per service", charts.resource_chart(resources, t0, "cpu_cores", "CPU (cores)")),
            ("Memory per service", charts.resource_chart(resources, t0, "mem_mb", "memory (MB)")),
        ]
    embedded = [(title, uri) for title, uri in chart_list if uri is not None]
    (run_dir / runfolder.REPORT_HTML).write_text(render_html(summary, embedded), encoding="utf-8")
    (run_dir / runfolder.REPORT_MD).write_text(render_markdown(summary), encoding="utf-8")
    return summary
