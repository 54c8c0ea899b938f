"""run.json: what a run was asked to do and how it went, written by whoever runs the load.

`capacity run` and a plain `locust -f` run write the same metadata (`run_metadata`): the
scenario's SLOs, load, stages, warm-up and slice length, its targets (credentials removed),
the schema source, and the core counts of the load generator and of the system under test.
Analysis reads only this file and the data files, so a report is made the same on any machine,
with or without the scenario file.

Schema 2 (this module writes it); schema 1 folders still load: their `slos` are converted
and their missing fields read as unknown.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capacity.errors import ConfigError
from capacity.runfolder.files import iso_utc, read_json, write_json
from capacity.slos import SloSpec, specs_from_json, specs_to_json

if TYPE_CHECKING:
    from capacity.scenario import Scenario

RUN_SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
RUN_JSON = "run.json"
STATUSES = ("running", "complete", "partial")


def run_metadata(scenario: Scenario) -> dict[str, Any]:
    """Everything about a scenario a report needs, as run.json fields (no secrets)."""
    from capacity.scenario import think_time_s

    load = scenario.load
    try:
        digest = hashlib.sha256(Path(scenario.path).read_bytes()).hexdigest()
    except OSError:
        digest = None
    return {
        "scenario": scenario.name,
        "scenario_path": str(Path(scenario.path).absolute()),
        "scenario_sha256": digest,
        "warmup_s": load.warmup_s,
        "slice_s": load.slice_s,
        "load": {
            "users": load.peak_users,
            "spawn_rate": load.spawn_rate,
            "duration_s": load.total_duration_s,
            "stages": [
                {"users": s.users, "duration_s": s.duration_s, "spawn_rate": s.spawn_rate}
                for s in load.stages
            ],
            "arrival": [
                {"rate_per_s": a.rate_per_s, "duration_s": a.duration_s, "ramp": a.ramp}
                for a in load.arrival
            ],
            "max_users": load.max_users,
            "think_time_s": think_time_s(scenario.users),
            "time_scale": scenario.time_scale,
        },
        "slos": specs_to_json(scenario.slos),
        "targets": scenario.targets.public_urls(),
        "schema_source": scenario.targets.schema_source_label(),
        "host_cores": os.cpu_count(),
        "load_generator_cores": os.cpu_count(),
    }


def update_run_json(run_dir: Path, **fields: Any) -> dict[str, Any]:
    path = Path(run_dir) / RUN_JSON
    data = read_json(path) if path.exists() else {"schema": RUN_SCHEMA}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    data.update(fields)
    write_json(path, data)
    return data


def start_run_json(run_dir: Path, scenario: Scenario, **extra: Any) -> dict[str, Any]:
    """Write the run.json of a new run: identity, scenario metadata, status `running`."""
    return update_run_json(
        run_dir,
        schema=RUN_SCHEMA,
        run_id=Path(run_dir).name,
        started_at=iso_utc(time.time()),
        status="running",
        **run_metadata(scenario),
        **extra,
    )


def _float(data: Mapping[str, Any], key: str, where: str, default: float | None) -> float | None:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: key '{key}': expected a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class LoadMeta:
    users: int | None = None
    duration_s: float | None = None
    stages: tuple[Mapping[str, Any], ...] = ()
    stage_count: int = 0
    arrival: tuple[Mapping[str, Any], ...] = ()
    think_time_s: float | None = None


@dataclass(frozen=True)
class RunMeta:
    """run.json, read and checked: the fields analysis uses, typed; `raw` keeps the rest."""

    path: Path
    schema: int
    run_id: str
    scenario: str
    status: str
    started_at: str | None
    load_started_at: float | None
    warmup_s: float
    slice_s: float
    load: LoadMeta
    slos: tuple[SloSpec, ...]
    host_cores: float | None
    lost_workers: tuple[str, ...]
    stopped_by_signal: str | None
    problems: tuple[tuple[str, str], ...]  # (text, scope): see capacity.analysis.validity
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    @classmethod
    def parse(cls, data: Any, path: Path) -> RunMeta:
        where = str(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
        schema = data.get("schema")
        if schema not in READABLE_SCHEMAS:
            raise ConfigError(f"{where}: key 'schema': expected 1 or 2, got {schema!r}")
        status = data.get("status", "running")
        if status not in STATUSES:
            raise ConfigError(f"{where}: key 'status': expected one of {STATUSES}, got {status!r}")
        raw_load = data.get("load") or {}
        if not isinstance(raw_load, dict):
            raise ConfigError(f"{where}: key 'load': expected an object")
        stages = raw_load.get("stages") or ()
        stage_list = tuple(stages) if isinstance(stages, list) else ()
        stage_count = len(stage_list) if isinstance(stages, list) else int(stages or 0)
        load = LoadMeta(
            users=raw_load.get("users"),
            duration_s=_float(raw_load, "duration_s", where + " load", None),
            stages=stage_list,
            stage_count=stage_count,
            arrival=tuple(raw_load.get("arrival") or ()),
            think_time_s=_float(raw_load, "think_time_s", where + " load", None),
        )
        lost = data.get("lost_workers") or ()
        problems = data.get("problems") or ()
        if not isinstance(lost, list | tuple) or not isinstance(problems, list | tuple):
            raise ConfigError(f"{where}: keys 'lost_workers' and 'problems' must be lists")
        return cls(
            path=path,
            schema=int(schema),
            run_id=str(data.get("run_id") or path.parent.name),
            scenario=str(data.get("scenario") or ""),
            status=status,
            started_at=data.get("started_at"),
            load_started_at=_float(data, "load_started_at", where, None),
            warmup_s=_float(data, "warmup_s", where, 0.0) or 0.0,
            slice_s=_float(data, "slice_s", where, 2.0) or 2.0,
            load=load,
            slos=specs_from_json(data.get("slos"), where),
            host_cores=_float(data, "host_cores", where, None),
            lost_workers=tuple(str(w) for w in lost),
            stopped_by_signal=data.get("stopped_by_signal"),
            problems=tuple(_problem(p) for p in problems),
            raw=data,
        )


def _problem(entry: Any) -> tuple[str, str]:
    if isinstance(entry, dict):
        scope = entry.get("scope", "none")
        return str(entry.get("text", "")), scope if scope in ("none", "latency", "all") else "none"
    return str(entry), "none"


def read_meta(run_dir: Path) -> RunMeta:
    path = Path(run_dir) / RUN_JSON
    return RunMeta.parse(read_json(path), path)


def add_problems(run_dir: Path, problems: Sequence[str], scope: str = "none") -> None:
    """Record things that went wrong during the run; each makes the verdict inconclusive.

    `scope` is what the problem keeps from being judged as broken: `none`, `latency` or `all`
    (see `capacity.analysis.validity.Reason`).
    """
    if not problems:
        return
    path = Path(run_dir) / RUN_JSON
    data = read_json(path) if path.exists() else {"schema": RUN_SCHEMA}
    raw = data.get("problems") if isinstance(data, dict) else None
    known: list[Any] = list(raw) if isinstance(raw, list) else []
    texts = {_problem(p)[0] for p in known}
    known += [{"text": p, "scope": scope} for p in problems if p not in texts]
    update_run_json(run_dir, problems=known)
