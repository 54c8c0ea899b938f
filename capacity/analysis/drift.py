"""Pure: what makes a run-to-run comparison trustworthy on a real, noisy CI machine.

The gate's rule (Mann-Whitney on per-run values, a minimum effect) assumes independent runs
from one stationary system. Real runs drift: a machine's other work changes under them,
stateful services accumulate state, one day's runs differ from the next's. This module holds
the checks that keep such drift from reading as a regression:

- pairs: runs interleaved A B A B (`capacity run --repeat N --interleave`) are compared pair
  by pair (Wilcoxon signed-rank on log ratios), so drift that hits both sides alike cancels;
- trends: a metric moving monotonically across one side's own runs (Kendall's tau) makes the
  comparison inconclusive, naming the trend;
- contention: a run whose machine was saturated, or two sides whose machine load differed
  widely, cannot show a regression;
- noise: each metric's minimum effect comes from its measured run-to-run spread when that is
  wider than the default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

NOISE_FACTOR = 2.5  # a shift must exceed this many robust standard deviations of the runs
MIN_RUNS_FOR_SPREAD = 4
MIN_RUNS_FOR_TREND = 5
MAX_HOST_LOAD_GAP = 0.25  # share of the machine's cores


@dataclass(frozen=True)
class RunContext:
    """Where and when a run ran, as far as the gate cares."""

    run_id: str
    order_s: float | None = None  # start time (Unix seconds)
    pair: str | None = None  # "<repeat group>#<index>" for interleaved runs
    side: str | None = None  # "A" (the scenario) or "B" (the --interleave one)
    host_busy: float | None = None  # the machine's CPU use over the run, share of its cores
    contended: bool = False  # the machine's CPU was saturated for part of the run

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def paired(
    reference: Sequence[RunContext], current: Sequence[RunContext]
) -> list[tuple[int, int]] | None:
    """Index pairs (reference, current) when every run of both sides has a partner of the same
    interleaved pair; None when the sides were not interleaved."""
    ref_by_pair = {c.pair: i for i, c in enumerate(reference) if c.pair}
    pairs = [(ref_by_pair[c.pair], j) for j, c in enumerate(current) if c.pair in ref_by_pair]
    if len(pairs) != len(current) or len(pairs) != len(reference) or len(pairs) < 2:
        return None
    return pairs


def paired_p_greater(base: np.ndarray, cur: np.ndarray) -> float:
    """One-sided p that current exceeds its paired reference (Wilcoxon signed-rank, exact)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.log(np.where(base > 0, cur / base, np.nan))
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios) < 2 or not np.any(ratios):
        return 1.0
    result = stats.wilcoxon(ratios, alternative="greater", zero_method="zsplit")
    return float(result.pvalue)


def min_paired_p(n_pairs: int) -> float:
    """The smallest one-sided p an exact signed-rank test on `n_pairs` can reach."""
    return 0.5**n_pairs


def robust_spread(values: Sequence[float]) -> float | None:
    """Relative run-to-run spread: 1.4826 x MAD / median (a standard deviation for normal
    noise, robust to one odd run); None with too few runs or a zero median."""
    if len(values) < MIN_RUNS_FOR_SPREAD:
        return None
    arr = np.asarray(values, dtype=float)
    median = float(np.median(arr))
    if median <= 0:
        return None
    return 1.4826 * float(np.median(np.abs(arr - median))) / median


def min_effect_for(values: Sequence[float], default: float) -> tuple[float, str]:
    """The minimum relative effect for a metric, and where it came from (for the report)."""
    spread = robust_spread(values)
    if spread is None or NOISE_FACTOR * spread <= default:
        source = "default" if spread is None else f"default (reference spread {spread:.1%})"
        return default, source
    return NOISE_FACTOR * spread, f"{NOISE_FACTOR:g} x the reference runs' spread {spread:.1%}"


def trend(values: Sequence[float], order: Sequence[float | None], alpha: float) -> str | None:
    """A monotonic trend across one side's runs (Kendall's tau against run order), in words;
    None when there is none at `alpha`, or too few runs to tell."""
    if len(values) < MIN_RUNS_FOR_TREND:
        return None
    known = [o for o in order if o is not None]
    if len(known) < len(order) or len(set(known)) < len(known):
        return None  # the runs' order is not known
    ranked = [v for _, v in sorted(zip(known, values, strict=True), key=lambda kv: kv[0])]
    tau, p = stats.kendalltau(np.arange(len(ranked)), ranked)
    if not math.isfinite(p) or p > alpha:
        return None
    first, last = ranked[0], ranked[-1]
    change = (last - first) / first if first else math.inf
    direction = "rose" if tau > 0 else "fell"
    return (
        f"{direction} steadily over the runs ({change:+.0%} first to last, tau {tau:.2f}, "
        f"p={p:.3g})"
    )


def contention(reference: Sequence[RunContext], current: Sequence[RunContext]) -> str | None:
    """Why the machine's load makes the two sides incomparable, or None."""
    crowded = [c.run_id for c in (*reference, *current) if c.contended]
    if crowded:
        return f"the machine's CPU was saturated during run(s) {', '.join(crowded[:3])}"
    ref = [c.host_busy for c in reference if c.host_busy is not None]
    cur = [c.host_busy for c in current if c.host_busy is not None]
    if ref and cur:
        a, b = float(np.median(ref)), float(np.median(cur))
        if abs(a - b) > MAX_HOST_LOAD_GAP:
            return f"the machine's load differed: {a:.0%} of its cores vs {b:.0%}"
    return None
