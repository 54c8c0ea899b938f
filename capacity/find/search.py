"""Pure: where to probe next when searching for the highest rate that meets the SLOs.

Bracket first: from the lowest rate, grow towards the saturation the measurements predict
(the utilization law on each service's CPU per request, as `capacity.sweep` uses it), never
more than `growth` times the last passing rate, until a probe fails. Then bisect the
interval between the highest passing and the lowest failing rate until it is narrower than
`resolution` (relative), and re-probe the lower bound once: one short run near the boundary
can pass by luck, and a rate holds only if every probe at it passed. An invalid probe (a run
whose figures cannot be trusted) stops the search: nothing after it would be trusted either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

PASS, FAIL, INVALID = "pass", "fail", "invalid"
# Aim below the predicted saturation: latency SLOs break before a service is fully busy.
SATURATION_AIM = 0.9


@dataclass(frozen=True)
class ProbeOutcome:
    """One probe's verdict and what it measured (what the search steers by)."""

    rate_per_s: float
    outcome: str
    throughput_rps: float = math.nan
    cpu_cores_mean: Mapping[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchConfig:
    min_rate_per_s: float
    max_rate_per_s: float
    start_rate_per_s: float
    resolution: float = 0.05
    max_probes: int = 10
    growth: float = 4.0
    confirm: bool = True
    cpu_limit_cores: Mapping[str, float] = field(default_factory=dict)
    default_cpu_limit_cores: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.min_rate_per_s <= self.start_rate_per_s <= self.max_rate_per_s:
            raise ValueError(
                "need 0 < min rate <= start rate <= max rate, got "
                f"{self.min_rate_per_s:g}, {self.start_rate_per_s:g}, {self.max_rate_per_s:g}"
            )
        if not 0 < self.resolution < 1:
            raise ValueError(f"resolution must be in (0, 1), got {self.resolution}")
        if self.max_probes < 2:
            raise ValueError(f"max probes must be at least 2, got {self.max_probes}")
        if self.growth <= 1:
            raise ValueError(f"growth must be above 1, got {self.growth}")


@dataclass(frozen=True)
class Decision:
    """The next rate to probe, or why the search is over (`status`: found / inconclusive)."""

    next_rate_per_s: float | None
    status: str | None = None
    reason: str = ""
    lower_rps: float | None = None
    upper_rps: float | None = None


def _rates(probes: Sequence[ProbeOutcome]) -> dict[float, list[str]]:
    out: dict[float, list[str]] = {}
    for p in probes:
        out.setdefault(round(p.rate_per_s, 6), []).append(p.outcome)
    return out


def bracket(probes: Sequence[ProbeOutcome]) -> tuple[float | None, float | None]:
    """(highest rate where every probe passed and below every failing rate, lowest failing)."""
    by_rate = _rates(probes)
    failing = [r for r, outcomes in by_rate.items() if FAIL in outcomes]
    upper = min(failing) if failing else None
    holding = [
        r
        for r, outcomes in by_rate.items()
        if all(o == PASS for o in outcomes) and (upper is None or r < upper)
    ]
    return (max(holding) if holding else None), upper


def saturation_estimate(
    probes: Sequence[ProbeOutcome],
    cpu_limit_cores: Mapping[str, float],
    default_cpu_limit_cores: float = 1.0,
) -> tuple[float, str | None]:
    """Rate at which the first service's CPU reaches its limit, from the passing probes.

    CPU = base + slope x throughput, fitted per service (one probe: all CPU per request, a
    conservative, lower estimate). The utilization law: rate <= (limit - base) / slope.
    """
    usable = [
        p
        for p in probes
        if p.outcome == PASS and math.isfinite(p.throughput_rps) and p.throughput_rps > 0
    ]
    best, service = math.inf, None
    for name in sorted({s for p in usable for s in p.cpu_cores_mean}):
        rows = [
            (p.throughput_rps, p.cpu_cores_mean[name]) for p in usable if name in p.cpu_cores_mean
        ]
        x = np.array([r[0] for r in rows])
        y = np.array([r[1] for r in rows])
        if len(rows) >= 2 and np.ptp(x) > 0.2 * x.max():
            slope, base = np.polyfit(x, y, 1)
            base = max(0.0, float(base))
        else:
            slope, base = float(np.sum(y) / np.sum(x)), 0.0
        limit = cpu_limit_cores.get(name, default_cpu_limit_cores)
        if slope <= 0 or limit <= base:
            continue
        rate = (limit - base) / float(slope)
        if rate < best:
            best, service = rate, name
    return best, service


def decide(probes: Sequence[ProbeOutcome], config: SearchConfig) -> Decision:
    """The next rate, or the end of the search with its answer."""
    if not probes:
        return Decision(config.start_rate_per_s)
    invalid = [p for p in probes if p.outcome == INVALID]
    lower, upper = bracket(probes)
    if invalid:
        last = invalid[-1]
        why = "; ".join(last.reasons) or "the run could not be judged"
        return Decision(
            None,
            "inconclusive",
            f"probe at {last.rate_per_s:g}/s was invalid: {why}",
            lower,
            upper,
        )
    if lower is not None and upper is not None and upper / lower - 1 <= config.resolution:
        probes_at_lower = _rates(probes)[round(lower, 6)]
        if not config.confirm or len(probes_at_lower) >= 2:
            # Done: checked before the probe budget, so the last probe allowed can finish it.
            return Decision(
                None,
                "found",
                f"holds at {lower:g}/s ({len(probes_at_lower)} probe(s)), fails at {upper:g}/s",
                lower,
                upper,
            )
    if len(probes) >= config.max_probes:
        return Decision(
            None,
            "inconclusive",
            f"stopped after {len(probes)} probes (--max-probes) before the interval was "
            f"narrower than {config.resolution:.0%}",
            lower,
            upper,
        )
    if upper is None:  # nothing failed yet: grow
        assert lower is not None
        if lower >= config.max_rate_per_s * (1 - 1e-9):
            return Decision(
                None,
                "inconclusive",
                f"every probe met the SLOs, up to the maximum rate {config.max_rate_per_s:g}/s: "
                "the capacity is at least that (raise --max-rate)",
                lower,
                None,
            )
        sat, _service = saturation_estimate(
            probes, config.cpu_limit_cores, config.default_cpu_limit_cores
        )
        aim = SATURATION_AIM * sat if math.isfinite(sat) else math.inf
        if aim <= lower * 1.05:
            # Already near the predicted saturation: step just past it to find the failure.
            aim = lower * (1 + 2 * config.resolution) if math.isinf(sat) else max(sat, lower * 1.1)
        nxt = min(aim, lower * config.growth, config.max_rate_per_s)
        return Decision(nxt, lower_rps=lower)
    if lower is None:  # the lowest probe failed: go down
        lowest = min(p.rate_per_s for p in probes)
        if lowest <= config.min_rate_per_s * (1 + 1e-9):
            return Decision(
                None,
                "inconclusive",
                f"the SLOs fail already at the minimum rate {config.min_rate_per_s:g}/s",
                None,
                upper,
            )
        return Decision(max(config.min_rate_per_s, lowest / config.growth), upper_rps=upper)
    if upper / lower - 1 > config.resolution:
        return Decision((lower + upper) / 2, lower_rps=lower, upper_rps=upper)
    return Decision(lower, lower_rps=lower, upper_rps=upper)  # confirm the lower bound
