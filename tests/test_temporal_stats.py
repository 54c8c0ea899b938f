"""Temporal saturation figures from slices: schedule-to-start per type, backlog per queue,
the worker's and server's CPU beside them, and the reading that tells the two limits apart."""

from __future__ import annotations

from typing import Any

import pandas as pd
from helpers import summarize

from capacity.analysis.temporal import temporal_summary
from capacity.report.render import render_html, render_markdown
from capacity.runfolder.histograms import encode_histogram, new_histogram


def hist_of(values_ms: list[float]) -> str:
    hist = new_histogram()
    for v in values_ms:
        hist.record_value(int(v * 1000))
    return encode_histogram(hist)


def temporal_field(wait_ms: list[float], backlog: int | None) -> dict[str, Any]:
    queue: dict[str, Any] = {"samples": 2, "reported": 0, "backlog_max": 0, "backlog_sum": 0}
    if backlog is not None:
        queue.update(reported=2, backlog_max=backlog, backlog_sum=backlog, age_max_s=1.5)
    return {
        "worker_service": "workflow",
        "schedule_to_start": {"InvoicePosting": {"count": len(wait_ms), "hist": hist_of(wait_ms)}},
        "task_queues": {"vextrus-erp": queue},
    }


def start_op(p95_ms: float) -> dict[str, Any]:
    return {"workflow start InvoicePosting": {"count": 500, "p50_ms": p95_ms / 2, "p95_ms": p95_ms}}


RESOURCES = {
    "workflow": {"cpu_cores_mean": 0.93, "cpu_cores_max": 1.0},
    "temporal": {"cpu_cores_mean": 0.4, "cpu_cores_max": 0.6},
}


def test_tasks_waiting_with_fast_starts_reads_as_too_few_workers() -> None:
    slices = [{"temporal": temporal_field([300.0] * 40 + [900.0] * 10, 120)}]
    t = temporal_summary(slices, start_op(12.0), RESOURCES)
    assert t is not None
    row = t["workflow_types"]["InvoicePosting"]
    assert row["schedule_to_start_samples"] == 50 and row["starts"] == 500
    assert 899 <= row["schedule_to_start_p95_ms"] <= 901 and row["start_p95_ms"] == 12.0
    assert t["task_queues"]["vextrus-erp"] == {
        "reported": True, "samples": 2, "backlog_max": 120, "backlog_mean": 60.0,
        "backlog_age_max_s": 1.5,
    }  # fmt: skip
    assert (t["worker_cpu_cores_mean"], t["temporal_cpu_cores_mean"]) == (0.93, 0.4)
    assert t["reading"].startswith("Workflow tasks wait for a worker")
    assert "workers are too few" in t["reading"] and "workflow at 0.93 cores" in t["reading"]


def test_slow_starts_with_prompt_tasks_reads_as_a_slow_server() -> None:
    t = temporal_summary([{"temporal": temporal_field([5.0] * 50, 0)}], start_op(400.0), RESOURCES)
    assert t is not None and "the Temporal server is the limit" in t["reading"]
    # Starts at 60 ms are a busy server, not a saturated one.
    t = temporal_summary([{"temporal": temporal_field([5.0] * 50, 0)}], start_op(60.0), RESOURCES)
    assert t is not None and t["reading"].startswith("Neither")


def test_thin_data_is_not_read_as_saturation() -> None:
    t = temporal_summary([{"temporal": temporal_field([900.0] * 39, 50)}], start_op(5.0), {})
    assert t is not None and t["reading"].startswith("Too few samples to read saturation")
    few_starts = {"workflow start InvoicePosting": {"count": 10, "p95_ms": 5.0}}
    t = temporal_summary([{"temporal": temporal_field([900.0] * 50, 50)}], few_starts, {})
    assert t is not None and t["reading"].startswith("Too few samples")


def test_neither_and_no_samples_and_an_unreported_backlog() -> None:
    t = temporal_summary([{"temporal": temporal_field([5.0] * 50, None)}], start_op(8.0), {})
    assert t is not None and t["reading"].startswith("Neither the workers nor the server")
    assert t["task_queues"]["vextrus-erp"]["reported"] is False
    assert t["worker_cpu_cores_mean"] is None
    empty = temporal_summary([{"temporal": temporal_field([], None)}], start_op(8.0), {})
    assert empty is not None and empty["reading"].startswith("No schedule-to-start samples")
    assert temporal_summary([{"ops": {}}], start_op(8.0), {}) is None


def test_summary_and_reports_carry_the_section_only_when_measured() -> None:
    base = {"schema": 1, "t_start_s": 100.0, "t_end_s": 102.0, "worker": "w", "users": 1}
    start = {"count": 3, "failures": 0, "partial": 0, "hist": hist_of([4.0, 5.0, 6.0])}
    ops = {"workflow start InvoicePosting": {**start, "errors": {}}}
    meta = {"run_id": "r", "status": "complete", "warmup_s": 0.0, "load_started_at": 100.0}
    plain = summarize(
        [{**base, "ops": ops}], None, run_meta=meta, operation_slos=(), service_slos=()
    )
    assert "temporal" not in plain
    assert "Temporal saturation" not in render_markdown(plain)
    measured = [{**base, "ops": ops, "temporal": temporal_field([300.0] * 50, 40)}]
    frame = pd.DataFrame(
        [{"ts_unix_s": 101.0, "source": "process", "target": "workflow", "cpu_cores": 0.9,
          "mem_mb": 100.0}]
    )  # fmt: skip
    summary = summarize(measured, frame, run_meta=meta, operation_slos=(), service_slos=())
    assert summary["temporal"]["worker_cpu_cores_mean"] == 0.9
    markdown = render_markdown(summary)
    assert "## Temporal saturation (steady state)" in markdown
    assert "| InvoicePosting | 3 |" in markdown
    # 3 starts are too few to read anything from, whatever the waits say.
    assert "Too few samples to read saturation" in markdown
    html = render_html(summary, {})
    assert 'id="temporal"' in html and "not reported by the server" not in html
