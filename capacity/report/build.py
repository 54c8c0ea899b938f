"""Re-make a run's summary and reports from its run folder alone (optionally against another).

Everything comes from the folder: run.json (SLOs, load, warm-up, the machine's core count),
slices.jsonl (streamed: memory stays flat however long the run) and resources.csv. The
scenario file is not read and the machine rendering the report does not matter, so one run
folder renders the same everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from capacity import runfolder
from capacity.analysis.summary import Analysis, summarize
from capacity.analysis.sweep import DEFAULT_HEADROOM, SweepResult, analyse_sweep, sweep_to_json
from capacity.analysis.validity import Reason
from capacity.errors import CapacityError
from capacity.report import capacity_charts, charts
from capacity.report import traces as traces_report
from capacity.report.compare import compare_summaries
from capacity.report.render import render_html, render_markdown
from capacity.traces.spans import iter_spans


@dataclass(frozen=True)
class RunData:
    """One run folder read and analysed; nothing written."""

    path: Path
    meta: runfolder.RunMeta
    summary: dict[str, Any]
    timeline: pd.DataFrame
    resources: pd.DataFrame | None
    t0_s: float
    sweep: SweepResult | None
    capacity_note: str | None = None


def _first_start_s(reader: runfolder.SliceReader) -> float | None:
    """Earliest slice start: only for run folders from before `load_started_at` existed."""
    return min((float(r["t_start_s"]) for r in reader), default=None)


def analyse_run(run_dir: Path) -> tuple[runfolder.RunMeta, Analysis, pd.DataFrame | None]:
    """Read a run folder and make its summary (no sweep, nothing written)."""
    from capacity.runfolder.resources import read_resources, resource_chunks

    folder = runfolder.RunFolder.open(run_dir)
    meta = folder.meta
    reader = runfolder.SliceReader(run_dir)
    path = run_dir / runfolder.RESOURCES
    resources: pd.DataFrame | Callable[[], Iterator[pd.DataFrame]] | None = None
    if path.exists():
        # A staged run's sweep needs every sample per step (sweeps are short); any other run's
        # resources are reduced as they are read, however long the run.
        staged = meta.load.stage_count >= 2
        resources = read_resources(path) if staged else (lambda: resource_chunks(path))
    first = _first_start_s(reader) if meta.load_started_at is None else None
    extra: list[Reason] = []
    analysis = summarize(
        reader, resources, meta, first_start_s=first, extra_reasons=extra, spans=iter_spans(run_dir)
    )
    if reader.skipped:
        lost = Reason(
            f"{reader.skipped} line(s) of {runfolder.SLICES} could not be read and were skipped: "
            "the run folder is damaged",
            "all",
        )
        analysis = summarize(
            reader,
            resources,
            meta,
            first_start_s=first,
            extra_reasons=[lost],
            spans=iter_spans(run_dir),
        )
    frame = resources if isinstance(resources, pd.DataFrame) else analysis.resources_chart
    return meta, analysis, frame


def load_run(
    run_dir: Path, *, target_rps: float | None = None, headroom: float = DEFAULT_HEADROOM
) -> RunData:
    """Read a run folder and analyse it: summary, timeline, and the sweep for staged runs."""
    meta, analysis, resources = analyse_run(run_dir)
    summary = analysis.summary
    t0 = analysis.window.load_start_s
    sweep = None
    note = None
    if meta.load.stage_count >= 2:
        # Recorded since run.json schema 2; an older folder renders with this machine's count,
        # as it always did.
        host_cores = meta.host_cores or float(os.cpu_count() or 1)
        sweep = analyse_sweep(
            runfolder.SliceReader(run_dir),
            resources,
            slos=meta.slos,
            think_time_s=meta.load.think_time_s,
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
                f"The load had {meta.load.stage_count} stages but fewer than 2 steady steps "
                "were found (a step needs at least 2 slices after its first): no capacity "
                "analysis."
            )
    return RunData(run_dir, meta, summary, analysis.timeline, resources, t0, sweep, note)


def _service_limits(summary: dict[str, Any], metric: str) -> dict[str, float]:
    return {
        row["target"]: float(row["limit"])
        for row in summary.get("slos", [])
        if row["kind"] == "service" and row["metric"] == metric
    }


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
        (
            "Latency over time",
            charts.latency_chart(run.timeline, run.t0_s, warmup_end, s.get("outages")),
        ),
        ("Throughput over time", charts.throughput_chart(run.timeline, run.t0_s)),
    ]
    if run.resources is not None:
        for title, column, label, metric in (
            ("CPU per service over time", "cpu_cores", "CPU (cores)", "cpu_cores_mean"),
            ("Memory per service over time", "mem_mb", "memory (MB)", "mem_mb_max"),
        ):
            limits = _service_limits(s, metric)
            uri = charts.resource_chart(run.resources, run.t0_s, column, label, limits)
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
    to this run's summary under "comparison" and to both reports. Every file is written
    atomically: a full disk leaves the previous version whole and says so in one line.
    """
    run_dir = Path(run_dir)
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
    runfolder.write_summary(run_dir, run.summary)
    html = render_html(run.summary, sections, run.capacity_note)
    runfolder.write_text_atomic(run_dir / runfolder.REPORT_HTML, html)
    markdown = render_markdown(run.summary, run.capacity_note)
    runfolder.write_text_atomic(run_dir / runfolder.REPORT_MD, markdown)
    return run.summary
