"""summary.json: the analysis result of a run, written atomically, read back with checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capacity.errors import ConfigError
from capacity.runfolder.files import read_json, write_json

SUMMARY = "summary.json"
SUMMARY_SCHEMA = 1


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json(Path(run_dir) / SUMMARY, summary)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run folder's summary.json, checked for its schema and identity keys."""
    run_dir = Path(run_dir)
    path = run_dir / SUMMARY
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a run folder (no such directory)")
    if not path.is_file():
        raise ConfigError(f"{path}: missing (make it with `capacity report {run_dir}`)")
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    if data.get("schema") != SUMMARY_SCHEMA:
        raise ConfigError(
            f"{path}: schema = {data.get('schema')!r} is not supported (expected {SUMMARY_SCHEMA})"
        )
    for key in ("run_id", "scenario"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"{path}: key '{key}' is missing or not a string")
    return data
