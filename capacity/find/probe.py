"""One probe of `capacity find`: the scenario at one arrival rate, run for real, then judged.

The probe's scenario is the user's file with its `[load]` replaced by one `[[load.arrival]]`
stage (and its relative file paths made absolute), written as TOML into the find folder:
the Locust child process reads the scenario from its path. The run goes through
`capacity.runner.run_scenario` like any `capacity run`, into its own run folder.

A probe passes on the run's verdict. It fails when a limit was broken and nothing but the
system's own slowness stands in the way of trusting that: dropped arrivals beside broken
latency limits are the system's (its slow answers kept the whole user pool waiting), so such
a run, which the analysis calls inconclusive, is a failure of that rate here. A run whose
figures are the load generator's or the machine's fault (saturated, lost worker, stopped
early, other work on the host) is invalid, and so is one that dropped arrivals while its
limits held (the rate was not sent, so it was not tested).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capacity.errors import ConfigError
from capacity.find.search import FAIL, INVALID, PASS, ProbeOutcome

# Reasons that come with failed SLOs because the system was slow, not because the run broke.
_SYSTEM_REASONS = (
    re.compile(r"^arrival rate not met"),
    re.compile(r"too few samples|no value for"),
)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# A failed probe is invalid when the host's CPU was this busy and at least this many cores of
# it went to processes other than the services and the load generator.
FOREIGN_SATURATED = 0.9
FOREIGN_MIN_CORES = 0.25


@dataclass(frozen=True)
class Probe:
    """A probe as run: its outcome for the search plus what the report shows."""

    index: int
    outcome: ProbeOutcome
    run_dir: str
    scenario_path: str
    wall_s: float
    verdict: str
    p95_ms: float | None
    p99_ms: float | None
    error_rate: float | None
    slo_failures: tuple[str, ...]
    mem_mb_mean: Mapping[str, float] = field(default_factory=dict)
    duration_s: float | None = None  # the probe's load duration


# --- the probe's scenario --------------------------------------------------------------------


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"cannot write the number {value} into a scenario")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {type(value).__name__} into a scenario")


def dumps_scenario(data: Mapping[str, Any]) -> str:
    """TOML for a decoded scenario: tables, arrays of tables, and inline values inside them."""
    lines: list[str] = []

    def is_table_array(value: Any) -> bool:
        return (
            isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)
        )

    def emit(table: Mapping[str, Any], path: list[str]) -> None:
        plain = [
            (k, v) for k, v in table.items() if not isinstance(v, Mapping) and not is_table_array(v)
        ]
        if path and (plain or not any(isinstance(v, Mapping) for v in table.values())):
            lines.extend(["", "[" + ".".join(_key(p) for p in path) + "]"])
        lines.extend(f"{_key(k)} = {_value(v)}" for k, v in plain)
        for k, v in table.items():
            if isinstance(v, Mapping):
                emit(v, [*path, k])
        for k, v in table.items():
            if is_table_array(v):
                for item in v:
                    lines.extend(["", "[[" + ".".join(_key(p) for p in [*path, k]) + "]]"])
                    lines.extend(f"{_key(ik)} = {_value(iv)}" for ik, iv in item.items())

    emit(data, [])
    return "\n".join(lines).lstrip("\n") + "\n"


def _absolute_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the file paths a scenario names absolute (the probe's file lives elsewhere)."""
    for pool in (raw.get("data") or {}).values():
        if isinstance(pool, dict) and isinstance(pool.get("csv"), str):
            pool["csv"] = str((base / pool["csv"]).resolve())
    users = raw.get("users") or {}
    for op in (users.get("graphql") or {}).get("operations") or []:
        if isinstance(op, dict) and isinstance(op.get("document"), str):
            op["document"] = str((base / op["document"]).resolve())
    for rule_set in (users.get("rules") or {}).get("rule_sets") or []:
        if isinstance(rule_set, dict) and isinstance(rule_set.get("file"), str):
            rule_set["file"] = str((base / rule_set["file"]).resolve())


def probe_scenario(
    source: Path,
    rate_per_s: float,
    duration_s: float,
    warmup_s: float,
    max_users: int | None = None,
) -> str:
    """The TOML of `source` with one constant arrival-rate stage instead of its load."""
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the scenario ({exc})") from None
    old_load = raw.get("load") or {}
    load: dict[str, Any] = {"warmup_s": float(warmup_s)}
    if "slice_s" in old_load:
        load["slice_s"] = old_load["slice_s"]
    pool = max_users if max_users is not None else old_load.get("max_users")
    if pool is not None:
        load["max_users"] = int(pool)
    load["arrival"] = [{"rate_per_s": round(float(rate_per_s), 3), "duration_s": float(duration_s)}]
    raw["load"] = load
    meta = raw.setdefault("scenario", {})
    meta.setdefault("name", source.stem)
    meta["description"] = f"capacity find probe: {rate_per_s:g} arrivals/s from {source}"
    _absolute_paths(raw, source.parent)
    return dumps_scenario(raw)


# --- judging a probe's run -------------------------------------------------------------------


