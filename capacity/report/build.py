"""Re-make a run's summary and reports from its run folder alone (optionally against another)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from capacity import runfolder
from capacity.analysis import summarize, timeline
from capacity.errors import CapacityError, ConfigError
from capacity.report import capacity_charts, charts
from capacity.report import traces as traces_report
from capacity.report.compare import compare_summaries
from capacity.report.render import render_html, render_markdown
from capacity.scenario import load_scenario, slos_from_json
from capacity.sweep import DEFAULT_HEADROOM, SweepResult, analyse_sweep, sweep_to_json, think_time_s
from capacity.traces.spans import iter_spans


@dataclass(frozen=True)
class RunData:
    """One run folder read and analysed; nothing written."""

    path: Path
    meta: dict[str, Any]
    summary: dict[str, Any]
    timeline: pd.DataFrame
    resources: pd.DataFrame | None
    t0_s: float
    sweep: SweepResult | None
    capacity_note: str | None = None


def _scenario_think_time_s(meta: dict[str, Any]) -> float | None:
    """Think time from the scenario file the run used, when it is still there and loads."""
    path = meta.get("scenario_path")
    if not path or not Path(path).is_file():
        return None
    try:
        return think_time_s(load_scenario(path).users)
    except (ConfigError, TypeError):
        return None


def _stage_count(meta: dict[str, Any]) -> int:
    load = meta.get("load")
    stages = load.get("stages", 0) if isinstance(load, dict) else 0
    return stages if isinstance(stages, int) else 0


def load_run(
    run_dir: Path, *, target_rps: float | None = None, headroom: float = DEFAULT_HEADROOM
) -> RunData:
    """Read a run folder and analyse it: summary, timeline, and the sweep for staged runs."""
    from capacity.collect import read_resources

    folder = runfolder.RunFolder.open(run_dir)
    meta = folder.meta
    slices = list(runfolder.iter_slices(run_dir))
    resources_path = run_dir / runfolder.RESOURCES
    resources = read_resources(resources_path) if resources_path.exists() else None
    op_slos, svc_slos = slos_from_json(meta.get("slos", {}))
    summary = summarize(
        slices,
        resources,
        run_meta=meta,
        operation_slos=op_slos,
        service_slos=svc_slos,
        spans=iter_spans(run_dir),
    )
    slice_s = float(meta.get("slice_s", 2.0) or 2.0)
    tl = timeline(slices, slice_s)
    t0 = float(meta.get("load_started_at") or (tl["t_s"].min() - slice_s if not tl.empty else 0.0))
    sweep = None
    note = None
    if _stage_count(meta) >= 2:
        host_cores = float(os.cpu_count() or 1)
        sweep = analyse_sweep(
            slices,
            resources,
            operation_slos=op_slos,
            think_time_s=_scenario_think_time_s(meta),
            target_rps=target_rps,
            headroom=headroom,
            # Temporal is a Go server and can use every core; the stand-ins are one process.
            cpu_limit_cores={"temporal": host_cores},
            host_cores=host_cores,
        )
        if sweep is not None:
            summary["capacity"] = sweep_to_json(sweep)
        else:
            note = (
                f"The load had {_stage_count(meta)} stages but fewer than 2 steady steps were "
                "found (a step needs at least 2 slices after its first): no capacity analysis."
            )
    return RunData(run_dir, meta, summary, tl, resources, t0, sweep, note)


def _charts(run: RunData) -> dict[str, list[tuple[str, str]]]:
    """Chart data URIs by report section; charts without data are left out."""
    s = run.summary
    warmup_end = run.t0_s + float(s.get("warmup_s") or 0.0)
    sections: dict[str, list[tuple[str, str | None]]] = {"capacity": [], "time": []}
    if run.sweep is not None:
        slo_limit = run.sweep.slo.p95_limit_ms if run.sweep.slo else None
        sections["capacity"] = [
            ("Throughput against concurrency", capacity_charts.throughput_curve(run.sweep)),
            ("Latency against concurrency", capacity_charts.latency_by_step(run.sweep, slo_limit)),
            ("CPU per service against load", capacity_charts.resource_by_step(run.sweep, "cpu")),
            ("Memory per service against load", capacity_charts.resource_by_step(run.sweep, "mem")),
        ]
    if isinstance(s.get("traces"), dict):
        sections["traces"] = [("Where the time goes", traces_report.breakdown_chart(s["traces"]))]
    sections["time"] = [
        ("Latency over time", charts.latency_chart(run.timeline, run.t0_s, warmup_end)),
        ("Throughput over time", charts.throughput_chart(run.timeline, run.t0_s)),
    ]
    if run.resources is not None:
        for title, column, label in (
            ("CPU per service over time", "cpu_cores", "CPU (cores)"),
            ("Memory per service over time", "mem_mb", "memory (MB)"),
        ):
            uri = charts.resource_chart(run.resources, run.t0_s, column, label)
            sections["time"].append((title, uri))
    return {k: [(t, uri) for t, uri in v if uri is not None] for k, v in sections.items()}


def build_report(
    run_dir: Path,
    *,
    compare_dir: Path | None = None,
    target_rps: float | None = None,
    headroom: float = DEFAULT_HEADROOM,
) -> dict[str, Any]:
    """Write summary.json, report.html and report.md for `run_dir`; return the summary.

    With `compare_dir`, the other run is read (never written to) and the comparison is added
    to this run's summary under "comparison" and to both reports.
    """
    if compare_dir is not None and compare_dir.resolve() == run_dir.resolve():
        raise CapacityError(f"{compare_dir}: --compare needs a different run folder")
    if compare_dir is not None:
        runfolder.RunFolder.open(compare_dir)  # a wrong path fails before the long analysis
    run = load_run(run_dir, target_rps=target_rps, headroom=headroom)
    sections = _charts(run)
    if compare_dir is not None:
        other = load_run(compare_dir, target_rps=target_rps, headroom=headroom)
        run.summary["comparison"] = compare_summaries(run.summary, other.summary)
        overlay = capacity_charts.compare_overlay(
            (run.summary.get("run_id") or "this run", run.timeline, run.t0_s, run.sweep),
            (other.summary.get("run_id") or "other run", other.timeline, other.t0_s, other.sweep),
        )
        sections["compare"] = [("Overlay of the two runs", overlay)] if overlay else []
    runfolder.write_json(run_dir / runfolder.SUMMARY, run.summary)
    html = render_html(run.summary, sections, run.capacity_note)
    (run_dir / runfolder.REPORT_HTML).write_text(html, encoding="utf-8")
    markdown = render_markdown(run.summary, run.capacity_note)
    (run_dir / runfolder.REPORT_MD).write_text(markdown, encoding="utf-8")
    return run.summary
