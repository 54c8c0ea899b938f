"""Run folder files on disk: unique folders, atomic JSON and text writes, safe reads.

Every file a reader trusts (summary.json, reports, run.json, baselines, stack state) is written
to a temporary file, flushed to disk and renamed over the old one, so a reader never sees half
a file, even when the disk fills or the writer is killed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from capacity.errors import ConfigError, RunFolderError


def iso_utc(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(scenario: str, now_s: float | None = None) -> str:
    stamp = datetime.fromtimestamp(now_s or time.time(), tz=UTC).strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", scenario).strip("-") or "run"
    return f"{stamp}-{safe}"


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def describe_os_error(exc: OSError) -> str:
    """A few words for an OS error ("No space left on device"), never a traceback."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    return exc.strerror or type(exc).__name__


def check_reports_root(root: Path) -> Path:
    """The reports folder, absolute, if it is (or can become) a folder; checked before a run
    starts anything, so a typo costs one line, not a stack start and a preflight."""
    root = Path(root).absolute()
    for parent in (root, *root.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{root}: cannot hold run folders: {parent} is a file")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{root}: cannot hold run folders: {parent} is not writable")
            break
    return root


def create_run_dir(root: Path, scenario: str) -> Path:
    """Make a new, unique run folder under `root` (absolute)."""
    root = Path(root).absolute()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: reports folder is a file, not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{root}: cannot create reports folder: {describe_os_error(exc)}"
        ) from None
    base = new_run_id(scenario)
    for n in range(1000):
        path = root / (base if n == 0 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot create run folder: {describe_os_error(exc)}"
            ) from None
    raise ConfigError(f"{root}: could not create a unique run folder")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename; the old file stays intact
    on any error, which is raised as RunFolderError naming the file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise RunFolderError(f"{path}: cannot write: {describe_os_error(exc)}") from None


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + fsync + rename)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    """Parse a JSON file; any problem is one ConfigError line naming the file."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {describe_os_error(exc)}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from None
