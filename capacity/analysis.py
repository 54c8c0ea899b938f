"""Pure analysis of a run: exact percentiles, resource statistics, SLO checks, the verdict.

Steady-state statistics exclude the warm-up window; percentiles come from merged HDR
histograms, never from averaged percentiles. A percentile backed by too few samples is not
trusted: its SLO check is inconclusive rather than a confident pass or fail. Run validity
(load generator saturation, dropped arrivals, thin samples) lives in `capacity.validity`.

In an open-model run each operation also has `*_intended_ms` percentiles, measured from each
iteration's intended start; its latency SLOs are judged on those (`"basis": "intended"`),
because the latency from the actual send hides the stalls the load generator waited out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from capacity.recorder import decode_histogram, merge_histograms, new_histogram, percentile_ms
from capacity.scenario import OperationSlo, ServiceSlo
from capacity.temporal_stats import temporal_summary
from capacity.validity import (
    MIN_SAMPLES,
    arrival_totals,
    load_generator_cpu,
    run_reasons,
)

SUMMARY_SCHEMA = 1
PERCENTILES = {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "p999_ms": 99.9}
__all__ = ["MIN_SAMPLES", "summarize", "timeline", "check_slos", "verdict"]


@dataclass(frozen=True)
class RunWindow:
    """Where steady state starts and ends, on the slices' clock (Unix seconds)."""

    load_start_s: float
    steady_start_s: float
    end_s: float

    @property
    def steady_duration_s(self) -> float:
        return max(0.0, self.end_s - self.steady_start_s)


def run_window(
    slices: Sequence[Mapping[str, Any]], warmup_s: float, load_start_s: float | None
) -> RunWindow:
    if not slices:
        start = load_start_s or 0.0
        return RunWindow(start, start + warmup_s, start + warmup_s)
    first = min(float(s["t_start_s"]) for s in slices)
    start = load_start_s if load_start_s is not None else first
    end = max(float(s["t_end_s"]) for s in slices)
    return RunWindow(start, start + warmup_s, end)


def run_window_of(slices: Sequence[Mapping[str, Any]], run_meta: Mapping[str, Any]) -> RunWindow:
    """The run's window from its slices and `run.json` (warm-up, load start)."""
    warmup_s = float(run_meta.get("warmup_s", 0.0) or 0.0)
    load_start = run_meta.get("load_started_at")
    return run_window(slices, warmup_s, float(load_start) if load_start else None)


def in_steady_state(record: Mapping[str, Any], window: RunWindow) -> bool:
    """A slice counts once its midpoint is past the warm-up."""
    mid = (float(record["t_start_s"]) + float(record["t_end_s"])) / 2.0
    return mid >= window.steady_start_s


def operation_stats(
    slices: Iterable[Mapping[str, Any]], window: RunWindow
) -> dict[str, dict[str, Any]]:
    """Per-operation counts, rates and exact percentiles over the steady-state window."""
    hists: dict[str, list[Any]] = defaultdict(list)
    intended: dict[str, list[Any]] = defaultdict(list)
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    errors: dict[str, Counter[str]] = defaultdict(Counter)
    for record in slices:
        steady = in_steady_state(record, window)
        for name, op in record.get("ops", {}).items():
            totals[name]["count_all"] += int(op.get("count", 0))
            totals[name]["failures_all"] += int(op.get("failures", 0))
            if not steady:
                continue
            totals[name]["count"] += int(op.get("count", 0))
            totals[name]["failures"] += int(op.get("failures", 0))
            totals[name]["partial"] += int(op.get("partial", 0))
            errors[name].update(op.get("errors", {}))
            if op.get("hist"):
                hists[name].append(decode_histogram(op["hist"]))
            if op.get("hist_intended"):
                intended[name].append(decode_histogram(op["hist_intended"]))
    duration_s = window.steady_duration_s
    stats: dict[str, dict[str, Any]] = {}
    for name in sorted(totals):
        t = totals[name]
        merged = merge_histograms(hists[name]) if hists[name] else new_histogram()
        count = t["count"]
        entry: dict[str, Any] = {
            "count": count,
            "failures": t["failures"],
            "partial": t["partial"],
            "error_rate": (t["failures"] / count) if count else None,
            "rps": round(count / duration_s, 3) if duration_s > 0 else None,
        }
        for key, pct in PERCENTILES.items():
            value = percentile_ms(merged, pct)
            entry[key] = round(value, 3) if value is not None else None
        max_us = merged.get_max_value() if merged.get_total_count() else None
        entry["max_ms"] = round(max_us / 1000.0, 3) if max_us is not None else None
        if intended[name]:
            entry.update(_intended_stats(merge_histograms(intended[name])))
        entry["count_all"] = t["count_all"]
        entry["failures_all"] = t["failures_all"]
        entry["errors"] = dict(errors[name].most_common(5))
        stats[name] = entry
    return stats


