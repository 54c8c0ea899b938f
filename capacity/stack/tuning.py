"""Tuning knobs of the embedded stand-ins: the dataclass, its validation, latency sampling.

Pure (no I/O, randomness comes in as a `random.Random`) so the contract in
docs/ARCHITECTURE.md can be unit-tested without a server. The same validation serves the
`--tune SERVICE.KNOB=VALUE` command-line flag (strings) and `POST /admin/tuning` (JSON).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from capacity.errors import ConfigError

HTTP_SERVICES = ("gateway", "master-data", "rules-engine", "workflow")
LATENCY_DISTS = ("none", "fixed", "uniform", "lognormal", "exponential")
COMMON_KNOBS = (
    "latency_dist",
    "latency_ms",
    "latency_sigma",
    "cpu_ms",
    "concurrency",
    "slowdown",
    "error_rate",
)
SERVICE_KNOBS: dict[str, tuple[str, ...]] = {
    "gateway": ("graphql_error_rate",),
    "master-data": ("db_delay_dist", "db_delay_ms", "db_delay_sigma"),
    "rules-engine": ("wrong_outcome_rate",),
    "workflow": ("workflow_failure_rate", "worker_task_slots", "worker_task_delay_ms"),
}
RATE_KNOBS = frozenset(
    {"error_rate", "graphql_error_rate", "wrong_outcome_rate", "workflow_failure_rate"}
)


class TuningError(ConfigError):
    """A knob that does not exist for the service, or a value of the wrong type or range."""

    def __init__(self, knob: str, message: str) -> None:
        super().__init__(message)
        self.knob = knob


@dataclass(frozen=True)
class Tuning:
    """Knob values of one stand-in; rates are fractions in [0, 1]."""

    latency_dist: str = "none"
    latency_ms: float = 0.0
    latency_sigma: float = 0.5
    cpu_ms: float = 0.0
    concurrency: int = 0
    slowdown: float = 1.0
    error_rate: float = 0.0
    graphql_error_rate: float = 0.0
    wrong_outcome_rate: float = 0.0
    workflow_failure_rate: float = 0.0
    db_delay_dist: str = "none"
    db_delay_ms: float = 0.0
    db_delay_sigma: float = 0.5
    worker_task_slots: int = 0  # workflow task slots of the Temporal worker (0: the SDK's 100)
    worker_task_delay_ms: float = 0.0  # the worker waits this long before taking each task

    def as_dict(self, service: str) -> dict[str, object]:
        """The knobs that apply to `service`, as JSON-able values."""
        return {name: getattr(self, name) for name in knob_names(service)}


# Small, realistic defaults: the whole stack and Locust share two cores, so CPU stays low.
DEFAULT_TUNING: dict[str, Tuning] = {
    "gateway": Tuning(),
    "master-data": Tuning(latency_dist="lognormal", latency_ms=2.0, latency_sigma=0.4),
    "rules-engine": Tuning(cpu_ms=0.5),
    "workflow": Tuning(latency_dist="lognormal", latency_ms=1.0, latency_sigma=0.3),
}


def knob_names(service: str) -> tuple[str, ...]:
    """Knobs accepted by `service` (the common ones plus its own)."""
    if service not in SERVICE_KNOBS:
        raise TuningError("", f"unknown service '{service}' (known: {', '.join(HTTP_SERVICES)})")
    return COMMON_KNOBS + SERVICE_KNOBS[service]


def _field_types() -> dict[str, type]:
    return {f.name: type(f.default) for f in dataclasses.fields(Tuning)}


_TYPES = _field_types()


def _coerce(knob: str, value: object, service: str) -> object:
    """Check one JSON value against the knob's type and range; ints are accepted as floats."""
    kind = _TYPES[knob]
    where = f"{service}.{knob}"
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TuningError(knob, f"{where} must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise TuningError(knob, f"{where} must be a finite number >= 0, got {value!r}")
        if knob in RATE_KNOBS and number > 1:
            raise TuningError(knob, f"{where} is a fraction and must be in [0, 1], got {value!r}")
        if knob == "slowdown" and number <= 0:
            raise TuningError(knob, f"{where} must be > 0, got {value!r}")
        return number
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TuningError(knob, f"{where} must be an integer >= 0, got {value!r}")
        if knob == "worker_task_slots" and value == 1:
            # A poller holds its slot while it waits: one slot waiting on the (empty) sticky
            # queue would leave new workflows' tasks unserved, not slow.
            raise TuningError(knob, f"{where} must be 0 (the SDK's default) or >= 2, got 1")
        return value
    if not isinstance(value, str) or value not in LATENCY_DISTS:
        raise TuningError(knob, f"{where} must be one of {', '.join(LATENCY_DISTS)}, got {value!r}")
    return value


def apply_updates(current: Tuning, updates: Mapping[str, object], service: str) -> Tuning:
    """Return `current` with `updates` applied; all-or-nothing, the first bad knob is named."""
    allowed = knob_names(service)
    if not isinstance(updates, Mapping):
        raise TuningError("", f"{service} tuning must be a JSON object of knobs")
    checked: dict[str, object] = {}
    for knob, value in updates.items():
        if knob not in allowed:
            raise TuningError(
                str(knob), f"unknown knob '{knob}' for {service} (known: {', '.join(allowed)})"
            )
        checked[knob] = _coerce(knob, value, service)
    return dataclasses.replace(current, **checked)  # type: ignore[arg-type]


def parse_value(knob: str, text: str) -> object:
    """Turn a command-line string into the knob's JSON type (validation happens later)."""
    kind = _TYPES.get(knob)
    try:
        if kind is float:
            return float(text)
        if kind is int:
            return int(text)
    except ValueError:
        return text  # left as a string so validation names the knob and the bad value
    return text


def parse_tune_args(items: list[str]) -> dict[str, dict[str, object]]:
    """Parse repeated `SERVICE.KNOB=VALUE` flags into {service: {knob: value}}, validated."""
    tuning: dict[str, dict[str, object]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        service, dot, knob = key.strip().rpartition(".")
        if not sep or not dot or not service or not knob:
            raise ConfigError(f"--tune '{item}' must look like SERVICE.KNOB=VALUE")
        tuning.setdefault(service, {})[knob] = parse_value(knob, text.strip())
    validate_tuning(tuning)
    return tuning


def validate_tuning(tuning: Mapping[str, Mapping[str, object]]) -> dict[str, Tuning]:
    """Validate {service: {knob: value}} and return the resulting Tuning per HTTP service."""
    result = dict(DEFAULT_TUNING)
    for service, updates in tuning.items():
        if service not in SERVICE_KNOBS:
            raise TuningError(
                "", f"unknown service '{service}' in tuning (known: {', '.join(HTTP_SERVICES)})"
            )
        result[service] = apply_updates(result[service], updates, service)
    return result


def sample_latency_ms(tuning: Tuning, rng: random.Random) -> float:
    """One latency draw in ms, slowdown applied; `latency_ms` is the median of each distribution.

    Median rather than mean so "lognormal 2 ms" and "exponential 2 ms" put half of the requests
    below 2 ms, which is what people read off a percentile chart.
    """
    return sample_ms(tuning.latency_dist, tuning.latency_ms, tuning.latency_sigma, rng) * (
        tuning.slowdown
    )


def sample_db_delay_ms(tuning: Tuning, rng: random.Random) -> float:
    """One draw of master-data's injected database delay in ms (per SQL statement).

    The same distributions as `latency_dist`, `db_delay_ms` their median; `slowdown` does not
    apply (it slows the service, this slows its database).
    """
    return sample_ms(tuning.db_delay_dist, tuning.db_delay_ms, tuning.db_delay_sigma, rng)


def sample_ms(dist: str, median_ms: float, sigma: float, rng: random.Random) -> float:
    """One draw in ms of distribution `dist` with median `median_ms` (lognormal shape `sigma`)."""
    if dist == "none" or median_ms <= 0:
        return 0.0
    if dist == "fixed":
        value_ms = median_ms
    elif dist == "uniform":
        value_ms = rng.uniform(0.0, 2.0 * median_ms)
    elif dist == "lognormal":
        value_ms = rng.lognormvariate(math.log(median_ms), sigma)
    elif dist == "exponential":
        value_ms = rng.expovariate(math.log(2.0) / median_ms)
    else:
        raise TuningError("latency_dist", f"unknown distribution {dist!r}")
    return value_ms


def cpu_budget_ms(tuning: Tuning) -> float:
    """CPU to burn per request in ms, slowdown applied."""
    return tuning.cpu_ms * tuning.slowdown


def burn_cpu(cpu_ms: float) -> None:
    """Spin on this thread until it has used `cpu_ms` of CPU time (not wall time).

    Thread CPU time keeps the cost real under contention: a request that waits for a core
    still burns its full budget, so load produces a genuine saturation curve.
    """
    if cpu_ms <= 0:
        return
    end_s = time.thread_time() + cpu_ms / 1000.0
    acc = 0
    while time.thread_time() < end_s:
        for i in range(200):
            acc += i * i


def apply_tuning(state: Any, tuning: Mapping[str, Mapping[str, Any]]) -> None:
    """Set knobs on a running stack through each stand-in's `/admin/tuning` endpoint."""
    import json
    import urllib.error
    import urllib.request

    from capacity.errors import StackError

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for service, knobs in tuning.items():
        info = state.services.get(service)
        if info is None or not info.url.startswith("http"):
            raise StackError(f"stack.tuning.{service}: no tunable service of that name")
        base = info.url.split("/graphql")[0].rstrip("/")
        req = urllib.request.Request(
            f"{base}/admin/tuning",
            data=json.dumps(dict(knobs)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with opener.open(req, timeout=5):
                pass
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise StackError(f"stack.tuning.{service}: rejected: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise StackError(f"stack.tuning.{service}: not reachable: {exc}") from None