def foreign_load_reason(summary: Mapping[str, Any], host_cores: float | None) -> str | None:
    """Why a failed probe may be the machine's fault: its CPU was saturated, partly by
    processes that are neither the services nor the load generator (other work)."""
    resources = summary.get("resources") or {}
    host = resources.get("host") or {}
    host_cpu = host.get("cpu_cores_mean")
    if not host_cores or host_cpu is None:
        return None
    ours = sum(
        float(row.get("cpu_cores_mean") or 0.0)
        for name, row in resources.items()
        if name != "host" and row.get("source") == "process"
    )
    other = float(host_cpu) - ours
    if host_cpu >= FOREIGN_SATURATED * host_cores and other >= FOREIGN_MIN_CORES:
        return (
            f"the host's CPU was saturated ({host_cpu:.2f} of {host_cores:g} cores), "
            f"{other:.2f} cores of it by other work on this machine: the failure is partly the "
            "machine's"
        )
    return None


def classify(
    summary: Mapping[str, Any], host_cores: float | None = None
) -> tuple[str, tuple[str, ...]]:
    """pass / fail / invalid, and the reasons behind an invalid or failed probe.

    A failure on a machine whose CPU other work kept busy is invalid (`foreign_load_reason`):
    the search would otherwise report the neighbours' load as the system's capacity.
    """
    verdict = summary.get("verdict")
    reasons = tuple(str(r) for r in summary.get("reasons") or ())
    if verdict == "pass":
        return PASS, ()
    broken = [
        row
        for row in summary.get("slos") or []
        if row.get("passed") is False
        or (
            row.get("untrusted")
            and row.get("value") is not None
            and row.get("limit") is not None
            and float(row["value"]) > float(row["limit"])
        )
    ]
    own = tuple(r for r in reasons if not any(p.search(r) for p in _SYSTEM_REASONS))
    if broken:
        foreign = foreign_load_reason(summary, host_cores)
        if foreign:
            own += (foreign,)
    if own:
        return INVALID, own
    if broken:
        return FAIL, reasons
    return INVALID, reasons or ("the run was inconclusive",)


def _slo_max(summary: Mapping[str, Any], metric: str) -> float | None:
    values = [
        float(s["value"])
        for s in summary.get("slos") or []
        if s.get("kind") == "operation" and s.get("metric") == metric and s.get("value") is not None
    ]
    return max(values) if values else None


def _services(summary: Mapping[str, Any], key: str) -> dict[str, float]:
    from capacity.analysis.validity import is_load_generator

    out = {}
    for name, row in (summary.get("resources") or {}).items():
        source = str(row.get("source") or "")
        if name == "host" or source == "host" or is_load_generator(source, name):
            continue
        if row.get(key) is not None:
            out[name] = float(row[key])
    return out


def probe_from_summary(
    index: int,
    rate_per_s: float,
    summary: Mapping[str, Any],
    run_dir: Path,
    scenario_path: Path,
    wall_s: float,
) -> Probe:
    outcome, reasons = classify(summary, float(os.cpu_count() or 1))
    ops = summary.get("operations") or {}
    throughput = sum(float(op.get("rps") or 0.0) for op in ops.values())
    failures = tuple(
        f"{s['target']} {s['metric']} {s['value']} > {s['limit']}"
        for s in summary.get("slos") or []
        if s.get("passed") is False
    )
    return Probe(
        index=index,
        outcome=ProbeOutcome(
            rate_per_s=rate_per_s,
            outcome=outcome,
            throughput_rps=throughput,
            cpu_cores_mean=_services(summary, "cpu_cores_mean"),
            reasons=reasons,
        ),
        run_dir=str(run_dir),
        scenario_path=str(scenario_path),
        wall_s=wall_s,
        verdict=str(summary.get("verdict")),
        p95_ms=_slo_max(summary, "p95_ms"),
        p99_ms=_slo_max(summary, "p99_ms"),
        error_rate=_slo_max(summary, "error_rate"),
        slo_failures=failures,
        mem_mb_mean=_services(summary, "mem_mb_mean"),
    )


def run_probe(
    index: int,
    source: Path,
    rate_per_s: float,
    find_dir: Path,
    *,
    duration_s: float,
    warmup_s: float,
    max_users: int | None,
    state_dir: Path,
    stack: Any,
    say: Callable[[str], None],
) -> Probe:
    """Write the probe's scenario, run it for real (on `stack`, the embedded stack the search
    holds, or None), and judge it."""
    from capacity.runner import RunOptions, run_scenario

    scenarios = find_dir / "scenarios"
    scenarios.mkdir(parents=True, exist_ok=True)
    path = scenarios / f"probe-{index:02d}-{rate_per_s:.1f}-{duration_s:g}s.toml"
    path.write_text(
        probe_scenario(source, rate_per_s, duration_s, warmup_s, max_users), encoding="utf-8"
    )
    started = time.monotonic()
    result = run_scenario(
        RunOptions(
            scenario_path=path,
            reports_root=find_dir / "probes",
            state_dir=state_dir,
        ),
        say,
        stack=stack,
    )
    wall_s = time.monotonic() - started
    probe = probe_from_summary(index, rate_per_s, result.summary, result.run_dir, path, wall_s)
    return dataclasses.replace(probe, duration_s=duration_s)
