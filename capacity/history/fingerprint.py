"""The environment fingerprint of a run: what its figures were measured on.

Two runs are compared (in a history series, or as the gate's reference) only when their
fingerprints are equal; `changes` names every field that differs, so a series break says why.
Fields: the toolkit version, a hash of the scenario (its TOML without `[targets]` addresses,
plus the GraphQL documents, rule sets and data files it names), the load as run (`--time-scale`
changes it), the GraphQL schema's hash, the system under test's revision when given, the load
generator's cores and processes, the host's cores, each service's CPU and memory limits, and
the Temporal server's version.

Some fields describe the machine and toolkit that made the run. run.json (schema 2) records
the core counts; the toolkit and Temporal versions it does not, so an import fills those (and
the cores of older folders) only when told the runs were made here (`this_machine`);
otherwise they are None, "unknown", which differs from any known value.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from capacity import __version__, runfolder

SUT_REVISION_ENV = "CAPACITY_SUT_REVISION"
FIELDS = (
    "toolkit_version",
    "scenario_sha256",
    "load",
    "graphql_schema_sha256",
    "sut_revision",
    "load_generator_cores",
    "load_generator_processes",
    "host_cores",
    "service_limits",
    "temporal_server_version",
)
# Stand-ins of the embedded stack are one Python process each (one core at most); the
# Temporal dev server is a Go program that can use every core: as `capacity.sweep` assumes.
EMBEDDED_CPU_LIMIT_CORES = 1.0
EMBEDDED_SERVICES = ("gateway", "master-data", "workflow", "rules-engine")
_TEMPORAL_SERVER = re.compile(r"Server ([0-9][^,) ]*)")


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        return _sha256_bytes(path.read_bytes())
    except OSError:
        return None


def _referenced_files(raw: Mapping[str, Any]) -> list[str]:
    """Relative paths a scenario names: data pools, GraphQL documents, rule-set files."""
    paths: list[str] = []
    for pool in (raw.get("data") or {}).values():
        if isinstance(pool, Mapping) and isinstance(pool.get("csv"), str):
            paths.append(pool["csv"])
    users = raw.get("users") or {}
    for op in (users.get("graphql") or {}).get("operations") or []:
        if isinstance(op, Mapping) and isinstance(op.get("document"), str):
            paths.append(op["document"])
    for rule_set in (users.get("rules") or {}).get("rule_sets") or []:
        if isinstance(rule_set, Mapping) and isinstance(rule_set.get("file"), str):
            paths.append(rule_set["file"])
    return paths


def scenario_sha256(path: str | os.PathLike[str] | None) -> str | None:
    """Hash of what a scenario asks for, not where it sends it; None if the file is gone.

    `[targets]` is left out but for `embedded_stack` (the same load on other ports is the
    same measurement), and so is the free-text description; each file the scenario names is
    hashed by content.
    """
    if not path:
        return None
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    targets = raw.pop("targets", {}) or {}
    raw["targets"] = {"embedded_stack": targets.get("embedded_stack", True)}
    if isinstance(raw.get("scenario"), dict):
        raw["scenario"].pop("description", None)
    files = {rel: _file_sha256(file.parent / rel) for rel in sorted(set(_referenced_files(raw)))}
    text = json.dumps({"scenario": raw, "files": files}, sort_keys=True, default=str)
    return _sha256_bytes(text.encode())


def _embedded_stack(meta: Mapping[str, Any], scenario_path: Path | None) -> bool:
    if scenario_path is not None:
        try:
            raw = tomllib.loads(scenario_path.read_text(encoding="utf-8"))
            return bool((raw.get("targets") or {}).get("embedded_stack", True))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            pass
    return bool(meta.get("services"))


def _uses_graphql(scenario_path: Path | None) -> bool:
    if scenario_path is None:
        return False
    try:
        raw = tomllib.loads(scenario_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return "graphql" in (raw.get("users") or {})


def embedded_schema_sha256() -> str:
    """Hash of the embedded gateway's schema, printed canonically by graphql-core."""
    from graphql import build_schema, print_schema

    from capacity.stack.gateway_schema import SDL

    return _sha256_bytes(print_schema(build_schema(SDL)).encode())


