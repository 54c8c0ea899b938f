"""The gate's reference runs taken from the results store instead of a baseline file.

`capacity check RUN... --history DB --last N` compares the runs with the N most recent
recorded runs of the same scenario and the same environment fingerprint, turned into the same
`capacity.gate.Reference` a baseline file gives (one value per run, through
`capacity.baseline.reference_from_runs`), so the decision rule and its measured error rates
are today's gate's. Runs judged inconclusive or partial are never a reference: their figures
are not trusted. Without a baseline file the SLO ceilings are the scenario's own (from the
first run's run.json).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capacity import runfolder
from capacity.analysis.gate import Reference, RunMetrics
from capacity.baseline import reference_from_runs, run_metrics_from_summary
from capacity.errors import ConfigError
from capacity.history import fingerprint
from capacity.history.store import HistoryStore, StoredRun, fingerprint_sha256
from capacity.slos import SloSpec

REFERENCE_VERDICTS = ("pass", "fail")


@dataclass(frozen=True)
class HistoryReference:
    """The reference and how it was chosen."""

    reference: Reference
    fingerprint_sha256: str
    notes: tuple[str, ...]


def current_fingerprint(
    store: HistoryStore, run_dirs: Sequence[Path]
) -> tuple[str, dict[str, Any]]:
    """The fingerprint shared by the runs being checked: as recorded, else made from here.

    Runs with different fingerprints cannot share one reference: that is bad input.
    """
    stored = {run.run_id: run for run in store.runs()}
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for run_dir in run_dirs:
        summary = runfolder.read_summary(Path(run_dir))
        run_id = str(summary.get("run_id"))
        if run_id in stored:
            fp = dict(stored[run_id].fingerprint)
        else:
            fp = fingerprint.collect(run_dir, summary, this_machine=True)
        seen[run_id] = (fingerprint_sha256(fp), fp)
    hashes = {sha for sha, _ in seen.values()}
    if len(hashes) > 1:
        (first_id, (_, first)), *rest = seen.items()
        other_id, (_, other) = next((i, v) for i, v in rest if v[0] != seen[first_id][0])
        raise ConfigError(
            f"runs {first_id} and {other_id} were measured in different environments ("
            + "; ".join(fingerprint.changes(first, other))
            + "): check them separately"
        )
    return next(iter(seen.values()))


def choose_reference_runs(
    candidates: Sequence[StoredRun], fingerprint_sha: str, exclude: set[str], last: int
) -> list[StoredRun]:
    """The `last` most recent trusted runs with this fingerprint (oldest first)."""
    usable = [
        run
        for run in candidates
        if run.fingerprint_sha256 == fingerprint_sha
        and run.run_id not in exclude
        and run.status == "complete"
        and run.verdict in REFERENCE_VERDICTS
    ]
    return usable[-last:] if last > 0 else []


def _why_none(
    store: HistoryStore, scenario: str, candidates: Sequence[StoredRun], fp: Mapping[str, Any]
) -> str:
    if not candidates:
        return f"history store {store.name}: no recorded runs of scenario '{scenario}'"
    other = [run for run in candidates if fingerprint.changes(run.fingerprint, fp)]
    if other:
        latest = other[-1]
        return (
            f"history store {store.name}: no trusted reference run of scenario '{scenario}' "
            f"with this environment; {len(other)} run(s) differ, the latest ({latest.run_id}) "
            "in " + "; ".join(fingerprint.changes(latest.fingerprint, fp))
        )
    return (
        f"history store {store.name}: no trusted reference run of scenario '{scenario}' with "
        "this environment (inconclusive, partial or the runs being checked)"
    )


def history_reference(
    store: HistoryStore, runs: Sequence[RunMetrics], run_dirs: Sequence[Path], last: int
) -> HistoryReference:
    """The reference for `runs` (all of one scenario) from the store's matching runs."""
    scenario = runs[0].scenario
    sha, fp = current_fingerprint(store, run_dirs)
    candidates = store.runs(scenario)
    chosen = choose_reference_runs(candidates, sha, {run.run_id for run in runs}, last)
    if not chosen:
        raise ConfigError(_why_none(store, scenario, candidates, fp))
    metrics = []
    for run in chosen:
        summary = store.summary(run.run_id)
        metrics.append(run_metrics_from_summary(summary, f"{store.name} run {run.run_id}"))
    notes = [
        f"reference: the {len(chosen)} most recent trusted run(s) of '{scenario}' with the same "
        f"environment fingerprint in {store.name} ({chosen[0].run_id} .. {chosen[-1].run_id})"
    ]
    skipped = [
        run.run_id
        for run in candidates
        if run.fingerprint_sha256 == sha and run.verdict not in REFERENCE_VERDICTS
    ]
    if skipped:
        notes.append(f"{len(skipped)} inconclusive run(s) with this fingerprint not used")
    return HistoryReference(reference_from_runs(metrics), sha, tuple(notes))


def scenario_ceilings(run_dir: Path) -> tuple[SloSpec, ...]:
    """The scenario's SLOs (as recorded in run.json) as the gate's absolute ceilings."""
    return runfolder.read_meta(Path(run_dir)).slos
