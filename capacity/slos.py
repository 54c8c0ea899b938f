"""SLOs: what a limit is, which one applies to a target, and how a value is judged against it.

The one definition used by scenarios, run folders, the run summary, the sweep and the gate.

A limit is `(kind, pattern, metric, limit)`: kind `operation` (a recorded operation such as
`graphql GetInvoice`), `service` (a resource target such as `rules-engine`) or `span` (a
server-side span group from traces); `pattern` is an fnmatch pattern over target names.

Precedence: for each target and metric, the most specific matching pattern wins: an exact
name over any wildcard, then the longer literal prefix (`graphql Get*` over `graphql *`), then
more literal characters. Two equally specific patterns: the stricter limit applies, so an
ambiguity can never loosen a check. So `[slos.operations."graphql GetInvoice"] error_rate =
0.2` loosens `"graphql *"`'s error rate for that one operation and leaves its P95 limit alone.

Judging: a value at or under its limit passes; a value over fails; a value backed by too few
samples (`MIN_SAMPLES`) or missing is `None`, which makes a verdict inconclusive, never a pass.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

SloKind = Literal["operation", "service", "span"]
KINDS: tuple[SloKind, ...] = ("operation", "service", "span")
OPERATION_METRICS = ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "error_rate")
SERVICE_METRICS = ("cpu_cores_mean", "cpu_cores_max", "mem_mb_mean", "mem_mb_max")
SPAN_METRICS = ("p50_ms", "p95_ms", "p99_ms")
METRICS: Mapping[str, tuple[str, ...]] = {
    "operation": OPERATION_METRICS,
    "service": SERVICE_METRICS,
    "span": SPAN_METRICS,
}
# Names older scenario files used for service limits: mean cores and peak memory.
SERVICE_METRIC_ALIASES = {"cpu_cores": "cpu_cores_mean", "mem_mb": "mem_mb_max"}

# Fewest samples for a figure to be judged: at least two samples beyond a percentile, enough
# requests that a 1% error-rate limit is not decided by one failure, and a few resource
# samples (the first sample of a target has no CPU value).
MIN_SAMPLES: Mapping[str, int] = {
    "p50_ms": 5,
    "p95_ms": 40,
    "p99_ms": 200,
    "p999_ms": 2000,
    "max_ms": 1,
    "error_rate": 50,
    "cpu_cores_mean": 3,
    "cpu_cores_max": 3,
    "mem_mb_mean": 3,
    "mem_mb_max": 3,
}
_WILDCARD = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class SloSpec:
    """One limit: every target of `kind` matching `pattern` keeps `metric` <= `limit`."""

    kind: SloKind
    pattern: str
    metric: str
    limit: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown SLO kind {self.kind!r}")
        if self.metric not in METRICS[self.kind]:
            raise ValueError(f"unknown {self.kind} SLO metric {self.metric!r}")
        if not isinstance(self.limit, int | float) or not math.isfinite(self.limit):
            raise ValueError(f"SLO limit must be a finite number, got {self.limit!r}")
        if self.limit < 0:
            raise ValueError(f"SLO limit must be >= 0, got {self.limit!r}")

    def matches(self, target: str) -> bool:
        return fnmatch.fnmatchcase(target, self.pattern)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def specificity(pattern: str) -> tuple[int, int, int]:
    """Sort key: exact names first, then the longer literal prefix, then more literal text."""
    wildcard = _WILDCARD.search(pattern)
    if wildcard is None:
        return (1, len(pattern), len(pattern))
    literal = len(_WILDCARD.sub("", re.sub(r"\[[^\]]*\]", "", pattern)))
    return (0, wildcard.start(), literal)


def applicable(specs: Iterable[SloSpec], kind: str, target: str) -> dict[str, SloSpec]:
    """The limit that applies to `target` for each metric (see module docstring)."""
    chosen: dict[str, SloSpec] = {}
    for spec in specs:
        if spec.kind != kind or not spec.matches(target):
            continue
        current = chosen.get(spec.metric)
        if current is None:
            chosen[spec.metric] = spec
            continue
        mine, theirs = specificity(spec.pattern), specificity(current.pattern)
        if mine > theirs or (mine == theirs and spec.limit < current.limit):
            chosen[spec.metric] = spec
    return chosen


def enough_samples(metric: str, count: int | None) -> bool:
    return count is not None and count >= MIN_SAMPLES.get(metric, 1)


def judge(metric: str, value: float | None, limit: float, count: int | None) -> bool | None:
    """True (held), False (broken) or None (no value, or too few samples to say)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if not enough_samples(metric, count):
        return None
    return bool(value <= limit)