def temporal_server_version() -> str | None:
    """The Temporal server version of the `temporal` CLI the embedded stack runs."""
    from capacity.errors import CapacityError
    from capacity.stack.supervisor import temporal_binary

    try:
        out = subprocess.run(
            [str(temporal_binary()), "--version"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
    except (CapacityError, OSError, subprocess.SubprocessError):
        return None
    found = _TEMPORAL_SERVER.search(out)
    return found.group(1) if found else None


def _load_generator_processes(meta: Mapping[str, Any]) -> int:
    processes = meta.get("locust_processes") or {}
    workers = [name for name in processes if str(name).startswith("locust-worker-")]
    return len(workers) or 1


def service_limits(
    run_dir: Path, summary: Mapping[str, Any], embedded: bool, host_cores: float | None
) -> dict[str, dict[str, float | None]]:
    """CPU (cores) and memory (MB) limits per service of the system under test.

    Memory: the largest `mem_limit_mb` resources.csv recorded (containers). CPU: the embedded
    stand-ins' one core and Temporal's host cores; a container's CPU quota is not sampled
    (None, unknown).
    """
    from capacity.analysis.validity import is_load_generator

    limits: dict[str, dict[str, float | None]] = {}
    for target, row in (summary.get("resources") or {}).items():
        source = str((row or {}).get("source") or "")
        if target == "host" or source == "host" or is_load_generator(source, target):
            continue
        cpu: float | None = None
        if embedded and source == "process":
            cpu = host_cores if target == "temporal" else EMBEDDED_CPU_LIMIT_CORES
        limits[str(target)] = {"cpu_cores": cpu, "mem_mb": None}
    path = run_dir / runfolder.RESOURCES
    if path.is_file() and limits:
        from capacity.runfolder.resources import read_resources

        try:
            frame = read_resources(path)
        except Exception:  # noqa: BLE001 - a damaged CSV leaves the memory limits unknown
            frame = None
        if frame is not None and not frame.empty and "mem_limit_mb" in frame:
            for target, rows in frame.groupby("target"):
                values = rows["mem_limit_mb"].dropna()
                if str(target) in limits and not values.empty:
                    limits[str(target)]["mem_mb"] = round(float(values.max()), 1)
    return dict(sorted(limits.items()))


def collect(
    run_dir: str | os.PathLike[str],
    summary: Mapping[str, Any],
    *,
    sut_revision: str | None = None,
    this_machine: bool = True,
) -> dict[str, Any]:
    """The fingerprint of the run in `run_dir` (whose summary is `summary`).

    `this_machine`: the run was made here with this toolkit (true for a run just finished),
    so the toolkit version, core counts and Temporal version are read from here.
    """
    folder = Path(run_dir)
    meta_path = folder / runfolder.RUN_JSON
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            loaded = json.loads(meta_path.read_text(encoding="utf-8"))
            meta = loaded if isinstance(loaded, dict) else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            meta = {}
    raw_path = meta.get("scenario_path")
    scenario_path = Path(raw_path) if raw_path and Path(raw_path).is_file() else None
    embedded = _embedded_stack(meta, scenario_path)
    # Run folders of schema 2 say which machine made them; older ones only when made here.
    host_cores = _cores(meta.get("host_cores"), os.cpu_count() if this_machine else None)
    generator_cores = _cores(
        meta.get("load_generator_cores"),
        len(os.sched_getaffinity(0)) if this_machine else None,
    )
    # The schema the run's documents were validated against, hashed by its preflight; asking
    # the gateway again after the run would send it traffic the run never made.
    schema: str | None = meta.get("graphql_schema_sha256")
    if schema is None and _uses_graphql(scenario_path) and this_machine and embedded:
        schema = embedded_schema_sha256()
    revision = sut_revision if sut_revision else os.environ.get(SUT_REVISION_ENV) or None
    load = meta.get("load")
    return {
        "toolkit_version": __version__ if this_machine else None,
        "scenario_sha256": scenario_sha256(scenario_path),
        "load": dict(load) if isinstance(load, Mapping) else None,
        "graphql_schema_sha256": schema,
        "sut_revision": revision,
        "load_generator_cores": generator_cores,
        "load_generator_processes": _load_generator_processes(meta),
        "host_cores": host_cores,
        "service_limits": service_limits(folder, summary, embedded, host_cores),
        "temporal_server_version": (
            temporal_server_version() if embedded and this_machine else None
        ),
    }


def _cores(recorded: Any, here: int | None) -> float | None:
    if isinstance(recorded, int | float) and not isinstance(recorded, bool) and recorded > 0:
        return float(recorded)
    return float(here) if here else None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in sorted(value):
            out.update(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
        return value[:12]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Every field that differs, as 'field: old -> new' (dotted paths for nested fields)."""
    flat_before, flat_after = _flatten(before), _flatten(after)
    out = []
    for key in sorted(set(flat_before) | set(flat_after)):
        old, new = flat_before.get(key), flat_after.get(key)
        if old != new:
            out.append(f"{key}: {_show(old)} -> {_show(new)}")
    return out
