"""resources.csv: writing rows as they come, reading a possibly-killed file, merging hosts.

The file is appended and flushed every tick so a killed run keeps everything up to its last
complete line; the reader therefore drops a final line without its newline instead of failing.
"""

from __future__ import annotations

import csv
import io
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from capacity.errors import ConfigError

if TYPE_CHECKING:  # pandas is imported when reading, not on the sampling path (startup time)
    import pandas as pd


@dataclass(frozen=True)
class ResourceSample:
    """One target's resource figures at one instant (a row of resources.csv).

    `cpu_cores` is the mean over the interval since this target's previous sample;
    `cpu_throttled_s` is the CFS throttled time within that same interval. None = not available.
    `host` and `container_id` are extra columns that let timelines from several hosts merge.
    """

    ts_unix_s: float
    source: str
    target: str
    cpu_cores: float | None
    mem_mb: float | None
    mem_limit_mb: float | None
    cpu_throttled_s: float | None
    host: str = ""
    container_id: str = ""


COLUMNS = (
    "ts_unix_s",
    "source",
    "target",
    "cpu_cores",
    "mem_mb",
    "mem_limit_mb",
    "cpu_throttled_s",
)
EXTRA_COLUMNS = ("host", "container_id")
ALL_COLUMNS = COLUMNS + EXTRA_COLUMNS
_NUMERIC = ("ts_unix_s", "cpu_cores", "mem_mb", "mem_limit_mb", "cpu_throttled_s")
_TEXT = ("source", "target", "host", "container_id")


def _cell(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def sample_row(sample: ResourceSample, default_host: str = "") -> list[str]:
    """A sample as CSV cells, in ALL_COLUMNS order."""
    return [
        f"{sample.ts_unix_s:.3f}",
        sample.source,
        sample.target,
        _cell(sample.cpu_cores, 4),
        _cell(sample.mem_mb, 3),
        _cell(sample.mem_limit_mb, 3),
        _cell(sample.cpu_throttled_s, 4),
        sample.host or default_host,
        sample.container_id,
    ]


class ResourceWriter:
    """Writes resources.csv: header first, then each batch of rows appended and flushed."""

    def __init__(self, path: Path, host: str | None = None) -> None:
        self.path = Path(path)
        self.host = socket.gethostname() if host is None else host
        self.rows_written = 0
        self.error: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: TextIO = self.path.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write resources file {self.path}: {exc.strerror}") from exc
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(ALL_COLUMNS)
        self._file.flush()

    def write(self, samples: Iterable[ResourceSample]) -> int:
        """Append rows and flush them to the OS; returns how many were written."""
        rows = [sample_row(sample, self.host) for sample in samples]
        if rows:
            self._csv.writerows(rows)
            self._file.flush()
            self.rows_written += len(rows)
        return len(rows)

    def close(self) -> None:
        """Flush and close; a failure (a full disk) is kept in `error`, never raised: what
        reached the file stays readable, and the sampler reports what was lost."""
        if self._file.closed:
            return
        try:
            self._file.flush()
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc.strerror or exc}"
        try:
            self._file.close()
        except OSError as exc:
            self.error = self.error or f"cannot write {self.path}: {exc.strerror or exc}"


def read_resources(path: Path) -> pd.DataFrame:
    """Load resources.csv into a DataFrame; empty cells are NaN, extra columns are kept.

    Tolerates a killed writer: an empty file, a header only, or a last line cut short.
    """
    import pandas as pd

    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read resources file {path}: {exc.strerror}") from exc
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    if not text.strip():
        return _empty_frame()
    frame = pd.read_csv(
        io.StringIO(text),
        # Categories: a day at 1 Hz is ~700,000 rows of a few repeated names.
        dtype={name: "category" for name in _TEXT},
        keep_default_na=False,
        na_values={name: [""] for name in _NUMERIC},
        on_bad_lines="skip",
    )
    missing = [name for name in COLUMNS if name not in frame.columns]
    if missing:
        raise ConfigError(f"resources file {path} lacks column(s): {', '.join(missing)}")
    for name in _NUMERIC:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    frame = frame.dropna(subset=["ts_unix_s"])
    return frame.reset_index(drop=True)


CHUNK_ROWS = 200_000


class _UpTo(io.RawIOBase):
    """A file read only up to `limit` bytes (the end of its last complete line)."""

    def __init__(self, fh: Any, limit: int) -> None:
        self._fh, self._left = fh, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self._left)
        data = self._fh.read(size)
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)


def resource_chunks(path: Path, rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """resources.csv as frames of at most `rows` rows (same columns and types as
    `read_resources`), so a day-long file is never in memory at once."""
    import pandas as pd

    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            fh.seek(max(0, size - 65536))
            tail = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read resources file {path}: {exc.strerror}") from exc
    limit = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
    if limit <= 0:
        return
    with path.open("rb") as raw:
        text = io.TextIOWrapper(
            io.BufferedReader(_UpTo(raw, limit)), encoding="utf-8", errors="replace"
        )
        reader = pd.read_csv(
            text,
            dtype={name: "category" for name in _TEXT},
            keep_default_na=False,
            na_values={name: [""] for name in _NUMERIC},
            on_bad_lines="skip",
            chunksize=rows,
        )
        for chunk in reader:
            missing = [name for name in COLUMNS if name not in chunk.columns]
            if missing:
                raise ConfigError(f"resources file {path} lacks column(s): {', '.join(missing)}")
            for name in _NUMERIC:
                chunk[name] = pd.to_numeric(chunk[name], errors="coerce").astype("float64")
            yield chunk.dropna(subset=["ts_unix_s"])


def _empty_frame() -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame({name: pd.Series(dtype="float64") for name in COLUMNS})
    for name in ("source", "target"):
        frame[name] = frame[name].astype("string")
    return frame


def merge_resource_files(
    paths: Sequence[Path], out: Path, hosts: Sequence[str] | None = None
) -> int:
    """Merge resources.csv files from several hosts into one, sorted by time; returns rows.

    Each row keeps the `host` recorded in its file; `hosts` (one label per path) overrides it,
    and a file without one gets its file stem. When the same (source, target) comes from more
    than one host (every host has a `host` target), its target becomes `target@host` so that
    analysis grouping by target never adds two machines together.
    """
    import pandas as pd

    if hosts is not None and len(hosts) != len(paths):
        raise ConfigError(f"merge: {len(paths)} file(s) but {len(hosts)} host label(s)")
    frames = []
    for index, path in enumerate(paths):
        frame = read_resources(Path(path))
        if hosts is not None:
            frame["host"] = hosts[index]
        elif "host" not in frame.columns:
            frame["host"] = Path(path).stem
        else:
            frame["host"] = frame["host"].fillna("").replace("", Path(path).stem)
        if "container_id" not in frame.columns:
            frame["container_id"] = ""
        frames.append(frame)
    merged = pd.concat(frames, ignore_index=True) if frames else _empty_frame()
    if len(merged):
        hosts_per_target = merged.groupby(["source", "target"])["host"].transform("nunique")
        clash = hosts_per_target > 1
        for name in ("target", "host"):
            merged[name] = merged[name].astype(str)
        merged.loc[clash, "target"] = merged.loc[clash, "target"] + "@" + merged.loc[clash, "host"]
        merged = merged.sort_values("ts_unix_s", kind="stable")
    columns = list(ALL_COLUMNS) + [c for c in merged.columns if c not in ALL_COLUMNS]
    merged = merged.reindex(columns=columns)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    merged.to_csv(out, index=False, float_format="%.4f", lineterminator="\n")
    return len(merged)