def slo_row(
    spec: SloSpec, target: str, value: float | None, count: int | None, **extra: Any
) -> dict[str, Any]:
    """One checked limit as it appears in summary.json's `slos`."""
    return {
        "kind": spec.kind,
        "target": target,
        "metric": spec.metric,
        "limit": spec.limit,
        "value": value,
        "passed": judge(spec.metric, value, spec.limit, count),
        "pattern": spec.pattern,
        "samples": count,
        **extra,
    }


def check_run(
    specs: Sequence[SloSpec],
    operations: Mapping[str, Mapping[str, Any]],
    resources: Mapping[str, Mapping[str, Any]],
    spans: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per (target, metric) that a limit applies to, for one run's summary.

    Open-model runs judge latency on the `*_intended_ms` figures (`"basis": "intended"`). A
    service pattern that matches no sampled target gets a row with metric `samples` and
    `passed` None: a limit nobody measured is never a pass.
    """
    rows: list[dict[str, Any]] = []
    for name, op in operations.items():
        for metric, spec in sorted(applicable(specs, "operation", name).items()):
            intended = (
                op.get(metric.replace("_ms", "_intended_ms")) if metric != "error_rate" else None
            )
            extra = {"basis": "intended"} if intended is not None else {}
            value = intended if intended is not None else op.get(metric)
            rows.append(slo_row(spec, name, value, op.get("count"), **extra))
    service_specs = [s for s in specs if s.kind == "service"]
    for name, res in resources.items():
        for metric, spec in sorted(applicable(service_specs, "service", name).items()):
            rows.append(slo_row(spec, name, res.get(metric), res.get("samples")))
    for pattern in sorted({s.pattern for s in service_specs}):
        if not any(fnmatch.fnmatchcase(name, pattern) for name in resources):
            rows.append(
                {
                    "kind": "service",
                    "target": pattern,
                    "metric": "samples",
                    "limit": 1,
                    "value": 0,
                    "passed": None,
                    "pattern": pattern,
                    "samples": 0,
                }
            )
    for name, span in (spans or {}).items():
        for metric, spec in sorted(applicable(specs, "span", name).items()):
            rows.append(slo_row(spec, name, span.get(metric), span.get("count")))
    return rows


def specs_to_json(specs: Iterable[SloSpec]) -> list[dict[str, Any]]:
    return [s.to_json() for s in specs]


def specs_from_json(data: Any, where: str) -> tuple[SloSpec, ...]:
    """SLO specs from run.json: a list of specs, or the older `{"operations": [...],
    "services": [...]}` form with one entry per pattern and metrics as keys."""
    from capacity.errors import ConfigError

    try:
        if isinstance(data, list):
            return tuple(
                SloSpec(d["kind"], d["pattern"], d["metric"], float(d["limit"])) for d in data
            )
        if isinstance(data, dict):
            out: list[SloSpec] = []
            for kind, section in (("operation", "operations"), ("service", "services")):
                for entry in data.get(section) or ():
                    for key, limit in entry.items():
                        if key == "pattern" or limit is None:
                            continue
                        metric = SERVICE_METRIC_ALIASES.get(key, key) if kind == "service" else key
                        out.append(SloSpec(kind, entry["pattern"], metric, float(limit)))  # type: ignore[arg-type]
            return tuple(out)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: key 'slos': not a list of SLO limits ({exc})") from None
    if data is None:
        return ()
    raise ConfigError(f"{where}: key 'slos': expected a list of SLO limits")


def verdict(rows: Sequence[Mapping[str, Any]], reasons: Sequence[str]) -> str:
    """fail if any limit broke; else inconclusive if any reason or unjudged limit; else pass."""
    if any(r.get("passed") is False for r in rows):
        return "fail"
    if reasons or any(r.get("passed") is None for r in rows):
        return "inconclusive"
    return "pass"
