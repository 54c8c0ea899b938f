"""Pure: the Temporal saturation figures of a run, from its slices' `temporal` field.

Read in the summary's one pass over the slices (`TemporalTap.wrap`, as `capacity.traces`'s
`ClientTap`), histograms added as they stream: memory does not grow with the run's length.

Per workflow type, schedule-to-start (how long a started workflow's first task waited for a
worker) beside the start call's own latency; per task queue, the backlog the server reported;
next to them the CPU of the service hosting the workers and of the Temporal server. Read
together they tell "the workers are too few" (tasks wait, starts stay fast) from "the server
is slow" (starts are slow, tasks do not wait): the `reading` sentence says which, or that
neither shows. It is a reading of the figures, not part of the verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from capacity.runfolder.histograms import Counts
from capacity.slos import MIN_SAMPLES

# A P95 above this (and twice the other signal's) is read as saturation: below it, a start
# or a first task that waits tens of ms is what a busy but healthy stack does (a 2-core dev
# server: start P95 17-56 ms at 20 concurrent starters).
QUEUE_WAIT_MS = 100.0
SLOW_START_MS = 100.0
START_PREFIX = "workflow start "
TEMPORAL_SERVICE = "temporal"


class TemporalTap:
    """Adds up the steady-state slices' `temporal` fields as the records stream past."""

    def __init__(self, steady: Callable[[Mapping[str, Any]], bool] | None = None) -> None:
        self.steady = steady  # the summary's steady-state rule; None: every slice counts
        self.seen = False
        self.worker_service: str | None = None
        self.hists: dict[str, Counts] = {}
        self.queues: dict[str, dict[str, Any]] = {}

    def wrap(self, records: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for record in records:
            self.add(record)
            yield record

    def add(self, record: Mapping[str, Any]) -> None:
        field = record.get("temporal")
        if not isinstance(field, Mapping):
            return
        if self.steady is not None and not self.steady(record):
            return
        self.seen = True
        self.worker_service = field.get("worker_service") or self.worker_service
        for name, sample in (field.get("schedule_to_start") or {}).items():
            if isinstance(sample, Mapping) and sample.get("hist"):
                self.hists.setdefault(str(name), Counts()).add_encoded(sample["hist"])
        for queue, stats in (field.get("task_queues") or {}).items():
            if isinstance(stats, Mapping):
                _add_queue(self.queues.setdefault(str(queue), _empty_queue()), stats)

    def summary(
        self,
        operations: Mapping[str, Mapping[str, Any]],
        resources: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, Any] | None:
        """`summary["temporal"]`, or None when no steady slice carries Temporal figures."""
        if not self.seen:
            return None
        types = sorted(set(self.hists) | _started_types(operations))
        out: dict[str, Any] = {
            "workflow_types": {
                name: _type_stats(name, self.hists.get(name), operations) for name in types
            },
            "task_queues": {name: _queue_stats(q) for name, q in sorted(self.queues.items())},
            "worker_service": self.worker_service,
        }
        worker = resources.get(self.worker_service or "") or {}
        server = resources.get(TEMPORAL_SERVICE) or {}
        out["worker_cpu_cores_mean"] = worker.get("cpu_cores_mean")
        out["worker_cpu_cores_max"] = worker.get("cpu_cores_max")
        out["temporal_cpu_cores_mean"] = server.get("cpu_cores_mean")
        out["temporal_cpu_cores_max"] = server.get("cpu_cores_max")
        out["reading"] = reading(out)
        return out


def temporal_summary(
    steady_slices: Iterable[Mapping[str, Any]],
    operations: Mapping[str, Mapping[str, Any]],
    resources: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any] | None:
    """`summary["temporal"]` from steady-state slices already chosen (tests, tools)."""
    tap = TemporalTap()
    for record in steady_slices:
        tap.add(record)
    return tap.summary(operations, resources)


def _started_types(operations: Mapping[str, Any]) -> set[str]:
    return {name[len(START_PREFIX) :] for name in operations if name.startswith(START_PREFIX)}


def _type_stats(name: str, hist: Counts | None, operations: Mapping[str, Any]) -> dict[str, Any]:
    start = operations.get(START_PREFIX + name) or {}
    samples = hist.total if hist is not None else 0
    out: dict[str, Any] = {
        "starts": start.get("count", 0),
        "start_p50_ms": start.get("p50_ms"),
        "start_p95_ms": start.get("p95_ms"),
        "schedule_to_start_samples": samples,
    }
    for key, pct in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0)):
        value = hist.percentile_ms(pct) if hist is not None and samples else None
        out[f"schedule_to_start_{key}_ms"] = round(value, 3) if value is not None else None
    top = hist.max_ms() if hist is not None and samples else None
    out["schedule_to_start_max_ms"] = round(top, 3) if top is not None else None
    return out


