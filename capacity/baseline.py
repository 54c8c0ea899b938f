"""Baseline files (TOML, schema-versioned) and the run summaries they are built from and gate.

A baseline holds absolute SLO ceilings, the gate's decision settings, and optionally the
reference results of N runs of one scenario (one value per run, so the gate can test
run-to-run differences instead of trusting one noisy number). Layout, schema 1:

    schema = 1
    name = "development"
    [gate]                                   # optional, GateConfig field names
    alpha = 0.05
    [slos.operations."graphql *"]            # fnmatch pattern -> metric ceilings
    p95_ms = 500.0
    [slos.services."*"]
    mem_mb_max = 512.0
    [reference]
    scenario = "smoke"
    run_ids = ["20261126-220501-smoke", ...]
    [reference.operations."graphql GetCustomer"]
    p95_ms = [7.9, 8.1, ...]                  # one value per reference run
    [reference.services.gateway]
    cpu_cores_mean = [0.12, ...]

Every problem is a ConfigError naming the file and key, because the CLI turns it into exit 2.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from capacity.analysis.drift import RunContext
from capacity.analysis.gate import (
    DEFAULT_OPERATION_REFERENCE,
    DEFAULT_SERVICE_REFERENCE,
    KINDS,
    OPERATION_REFERENCE_METRICS,
    OPERATION_SLO_METRICS,
    SERVICE_REFERENCE_METRICS,
    SERVICE_SLO_METRICS,
    GateConfig,
    Reference,
    RunMetrics,
    SloSpec,
    metric_value,
)
from capacity.analysis.validity import is_load_generator
from capacity.errors import ConfigError
from capacity.runfolder.files import write_text_atomic
from capacity.runfolder.summary import SUMMARY_SCHEMA, read_summary
from capacity.traces.analysis import gate_targets

BASELINE_SCHEMA = 1
_SECTION = {"operation": "operations", "service": "services"}
_SLO_METRICS = {"operation": OPERATION_SLO_METRICS, "service": SERVICE_SLO_METRICS}
_REFERENCE_METRICS = {
    "operation": OPERATION_REFERENCE_METRICS,
    "service": SERVICE_REFERENCE_METRICS,
}
_SUMMARY_OPERATION_FIELDS = (*OPERATION_SLO_METRICS, "count", "failures")


@dataclass(frozen=True)
class Baseline:
    """A parsed, validated baseline file."""

    name: str
    description: str
    config: GateConfig
    slos: tuple[SloSpec, ...]
    reference: Reference | None
    saved_at: str = ""
    schema: int = BASELINE_SCHEMA


# --- run summaries -------------------------------------------------------------------------


def _number(value: Any, where: str) -> float | None:
    """A finite number or None; anything else is bad input."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number or null, got {value!r}")
    return float(value)


def read_run_metrics(run_dir: Path) -> RunMetrics:
    """Read the metrics the gate needs from RUN_DIR/summary.json (written by `capacity report`)."""
    return run_metrics_from_summary(
        read_summary(Path(run_dir)), str(Path(run_dir) / "summary.json")
    )


