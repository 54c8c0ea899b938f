"""The run folder: the one contract between measuring and analysing.

`reports/<run-id>/` holds `run.json` (`meta`), `slices.jsonl` (`slices`, with the histogram
codec in `histograms`), `resources.csv` (`resources`) and `summary.json` (`summary`), plus
the reports. Every module that writes or reads one of these goes through this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from capacity.errors import ConfigError
from capacity.runfolder.files import (
    check_reports_root,
    create_run_dir,
    describe_os_error,
    iso_utc,
    new_run_id,
    read_json,
    worker_id,
    write_json,
    write_text_atomic,
)
from capacity.runfolder.meta import (
    RUN_JSON,
    RUN_SCHEMA,
    RunMeta,
    add_problems,
    read_meta,
    run_metadata,
    start_run_json,
    update_run_json,
)
from capacity.runfolder.slices import SLICES, SliceReader, SliceTail, SliceWriter, iter_slices
from capacity.runfolder.summary import SUMMARY, SUMMARY_SCHEMA, read_summary, write_summary

RESOURCES = "resources.csv"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
LOCUST_LOG = "locust.log"

__all__ = [
    "LOCUST_LOG",
    "REPORT_HTML",
    "REPORT_MD",
    "RESOURCES",
    "RUN_JSON",
    "RUN_SCHEMA",
    "SLICES",
    "SUMMARY",
    "SUMMARY_SCHEMA",
    "RunFolder",
    "RunMeta",
    "SliceReader",
    "SliceTail",
    "SliceWriter",
    "add_problems",
    "check_reports_root",
    "create_run_dir",
    "describe_os_error",
    "iso_utc",
    "iter_slices",
    "new_run_id",
    "read_json",
    "read_meta",
    "read_summary",
    "run_metadata",
    "start_run_json",
    "update_run_json",
    "worker_id",
    "write_json",
    "write_summary",
    "write_text_atomic",
]


@dataclass(frozen=True)
class RunFolder:
    """A run folder on disk and its checked run.json."""

    path: Path
    meta: RunMeta

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"{path}: run folder not found")
        if not (path / RUN_JSON).exists():
            raise ConfigError(f"{path}: not a run folder (no {RUN_JSON})")
        return cls(path, read_meta(path))