def _intended_stats(merged: Any) -> dict[str, Any]:
    """Percentiles of the latency from the intended start (open model), `*_intended_ms`."""
    out: dict[str, Any] = {"count_intended": int(merged.get_total_count())}
    for key, pct in PERCENTILES.items():
        value = percentile_ms(merged, pct)
        out[key.replace("_ms", "_intended_ms")] = round(value, 3) if value is not None else None
    out["max_intended_ms"] = round(merged.get_max_value() / 1000.0, 3)
    return out


def resource_stats(resources: pd.DataFrame | None, window: RunWindow) -> dict[str, dict[str, Any]]:
    """Per-target CPU (cores) and memory (MB) over the steady-state window."""
    if resources is None or resources.empty:
        return {}
    frame = resources[resources["ts_unix_s"] >= window.steady_start_s]
    frame = frame[frame["ts_unix_s"] <= window.end_s + 1.0]
    if frame.empty:
        frame = resources
    out: dict[str, dict[str, Any]] = {}
    for target, rows in frame.groupby("target", sort=True):
        cpu = pd.to_numeric(rows["cpu_cores"], errors="coerce").dropna()
        mem = pd.to_numeric(rows["mem_mb"], errors="coerce").dropna()
        out[str(target)] = {
            "source": str(rows["source"].iloc[0]),
            "cpu_cores_mean": round(float(cpu.mean()), 4) if len(cpu) else None,
            "cpu_cores_max": round(float(cpu.max()), 4) if len(cpu) else None,
            "mem_mb_mean": round(float(mem.mean()), 2) if len(mem) else None,
            "mem_mb_max": round(float(mem.max()), 2) if len(mem) else None,
            "samples": int(len(rows)),
        }
    return out


def _slo_entry(
    kind: str, target: str, metric: str, limit: float, value: Any, passed: Any
) -> dict[str, Any]:
    return {
        "kind": kind,
        "target": target,
        "metric": metric,
        "limit": limit,
        "value": value,
        "passed": passed,
    }


def check_slos(
    operations: Mapping[str, Mapping[str, Any]],
    resources: Mapping[str, Mapping[str, Any]],
    operation_slos: Sequence[OperationSlo],
    service_slos: Sequence[ServiceSlo],
) -> list[dict[str, Any]]:
    """One entry per (target, metric) with limit, value and passed (None: too few samples)."""
    import fnmatch

    results: list[dict[str, Any]] = []
    for name, op in operations.items():
        for slo in operation_slos:
            if not fnmatch.fnmatchcase(name, slo.pattern):
                continue
            for metric, limit in (
                ("p95_ms", slo.p95_ms),
                ("p99_ms", slo.p99_ms),
                ("error_rate", slo.error_rate),
            ):
                if limit is None:
                    continue
                intended_key = metric.replace("_ms", "_intended_ms")
                basis = "intended" if op.get(intended_key) is not None else None
                value = op.get(intended_key) if basis else op.get(metric)
                enough = op.get("count", 0) >= MIN_SAMPLES[metric]
                passed = None if value is None or not enough else bool(value <= limit)
                entry = _slo_entry("operation", name, metric, limit, value, passed)
                if basis:
                    entry["basis"] = basis
                results.append(entry)
    for svc in service_slos:
        matched = [s for s in resources if fnmatch.fnmatchcase(s, svc.pattern)]
        if not matched:
            results.append(_slo_entry("service", svc.pattern, "samples", 1, 0, None))
        for service in matched:
            res = resources[service]
            for metric, key, limit in (
                ("cpu_cores", "cpu_cores_mean", svc.cpu_cores),
                ("mem_mb", "mem_mb_max", svc.mem_mb),
            ):
                if limit is None:
                    continue
                value = res.get(key)
                passed = None if value is None else bool(value <= limit)
                results.append(_slo_entry("service", service, metric, limit, value, passed))
    return results


def verdict(slos: Sequence[Mapping[str, Any]], reasons: Sequence[str]) -> str:
    if any(s["passed"] is False for s in slos):
        return "fail"
    if reasons or any(s["passed"] is None for s in slos):
        return "inconclusive"
    return "pass"


def inconclusive_reasons(
    operations: Mapping[str, Mapping[str, Any]],
    slos: Sequence[Mapping[str, Any]],
    *,
    partial: bool,
    expected_operations: bool = True,
) -> list[str]:
    """Reasons from the run's own data only (see `capacity.validity.run_reasons`)."""
    return run_reasons(operations, slos, partial=partial, expected_operations=expected_operations)


