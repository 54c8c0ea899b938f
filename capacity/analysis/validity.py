"""Pure run-validity checks: can this run's numbers be trusted at all?

A load generator that saturates its CPU measures its own queueing, not the system under test;
a percentile over a handful of samples is noise; an open-model run that dropped iterations
did not send the load it claims; a run whose load generator died, whose writer failed or
whose stack was shared did not measure what it says. Each check gives a `Reason` (one line)
that makes the verdict `inconclusive`.

A reason's `scope` says what it takes away: `latency` (a saturated generator inflates
latencies, so a latency limit it broke is not judged: the breach may be ours), `all` (a
shared stack or lost data: no limit is judged as broken), or `none` (the figures stand, but
the run is incomplete: the verdict cannot be pass). A limit broken outside a reason's scope
still fails: errors the system returned are real whatever else went wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from capacity.runfolder.meta import RunMeta
from capacity.slos import MIN_SAMPLES

SATURATED_CORE_FRACTION = 0.9
SATURATED_TIME_FRACTION = 0.1
MAX_DROPPED_FRACTION = 0.01
LOAD_GENERATOR_TARGET = re.compile(r"^locust(-master|-worker-\d+)?$")
LATENCY_METRICS = ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms")


@dataclass(frozen=True)
class Reason:
    """Why a run is inconclusive, and which broken limits it keeps from being judged."""

    text: str
    scope: Literal["none", "latency", "all"] = "none"


def is_load_generator(source: str, target: str) -> bool:
    """A resources.csv row about a Locust process (`locust`, `locust-master`, `locust-worker-N`)."""
    return source == "process" and LOAD_GENERATOR_TARGET.match(target) is not None


def saturation_reasons(load_generators: Mapping[str, Mapping[str, Any]]) -> list[Reason]:
    """One reason per Locust process above 90% of a core for more than 10% of the run."""
    reasons = []
    for target, stats in sorted(load_generators.items()):
        fraction = float(stats["saturated_fraction"])
        if fraction > SATURATED_TIME_FRACTION:
            reasons.append(
                Reason(
                    f"load generator {target} was above {SATURATED_CORE_FRACTION:.0%} of a core "
                    f"for {fraction:.0%} of the run (limit {SATURATED_TIME_FRACTION:.0%}): "
                    "latencies include its own queueing; add workers or lower the load",
                    "latency",
                )
            )
    return reasons


def sample_reasons(rows: Iterable[Mapping[str, Any]]) -> list[Reason]:
    """Why SLO checks could not be judged (no value, too few samples, no resource samples)."""
    reasons: list[Reason] = []
    for s in rows:
        if s["passed"] is not None:
            continue
        if s["kind"] == "service" and s["metric"] == "samples":
            text = f"no resource samples for service pattern '{s['target']}'"
        elif s["value"] is None:
            text = f"{s['target']}: no value for {s['metric']}"
        else:
            need = MIN_SAMPLES.get(s["metric"], 1)
            text = f"{s['target']}: too few samples for {s['metric']} (need {need})"
        reasons.append(Reason(text))
    return reasons


def arrival_totals_add(totals: dict[str, int] | None, counts: Any) -> dict[str, int] | None:
    """Add one slice's `arrival` counters (open model) into running totals."""
    if not isinstance(counts, Mapping):
        return totals
    totals = totals or {"scheduled": 0, "started": 0, "late": 0, "dropped": 0}
    for key in totals:
        value = counts.get(key, 0)
        totals[key] += int(value) if isinstance(value, int | float) else 0
    return totals


def arrival_totals_finish(totals: Mapping[str, int] | None) -> dict[str, Any] | None:
    """The summary's `arrival` object; None for a closed-model run."""
    if totals is None:
        return None
    scheduled = totals["scheduled"]
    return {
        **totals,
        "late_fraction": round(totals["late"] / scheduled, 6) if scheduled else None,
        "dropped_fraction": round(totals["dropped"] / scheduled, 6) if scheduled else None,
    }