def _empty_queue() -> dict[str, Any]:
    return {"samples": 0, "reported": 0, "backlog_max": 0, "backlog_sum": 0, "age_max_s": 0.0}


def _add_queue(acc: dict[str, Any], stats: Mapping[str, Any]) -> None:
    acc["samples"] += int(stats.get("samples", 0))
    reported = int(stats.get("reported", 0))
    if reported:
        acc["reported"] += reported
        acc["backlog_max"] = max(acc["backlog_max"], int(stats.get("backlog_max", 0)))
        acc["backlog_sum"] += int(stats.get("backlog_sum", 0))
        acc["age_max_s"] = max(acc["age_max_s"], float(stats.get("age_max_s", 0.0)))


def _queue_stats(acc: Mapping[str, Any]) -> dict[str, Any]:
    reported = acc["reported"]
    return {
        "reported": reported > 0,
        "samples": acc["samples"],
        "backlog_max": acc["backlog_max"] if reported else None,
        "backlog_mean": round(acc["backlog_sum"] / reported, 2) if reported else None,
        "backlog_age_max_s": round(acc["age_max_s"], 3) if reported else None,
    }


def reading(t: Mapping[str, Any]) -> str:
    """One sentence: the workers are too few, the server is slow, or neither shows."""
    need = MIN_SAMPLES["p95_ms"]
    types = t["workflow_types"].values()
    samples = sum(r["schedule_to_start_samples"] for r in types)
    if not samples:
        return (
            "No schedule-to-start samples: no sampled workflow reached a worker in steady state "
            "(or schedule_to_start_per_s is 0), so the workers' side cannot be read."
        )
    rows = [r for r in types if r["schedule_to_start_samples"] >= need and r["starts"] >= need]
    if not rows:
        return (
            f"Too few samples to read saturation: no workflow type has {need} starts and {need} "
            f"schedule-to-start samples in steady state ({samples} samples in all; a longer run "
            "or a higher schedule_to_start_per_s gives more)."
        )
    wait = max(r["schedule_to_start_p95_ms"] for r in rows)
    start = max(r["start_p95_ms"] or 0.0 for r in rows)
    backlogs = [q["backlog_max"] for q in t["task_queues"].values() if q["reported"]]
    backlog = f", task queue backlog up to {max(backlogs)}" if backlogs else ""
    worker = _cores(t.get("worker_service") or "the worker", t.get("worker_cpu_cores_mean"))
    server = _cores("the Temporal server", t.get("temporal_cpu_cores_mean"))
    figures = f"schedule-to-start P95 {wait:g} ms, start P95 {start:g} ms{backlog}"
    if wait >= QUEUE_WAIT_MS and wait >= 2 * start:
        return (
            f"Workflow tasks wait for a worker ({figures}): the workers are too few or too "
            f"slow for this load, not the server ({worker})."
        )
    if start >= SLOW_START_MS and start >= 2 * wait:
        return (
            f"Starts are slow while tasks reach a worker quickly ({figures}): the Temporal "
            f"server is the limit, not the workers ({server})."
        )
    return f"Neither the workers nor the server shows saturation ({figures})."


def _cores(name: str, cores: Any) -> str:
    return (
        f"{name} at {cores:g} cores" if isinstance(cores, int | float) else f"{name}: no CPU data"
    )
