"""Putting run folders into the results store: one just finished, or many existing ones.

`record_run` is what `capacity run` calls after each completed run; `import_runs` is
`capacity history import`. A run folder's own summary.json is used when it is there and of a
known schema; otherwise the summary is re-made from the slices (`capacity.report.build`),
without writing anything into the folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capacity import runfolder
from capacity.errors import CapacityError
from capacity.history import fingerprint
from capacity.history.store import HistoryStore, open_store

SUMMARY_SCHEMA = 1


def record_run(
    run_dir: str | os.PathLike[str],
    summary: Mapping[str, Any],
    store_url: str | os.PathLike[str] | None = None,
    *,
    sut_revision: str | None = None,
) -> str:
    """Store a run that just completed on this machine; return the store's (redacted) name."""
    fp = fingerprint.collect(run_dir, summary, sut_revision=sut_revision, this_machine=True)
    with open_store(store_url) as store:
        store.record(summary, fp, Path(run_dir).resolve())
        return store.name


@dataclass(frozen=True)
class ImportResult:
    """What happened to one folder given to `capacity history import`."""

    path: Path
    run_id: str | None
    imported: bool
    note: str


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The run's summary: summary.json when usable, else re-made from the run folder."""
    path = run_dir / runfolder.SUMMARY
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if isinstance(data, dict) and data.get("schema") == SUMMARY_SCHEMA and data.get("run_id"):
            return data
    from capacity.report.build import load_run

    return load_run(run_dir).summary


def import_one(
    store: HistoryStore, run_dir: Path, *, this_machine: bool, sut_revision: str | None
) -> ImportResult:
    if not (run_dir / runfolder.RUN_JSON).is_file():
        return ImportResult(run_dir, None, False, f"not a run folder (no {runfolder.RUN_JSON})")
    try:
        meta = runfolder.RunFolder.open(run_dir).meta
        if meta.get("status") != "complete":
            status = meta.get("status") or "unknown"
            return ImportResult(run_dir, meta.get("run_id"), False, f"status '{status}'")
        summary = read_summary(run_dir)
    except CapacityError as exc:
        return ImportResult(run_dir, None, False, str(exc))
    fp = fingerprint.collect(run_dir, summary, sut_revision=sut_revision, this_machine=this_machine)
    store.record(summary, fp, run_dir.resolve())
    return ImportResult(run_dir, str(summary.get("run_id")), True, str(summary.get("verdict")))


def import_runs(
    run_dirs: Iterable[Path],
    store: HistoryStore,
    *,
    this_machine: bool = False,
    sut_revision: str | None = None,
    on_result: Callable[[ImportResult], None] | None = None,
) -> list[ImportResult]:
    """Import every run folder; folders that are not complete runs are skipped with a note."""
    results = []
    for run_dir in run_dirs:
        result = import_one(
            store, Path(run_dir), this_machine=this_machine, sut_revision=sut_revision
        )
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results