def arrival_totals(records: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Sum of the slices' `arrival` counters; None when no slice has any (closed model)."""
    totals: dict[str, int] | None = None
    for record in records:
        totals = arrival_totals_add(totals, record.get("arrival"))
    return arrival_totals_finish(totals)


def arrival_reasons(arrival: Mapping[str, Any] | None) -> list[Reason]:
    """An open-model run that dropped more than 1% of its iterations did not send its load."""
    if not arrival:
        return []
    scheduled, dropped = int(arrival["scheduled"]), int(arrival["dropped"])
    if scheduled and dropped / scheduled > MAX_DROPPED_FRACTION:
        return [
            Reason(
                f"arrival rate not met: {dropped} of {scheduled} scheduled iterations dropped "
                f"({dropped / scheduled:.1%} > {MAX_DROPPED_FRACTION:.0%}); raise load.max_users "
                "or check the load generator's CPU",
                "latency",
            )
        ]
    return []


def _describe_exit(code: Any) -> str:
    import signal

    if isinstance(code, int) and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def process_reasons(meta: RunMeta, last_slice_end_s: float | None) -> list[Reason]:
    """What run.json says went wrong: a Locust process or worker that died, a run stopped by a
    signal or shorter than asked, problems recorded during the run, a shared stack."""
    reasons = [Reason(f"load generator worker {w} was lost mid-run") for w in meta.lost_workers]
    code = meta.get("locust_exit_code")
    # Schema 1 runs let Locust exit 1 on any request failure; schema 2 exits 0 after a clean
    # flush, so anything else there means the load generator did not end as planned.
    if meta.schema >= 2 and code not in (None, 0) and not meta.stopped_by_signal:
        reasons.append(
            Reason(
                f"the load generator (Locust) exited with {_describe_exit(code)} before a clean end"
            )
        )
    for name, proc in sorted((meta.get("locust_processes") or {}).items()):
        exit_code = proc.get("exit_code") if isinstance(proc, Mapping) else None
        if name.startswith("locust-worker-") and exit_code not in (None, 0):
            worker = proc.get("worker_id")
            if worker not in meta.lost_workers:
                reasons.append(Reason(f"{name} exited with {_describe_exit(exit_code)}"))
    if meta.stopped_by_signal:
        reasons.append(Reason(f"stopped early by {meta.stopped_by_signal}"))
    for text, scope in meta.problems:
        reasons.append(Reason(text, scope))  # type: ignore[arg-type]
    planned = meta.load.duration_s
    started = meta.load_started_at
    if (
        planned
        and started is not None
        and last_slice_end_s is not None
        and meta.status == "complete"
        and not meta.stopped_by_signal
        and last_slice_end_s - started < planned - max(meta.slice_s, 0.05 * planned)
    ):
        reasons.append(
            Reason(
                f"the run was shorter than planned: load ran {last_slice_end_s - started:.1f} s "
                f"of {planned:.1f} s"
            )
        )
    return reasons


def run_reasons(
    meta: RunMeta,
    operations: Mapping[str, Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    *,
    partial: bool,
    expected_operations: bool = True,
    load_generators: Mapping[str, Mapping[str, Any]] | None = None,
    arrival: Mapping[str, Any] | None = None,
    last_slice_end_s: float | None = None,
) -> list[Reason]:
    """Every reason the run is inconclusive, most fundamental first."""
    reasons: list[Reason] = []
    if partial:
        reasons.append(Reason("the run did not finish (partial run folder)"))
    if expected_operations and not any(op.get("count") for op in operations.values()):
        reasons.append(Reason("no requests were recorded in steady state"))
    reasons += process_reasons(meta, last_slice_end_s)
    reasons += saturation_reasons(load_generators or {})
    reasons += arrival_reasons(arrival)
    reasons += sample_reasons(rows)
    return reasons


def trust_rows(rows: Sequence[dict[str, Any]], reasons: Sequence[Reason]) -> list[dict[str, Any]]:
    """Broken limits inside a reason's scope become unjudged (None), with the reason noted."""
    scopes = {r.scope for r in reasons}
    if not scopes & {"latency", "all"}:
        return list(rows)
    out = []
    for row in rows:
        in_scope = "all" in scopes or row["metric"] in LATENCY_METRICS
        if row["passed"] is False and in_scope:
            row = {**row, "passed": None, "untrusted": True}
        out.append(row)
    return out
