"""Reading and writing run folders: the one contract between measuring and analysing.

Writers append and flush as data arrives, so a run killed with SIGKILL keeps all but its last
seconds; readers tolerate a truncated last line for the same reason.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from capacity.errors import ConfigError

RUN_SCHEMA = 1
RUN_JSON = "run.json"
SLICES = "slices.jsonl"
RESOURCES = "resources.csv"
SUMMARY = "summary.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
LOCUST_LOG = "locust.log"


def iso_utc(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(scenario: str, now_s: float | None = None) -> str:
    stamp = datetime.fromtimestamp(now_s or time.time(), tz=UTC).strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", scenario).strip("-") or "run"
    return f"{stamp}-{safe}"


def create_run_dir(root: Path, scenario: str) -> Path:
    """Make a new, unique run folder under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    base = new_run_id(scenario)
    for n in range(1000):
        path = root / (base if n == 0 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"{root}: could not create a unique run folder")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename), so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from None


def update_run_json(run_dir: Path, **fields: Any) -> dict[str, Any]:
    path = run_dir / RUN_JSON
    data = read_json(path) if path.exists() else {"schema": RUN_SCHEMA}
    data.update(fields)
    write_json(path, data)
    return data


def start_run_json(run_dir: Path, scenario: Any, **extra: Any) -> dict[str, Any]:
    """Write the run.json of a new run: identity, scenario, status `running`, slice settings."""
    return update_run_json(
        run_dir,
        run_id=run_dir.name,
        scenario=scenario.name,
        scenario_path=str(scenario.path),
        started_at=iso_utc(time.time()),
        status="running",
        warmup_s=scenario.load.warmup_s,
        slice_s=scenario.load.slice_s,
        **extra,
    )


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class SliceWriter:
    """Appends slice records to `slices.jsonl`, one line each, flushed at once."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / SLICES
        self._fh: IO[str] | None = self.path.open("a", encoding="utf-8")

    def __call__(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def iter_slices(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Yield slice records; a truncated or corrupt line (killed writer) is skipped."""
    path = run_dir / SLICES
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("schema") == 1:
                yield record


@dataclass(frozen=True)
class RunFolder:
    """A run folder on disk and its run.json metadata."""

    path: Path
    meta: dict[str, Any]

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        if not path.is_dir():
            raise ConfigError(f"{path}: run folder not found")
        meta_path = path / RUN_JSON
        if not meta_path.exists():
            raise ConfigError(f"{path}: not a run folder (no {RUN_JSON})")
        meta = read_json(meta_path)
        if not isinstance(meta, dict) or meta.get("schema") != RUN_SCHEMA:
            raise ConfigError(
                f"{meta_path}: key 'schema': expected {RUN_SCHEMA}, got {meta.get('schema')!r}"
            )
        return cls(path, meta)