def timeline(slices: Iterable[Mapping[str, Any]], bucket_s: float) -> pd.DataFrame:
    """Per time bucket (all workers merged): users, requests/s, failures/s, p50/p95/p99 in ms."""
    buckets: dict[int, dict[str, Any]] = {}
    for record in slices:
        key = int(float(record["t_end_s"]) // bucket_s)
        b = buckets.setdefault(key, {"hists": [], "count": 0, "failures": 0, "users": Counter()})
        b["users"][record.get("worker", "")] = int(record.get("users", 0))
        for op in record.get("ops", {}).values():
            b["count"] += int(op.get("count", 0))
            b["failures"] += int(op.get("failures", 0))
            if op.get("hist"):
                b["hists"].append(decode_histogram(op["hist"]))
    rows = []
    for key in sorted(buckets):
        b = buckets[key]
        merged = merge_histograms(b["hists"])
        rows.append(
            {
                "t_s": (key + 1) * bucket_s,
                "users": sum(b["users"].values()),
                "rps": b["count"] / bucket_s,
                "failures_per_s": b["failures"] / bucket_s,
                "p50_ms": percentile_ms(merged, 50.0),
                "p95_ms": percentile_ms(merged, 95.0),
                "p99_ms": percentile_ms(merged, 99.0),
            }
        )
    return pd.DataFrame(
        rows, columns=["t_s", "users", "rps", "failures_per_s", "p50_ms", "p95_ms", "p99_ms"]
    )


def summarize(
    slices: Sequence[Mapping[str, Any]],
    resources: pd.DataFrame | None,
    *,
    run_meta: Mapping[str, Any],
    operation_slos: Sequence[OperationSlo],
    service_slos: Sequence[ServiceSlo],
    extra_reasons: Sequence[str] = (),
) -> dict[str, Any]:
    """The `summary.json` document for a run (see README for its fields)."""
    warmup_s = float(run_meta.get("warmup_s", 0.0) or 0.0)
    window = run_window_of(slices, run_meta)
    operations = operation_stats(slices, window)
    res = resource_stats(resources, window)
    slos = check_slos(operations, res, operation_slos, service_slos)
    partial = run_meta.get("status") != "complete"
    load_generators = load_generator_cpu(resources, window.load_start_s, window.end_s)
    arrival = arrival_totals(s for s in slices if in_steady_state(s, window))
    workers = worker_stats(slices, run_meta)
    reasons = (
        run_reasons(
            operations, slos, partial=partial, load_generators=load_generators, arrival=arrival
        )
        + interruption_reasons(run_meta)
        + list(extra_reasons)
    )
    summary = {
        "schema": SUMMARY_SCHEMA,
        "run_id": run_meta.get("run_id"),
        "scenario": run_meta.get("scenario"),
        "started_at": run_meta.get("started_at"),
        "duration_s": round(window.end_s - window.load_start_s, 3) if slices else 0.0,
        "warmup_s": warmup_s,
        "steady_duration_s": round(window.steady_duration_s, 3),
        "status": "complete" if not partial else "partial",
        "verdict": verdict(slos, reasons),
        "reasons": reasons,
        "operations": operations,
        "resources": res,
        "slos": slos,
        "load_generators": load_generators,
        "arrival": arrival,
        "workers": workers,
    }
    # Temporal saturation signals (capacity.temporal_stats), when the run measured any.
    temporal = temporal_summary((s for s in slices if in_steady_state(s, window)), operations, res)
    if temporal is not None:
        summary["temporal"] = temporal
    return summary


def worker_stats(
    slices: Iterable[Mapping[str, Any]], run_meta: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Per load-generating process: requests recorded, last slice end, and whether it was lost."""
    lost = set(run_meta.get("lost_workers") or ())
    out: dict[str, dict[str, Any]] = {}
    for record in slices:
        w = out.setdefault(
            str(record.get("worker", "")), {"requests": 0, "last_slice_end_s": 0.0, "lost": False}
        )
        w["requests"] += sum(int(op.get("count", 0)) for op in record.get("ops", {}).values())
        w["last_slice_end_s"] = max(w["last_slice_end_s"], float(record["t_end_s"]))
    for worker in lost:
        out.setdefault(worker, {"requests": 0, "last_slice_end_s": None, "lost": True})
        out[worker]["lost"] = True
    return out


def interruption_reasons(run_meta: Mapping[str, Any]) -> list[str]:
    """A run stopped by a signal or that lost a worker did not apply the planned load."""
    reasons = [
        f"load generator worker {w} was lost mid-run" for w in run_meta.get("lost_workers") or ()
    ]
    if run_meta.get("stopped_by_signal"):
        reasons.append(f"stopped early by {run_meta['stopped_by_signal']}")
    return reasons
