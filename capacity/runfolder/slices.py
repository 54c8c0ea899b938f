"""slices.jsonl: one line per closed slice, appended and flushed as the run goes.

A line (schema 1) is `{"schema": 1, "t_start_s", "t_end_s", "worker", "users", "ops": {name:
{"count", "failures", "partial", "hist", "errors", ...}}, ...}` (docs/ARCHITECTURE.md).
The writer flushes every line, so a run killed with SIGKILL keeps all but its last slice; the
reader skips a truncated or corrupt line and counts it, so a report can say what was lost
instead of failing, or passing, on it. `SliceTail` reads only what was appended since its
last call, so a progress line costs the same at hour 24 as at minute 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from capacity.errors import RunFolderError
from capacity.runfolder.files import describe_os_error

SLICE_SCHEMA = 1
SLICES = "slices.jsonl"


class SliceWriter:
    """Appends slice records to `slices.jsonl`, one line each, flushed at once.

    A failed write (disk full) is kept in `error` and raised as RunFolderError, once; later
    records are dropped, because a run folder with a hole in it must not look complete.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / SLICES
        self.error: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[str] | None = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise RunFolderError(f"{self.path}: cannot write: {describe_os_error(exc)}") from None

    def __call__(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        try:
            self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._fh.flush()
        except OSError as exc:
            self.error = f"{self.path}: cannot write: {describe_os_error(exc)}"
            self.close()
            raise RunFolderError(self.error) from None

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError as exc:
                self.error = self.error or f"{self.path}: cannot write: {describe_os_error(exc)}"
            self._fh = None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def valid_record(record: Any) -> bool:
    """A slice record of the known schema whose fields have the types analysis relies on."""
    if not isinstance(record, dict) or record.get("schema") != SLICE_SCHEMA:
        return False
    if not (_number(record.get("t_start_s")) and _number(record.get("t_end_s"))):
        return False
    if record["t_end_s"] < record["t_start_s"] or not _number(record.get("users", 0)):
        return False
    ops = record.get("ops")
    if type(ops) is not dict:
        return False
    for op in ops.values():
        if type(op) is not dict:
            return False
        count, failures, partial = op.get("count", 0), op.get("failures", 0), op.get("partial", 0)
        if type(count) is not int or type(failures) is not int or type(partial) is not int:
            return False
        if count < 0 or failures < 0 or partial < 0:
            return False
        if type(op.get("hist", "")) is not str or type(op.get("errors", {})) is not dict:
            return False
    return True


class SliceReader:
    """Iterates a run folder's slice records; `skipped` counts lines it could not use.

    A line cut short at the end of the file (a writer killed mid-line) counts in `truncated`,
    not `skipped`: it is the expected trace of a killed run, already reported as partial.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / SLICES
        self.skipped = 0
        self.truncated = 0
        self.read = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.skipped = self.truncated = self.read = 0
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise RunFolderError(f"{self.path}: cannot read: {describe_os_error(exc)}") from None
        with fh:
            for raw in fh:
                if not raw.strip():
                    continue
                record = _parse(raw)
                if record is None:
                    if not raw.endswith(b"\n"):
                        self.truncated += 1
                    else:
                        self.skipped += 1
                    continue
                self.read += 1
                yield record


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return record if valid_record(record) else None


def iter_slices(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Yield a run folder's valid slice records (see SliceReader for what is skipped)."""
    return iter(SliceReader(run_dir))


class SliceTail:
    """Reads the records appended to slices.jsonl since the previous call, at constant cost."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / SLICES
        self._offset = 0
        self._partial = b""

    def read_new(self, on_record: Callable[[dict[str, Any]], None]) -> int:
        """Call `on_record` for each complete new record; returns how many there were."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return 0
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        count = 0
        for line in lines:
            record = _parse(line) if line.strip() else None
            if record is not None:
                on_record(record)
                count += 1
        return count