def run_metrics_from_summary(data: Any, path: str) -> RunMetrics:
    """The gate's metrics from a decoded summary; `path` names it in error messages.

    Shared by summary.json files and summaries kept in the results store (capacity.history).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    if data.get("schema") != SUMMARY_SCHEMA:
        raise ConfigError(
            f"{path}: schema = {data.get('schema')!r} is not supported (expected {SUMMARY_SCHEMA})"
        )
    for key in ("run_id", "scenario"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"{path}: key '{key}' is missing or not a string")
    tables: dict[str, dict[str, dict[str, float | None]]] = {}
    for section, fields in (
        ("operations", _SUMMARY_OPERATION_FIELDS),
        ("resources", SERVICE_SLO_METRICS),
    ):
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: key '{section}' must be an object")
        table: dict[str, dict[str, float | None]] = {}
        for target, row in raw.items():
            if not isinstance(row, dict):
                raise ConfigError(f"{path}: key '{section}.{target}' must be an object")
            if section == "resources" and (
                row.get("source") == "host"
                or target == "host"
                or is_load_generator(str(row.get("source", "")), target)
            ):
                continue  # the machine or the load generator: not a service of the stack
            table[target] = {
                f: _number(row.get(f), f"{path}: key '{section}.{target}.{f}'") for f in fields
            }
        tables[section] = table
    # server-side span targets (capacity.traces), gated as operations named "span <target>"
    for target, row in gate_targets(data).items():
        tables["operations"].setdefault(
            target,
            {f: _number(row.get(f), f"{path}: key 'traces.targets.{target[5:]}.{f}'")
             for f in _SUMMARY_OPERATION_FIELDS},
        )  # fmt: skip
    return RunMetrics(
        run_id=data["run_id"],
        scenario=data["scenario"],
        operations=tables["operations"],
        services=tables["resources"],
        context=run_context(data),
    )


def run_context(data: Mapping[str, Any]) -> RunContext:
    """When and on what machine load a run ran, from its summary (older summaries: unknown)."""
    order = None
    started = data.get("started_at")
    if isinstance(started, str):
        try:
            order = datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            order = None
    repeat: Mapping[str, Any] = data.get("repeat") or {}
    if not isinstance(repeat, dict):
        repeat = {}
    pair = None
    if repeat.get("side") and repeat.get("group") is not None:
        pair = f"{repeat['group']}#{repeat.get('index')}"
    env: Mapping[str, Any] = data.get("environment") or {}
    if not isinstance(env, dict):
        env = {}
    busy = env.get("host_busy_fraction")
    return RunContext(
        run_id=str(data["run_id"]),
        order_s=order,
        pair=pair,
        side=str(repeat["side"]) if repeat.get("side") else None,
        host_busy=float(busy) if isinstance(busy, int | float) else None,
        contended=bool(env.get("contended")),
    )


def select_side(run_dirs: Sequence[Path], side: str | None) -> list[Path]:
    """The run folders recorded as `side` ("A" or "B") of an interleaved `capacity run
    --repeat N --interleave` (all of them when `side` is None), so a whole reports folder
    can be given to the gate."""
    if side is None:
        return list(run_dirs)
    kept = []
    for run_dir in run_dirs:
        repeat = read_summary(Path(run_dir)).get("repeat")
        if isinstance(repeat, dict) and repeat.get("side") == side:
            kept.append(run_dir)
    if not kept:
        raise ConfigError(
            f"none of the {len(run_dirs)} run folder(s) given was recorded as side {side} of "
            "`capacity run --repeat N --interleave`"
        )
    return kept


def read_runs(run_dirs: Sequence[Path]) -> tuple[RunMetrics, ...]:
    """Read several run folders of one scenario; duplicates and mixed scenarios are errors."""
    if not run_dirs:
        raise ConfigError("no run folders given")
    runs = tuple(read_run_metrics(Path(d)) for d in run_dirs)
    seen: set[str] = set()
    for run_dir, run in zip(run_dirs, runs, strict=True):
        if run.run_id in seen:
            raise ConfigError(f"{run_dir}: run '{run.run_id}' given twice")
        seen.add(run.run_id)
    scenarios = sorted({run.scenario for run in runs})
    if len(scenarios) > 1:
        raise ConfigError(f"runs mix scenarios {', '.join(scenarios)}: compare one at a time")
    return runs


def reference_from_runs(
    runs: Sequence[RunMetrics],
    operation_metrics: Sequence[str] = DEFAULT_OPERATION_REFERENCE,
    service_metrics: Sequence[str] = DEFAULT_SERVICE_REFERENCE,
) -> Reference:
    """Per-run values of every operation and service that all runs have.

    A metric some runs have and others lack is an error rather than silently left out,
    because a metric left out of the reference is a metric never gated.
    """
    problems: list[str] = []
    tables: dict[str, dict[str, dict[str, tuple[float, ...]]]] = {}
    for kind, metrics in zip(KINDS, (operation_metrics, service_metrics), strict=True):
        table: dict[str, dict[str, tuple[float, ...]]] = {}
        names = sorted({name for run in runs for name in run.targets(kind)})
        for name in names:
            row: dict[str, tuple[float, ...]] = {}
            for metric in metrics:
                values = [metric_value(run, kind, name, metric) for run in runs]
                if all(v is None for v in values):
                    continue
                lacking = [r.run_id for r, v in zip(runs, values, strict=True) if v is None]
                if lacking:
                    problems.append(f"{kind} '{name}' {metric} (missing in {', '.join(lacking)})")
                    continue
                row[metric] = tuple(float(v) for v in values if v is not None)
            if row:
                table[name] = row
        tables[kind] = table
    if problems:
        raise ConfigError("runs disagree, cannot record a reference: " + "; ".join(problems))
    contexts = tuple(run.context for run in runs if run.context is not None)
    return Reference(
        scenario=runs[0].scenario,
        run_ids=tuple(run.run_id for run in runs),
        operations=tables["operation"],
        services=tables["service"],
        contexts=contexts if len(contexts) == len(runs) else (),
    )


# --- parsing -------------------------------------------------------------------------------


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: key '{key}' must be a table")
    return value


def _parse_config(raw: Mapping[str, Any], where: str) -> GateConfig:
    fields = {f.name: f for f in dataclasses.fields(GateConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key 'gate.{key}' (known: {', '.join(fields)})")
        want_int = fields[key].type in ("int", int)
        if fields[key].type in ("bool", bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: key 'gate.{key}' must be true or false")
            kwargs[key] = value
            continue
        ok = (
            isinstance(value, int)
            if want_int
            else isinstance(value, int | float) and math.isfinite(value)
        )
        if isinstance(value, bool) or not ok:
            raise ConfigError(f"{where}: key 'gate.{key}' must be a number, got {value!r}")
        kwargs[key] = value
    try:
        return GateConfig(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"{where}: table 'gate': {exc}") from exc


def _parse_slos(raw: Mapping[str, Any], where: str) -> tuple[SloSpec, ...]:
    unknown = set(raw) - set(_SECTION.values())
    if unknown:
        raise ConfigError(f"{where}: unknown key 'slos.{sorted(unknown)[0]}'")
    ceilings: list[SloSpec] = []
    for kind in KINDS:
        section = _SECTION[kind]
        for pattern, metrics in _table(raw, section, where).items():
            key = f"slos.{section}.{json.dumps(pattern)}"
            if not isinstance(metrics, dict) or not metrics:
                raise ConfigError(f"{where}: key '{key}' must be a table of metric ceilings")
            for metric, limit in metrics.items():
                if metric not in _SLO_METRICS[kind]:
                    raise ConfigError(
                        f"{where}: key '{key}.{metric}': unknown metric "
                        f"(known: {', '.join(_SLO_METRICS[kind])})"
                    )
                if (
                    isinstance(limit, bool)
                    or not isinstance(limit, int | float)
                    or not math.isfinite(limit)
                    or limit < 0
                ):
                    raise ConfigError(
                        f"{where}: key '{key}.{metric}' must be a number >= 0, got {limit!r}"
                    )
                ceilings.append(SloSpec(kind, pattern, metric, float(limit)))
    return tuple(ceilings)


def _parse_reference(raw: Mapping[str, Any], where: str) -> Reference:
    scenario, run_ids = raw.get("scenario"), raw.get("run_ids")
    if not isinstance(scenario, str) or not scenario:
        raise ConfigError(f"{where}: key 'reference.scenario' is missing or not a string")
    if not isinstance(run_ids, list) or not run_ids or not all(isinstance(r, str) for r in run_ids):
        raise ConfigError(f"{where}: key 'reference.run_ids' must be a non-empty list of strings")
    unknown = set(raw) - {"scenario", "run_ids", "operations", "services", "runs"}
    if unknown:
        raise ConfigError(f"{where}: unknown key 'reference.{sorted(unknown)[0]}'")
    tables: dict[str, dict[str, dict[str, tuple[float, ...]]]] = {}
    for kind in KINDS:
        section = _SECTION[kind]
        table: dict[str, dict[str, tuple[float, ...]]] = {}
        for target, metrics in _table(raw, section, where).items():
            key = f"reference.{section}.{json.dumps(target)}"
            if not isinstance(metrics, dict) or not metrics:
                raise ConfigError(f"{where}: key '{key}' must be a table of per-run values")
            row: dict[str, tuple[float, ...]] = {}
            for metric, values in metrics.items():
                if metric not in _REFERENCE_METRICS[kind]:
                    raise ConfigError(f"{where}: key '{key}.{metric}': unknown metric")
                if (
                    not isinstance(values, list)
                    or len(values) != len(run_ids)
                    or not all(
                        isinstance(v, int | float)
                        and not isinstance(v, bool)
                        and math.isfinite(v)
                        and v >= 0
                        for v in values
                    )
                ):
                    raise ConfigError(
                        f"{where}: key '{key}.{metric}' must list {len(run_ids)} numbers >= 0 "
                        "(one per reference run)"
                    )
                row[metric] = tuple(float(v) for v in values)
            table[target] = row
        tables[kind] = table
    if not tables["operation"] and not tables["service"]:
        raise ConfigError(f"{where}: table 'reference' records no operations or services")
    return Reference(
        scenario=scenario,
        run_ids=tuple(run_ids),
        operations=tables["operation"],
        services=tables["service"],
        contexts=_parse_contexts(raw.get("runs"), run_ids, where),
    )


def _parse_contexts(raw: Any, run_ids: list[str], where: str) -> tuple[RunContext, ...]:
    """`reference.runs`: per reference run, when it ran and on what machine load (optional:
    baselines saved before it lack it, and their comparisons simply are not paired)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) != len(run_ids):
        raise ConfigError(f"{where}: key 'reference.runs' must list one table per reference run")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or entry.get("run_id") != run_ids[i]:
            raise ConfigError(f"{where}: key 'reference.runs[{i}]' does not match run_ids[{i}]")
        try:
            out.append(
                RunContext(
                    run_id=run_ids[i],
                    order_s=_number(entry.get("order_s"), f"{where}: reference.runs[{i}]"),
                    pair=str(entry["pair"]) if entry.get("pair") is not None else None,
                    host_busy=_number(entry.get("host_busy"), f"{where}: reference.runs[{i}]"),
                    contended=bool(entry.get("contended", False)),
                )
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: key 'reference.runs[{i}]': {exc}") from None
    return tuple(out)


def parse_baseline(data: Mapping[str, Any], where: str) -> Baseline:
    """Validate a decoded baseline document; `where` names it in error messages."""
    schema = data.get("schema")
    if schema is None:
        raise ConfigError(f"{where}: key 'schema' is missing (expected schema = {BASELINE_SCHEMA})")
    if schema != BASELINE_SCHEMA:
        raise ConfigError(
            f"{where}: schema = {schema!r} is not supported (this capacity reads schema "
            f"{BASELINE_SCHEMA})"
        )
    unknown = set(data) - {"schema", "name", "description", "saved_at", "gate", "slos", "reference"}
    if unknown:
        raise ConfigError(f"{where}: unknown key '{sorted(unknown)[0]}'")
    for key in ("name", "description", "saved_at"):
        if not isinstance(data.get(key, ""), str):
            raise ConfigError(f"{where}: key '{key}' must be a string")
    reference = (
        _parse_reference(_table(data, "reference", where), where) if "reference" in data else None
    )
    slos = _parse_slos(_table(data, "slos", where), where)
    config = _parse_config(_table(data, "gate", where), where)
    if not slos and reference is None:
        raise ConfigError(f"{where}: nothing to gate (no [slos.*] ceilings and no [reference])")
    return Baseline(
        name=data.get("name", ""),
        description=data.get("description", ""),
        config=config,
        slos=slos,
        reference=reference,
        saved_at=data.get("saved_at", ""),
    )


def load_baseline(path: Path) -> Baseline:
    """Read and validate a baseline file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: baseline file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read baseline ({exc})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    return parse_baseline(data, str(path))


# --- writing -------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _scalar(value: Any) -> str:
    """TOML for a string, number or list of them; JSON string escapes are valid TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot store non-finite number {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table (inside a list: reference.runs)
        return "{" + ", ".join(f"{_key(k)} = {_scalar(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot store {type(value).__name__} in TOML")


def dumps_toml(data: Mapping[str, Any]) -> str:
    """A minimal TOML writer for nested tables of scalars and lists (all a baseline needs)."""
    lines: list[str] = []

    def emit(table: Mapping[str, Any], path: list[str]) -> None:
        scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
        tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
        if path and (scalars or not tables):
            lines.append("")
            lines.append("[" + ".".join(_key(p) for p in path) + "]")
        lines.extend(f"{_key(k)} = {_scalar(v)}" for k, v in scalars)
        for k, v in tables:
            emit(v, [*path, k])

    emit(data, [])
    return "\n".join(lines).lstrip("\n") + "\n"


def baseline_document(baseline: Baseline) -> dict[str, Any]:
    """The TOML document of a baseline (the inverse of parse_baseline)."""
    doc: dict[str, Any] = {"schema": baseline.schema, "name": baseline.name}
    if baseline.description:
        doc["description"] = baseline.description
    if baseline.saved_at:
        doc["saved_at"] = baseline.saved_at
    defaults = GateConfig()
    gate = {
        f.name: getattr(baseline.config, f.name)
        for f in dataclasses.fields(GateConfig)
        if getattr(baseline.config, f.name) != getattr(defaults, f.name)
    }
    if gate:
        doc["gate"] = gate
    slo: dict[str, dict[str, dict[str, float]]] = {}
    for ceiling in baseline.slos:
        section = slo.setdefault(_SECTION[ceiling.kind], {})
        section.setdefault(ceiling.pattern, {})[ceiling.metric] = ceiling.limit
    if slo:
        doc["slos"] = slo
    if baseline.reference is not None:
        ref = baseline.reference
        reference: dict[str, Any] = {"scenario": ref.scenario, "run_ids": list(ref.run_ids)}
        if ref.contexts:
            reference["runs"] = [c.to_json() for c in ref.contexts]
        for kind in KINDS:
            targets = ref.targets(kind)
            if targets:
                reference[_SECTION[kind]] = {
                    name: {metric: list(values) for metric, values in metrics.items()}
                    for name, metrics in targets.items()
                }
        doc["reference"] = reference
    return doc


def save_baseline(baseline: Baseline, path: Path) -> None:
    """Write a baseline file atomically (a CI job killed mid-write must not leave half a file)."""
    path = Path(path)
    text = dumps_toml(baseline_document(baseline))
    parse_baseline(tomllib.loads(text), str(path))
    if path.parent.exists() and not path.parent.is_dir():
        raise ConfigError(f"{path}: cannot write: {path.parent} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}") from None
    write_text_atomic(path, text)


def new_baseline(
    runs: Sequence[RunMetrics], name: str, template: Baseline | None = None
) -> Baseline:
    """A baseline recording `runs` as reference, keeping the template's SLOs and gate settings."""
    return Baseline(
        name=name,
        description=template.description if template else "",
        config=template.config if template else GateConfig(),
        slos=template.slos if template else (),
        reference=reference_from_runs(runs),
        saved_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
