"""Pure statistics of the CI gate: absolute SLO ceilings and run-vs-reference comparisons.

A single run compared with a fixed threshold is a coin toss under run-to-run noise, so the
relative gate works on one value per run (per-run P95, per-run resource mean) and calls a
regression only when two things agree: a one-sided exact Mann-Whitney U test at `alpha` and a
median shift above `min_effect` (and above an absolute floor, so 0.3 ms -> 0.4 ms is not a
"33% regression"). With too few runs for the test to ever reach `alpha` (1 vs anything below
19, 2 vs 2...) the comparison is flagged weak and judged on the median shift alone with the
wider `weak_min_effect`. Every result is a frozen dataclass carrying its verdict and evidence.
No I/O here: `capacity.baseline` reads files, `capacity.gate_output` renders.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np
from scipy import stats

from capacity.analysis import drift
from capacity.analysis.drift import RunContext
from capacity.errors import exit_code_for
from capacity.slos import MIN_SAMPLES, OPERATION_METRICS, SERVICE_METRICS, SloSpec, applicable

TargetKind = Literal["operation", "service"]
KINDS: tuple[TargetKind, ...] = ("operation", "service")

OPERATION_SLO_METRICS = OPERATION_METRICS
SERVICE_SLO_METRICS = SERVICE_METRICS
OPERATION_REFERENCE_METRICS = ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms")
SERVICE_REFERENCE_METRICS = SERVICE_SLO_METRICS
DEFAULT_OPERATION_REFERENCE = ("p95_ms",)
DEFAULT_SERVICE_REFERENCE = ("cpu_cores_mean", "mem_mb_mean")
_MAX_ENUMERATED_SPLITS = 20_000


class Verdict(StrEnum):
    """Outcome of one gated metric or of the whole gate."""

    PASS = "pass"
    FAIL = "fail"
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    SUSPECT = "suspect"  # a shift a comparison this small cannot show to be more than noise
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class GateConfig:
    """Decision rule of the relative gate; the defaults are the ones with measured error rates."""

    alpha: float = 0.05
    min_effect: float = 0.10
    weak_min_effect: float = 0.20
    confidence: float = 0.95
    bootstrap_resamples: int = 2000
    seed: int = 0
    min_abs_ms: float = 0.5
    # An idle service's CPU wanders by more than psutil's 10 ms tick: the Temporal dev server,
    # idle in a rules-only scenario, measured 0.006 and 0.027 cores mean in identical 9 s runs
    # (its own timers and other runs' workflows). 0.05 cores is 10% of the stack's 0.5-core
    # budget per service; a smaller shift is background noise, not a regression.
    min_abs_cpu_cores: float = 0.05
    min_abs_mem_mb: float = 2.0
    # A weak comparison (too few runs to reach alpha) reports a big shift as `suspect` (exit
    # 3); with fail_weak it fails the build as a regression instead, knowingly.
    fail_weak: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0.0 <= self.min_effect <= self.weak_min_effect:
            raise ValueError(
                f"need 0 <= min_effect <= weak_min_effect, got {self.min_effect}, "
                f"{self.weak_min_effect}"
            )
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.bootstrap_resamples < 100:
            raise ValueError(f"bootstrap_resamples must be >= 100, got {self.bootstrap_resamples}")
        for name in ("min_abs_ms", "min_abs_cpu_cores", "min_abs_mem_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    def absolute_floor(self, metric: str) -> float:
        """Smallest median change, in the metric's unit, that can count as an effect."""
        if metric.endswith("_ms"):
            return self.min_abs_ms
        if metric.startswith("cpu_cores"):
            return self.min_abs_cpu_cores
        if metric.startswith("mem_mb"):
            return self.min_abs_mem_mb
        return 0.0


@dataclass(frozen=True)
class RunMetrics:
    """What the gate needs from one run's summary.json: metric values per operation and service."""

    run_id: str
    scenario: str
    operations: Mapping[str, Mapping[str, float | None]]
    services: Mapping[str, Mapping[str, float | None]]
    context: RunContext | None = None

    def targets(self, kind: TargetKind) -> Mapping[str, Mapping[str, float | None]]:
        return self.operations if kind == "operation" else self.services


@dataclass(frozen=True)
class Reference:
    """Per-run values recorded from N reference runs of one scenario."""

    scenario: str
    run_ids: tuple[str, ...]
    operations: Mapping[str, Mapping[str, tuple[float, ...]]]
    services: Mapping[str, Mapping[str, tuple[float, ...]]]
    contexts: tuple[RunContext, ...] = ()  # per reference run, in run_ids' order

    def targets(self, kind: TargetKind) -> Mapping[str, Mapping[str, tuple[float, ...]]]:
        return self.operations if kind == "operation" else self.services


@dataclass(frozen=True)
class SloCheck:
    """One ceiling applied to one concrete target, over all current runs."""

    kind: TargetKind
    target: str
    pattern: str
    metric: str
    limit: float
    value: float | None
    aggregate: str
    run_values: tuple[float, ...]
    verdict: Verdict
    evidence: str

    @property
    def name(self) -> str:
        return f"{self.target} {self.metric} <= {format_value(self.metric, self.limit)}"


@dataclass(frozen=True)
class RelativeCheck:
    """One metric of one target compared between reference runs and current runs."""

    kind: TargetKind
    target: str
    metric: str
    baseline_values: tuple[float, ...]
    current_values: tuple[float, ...]
    baseline_median: float
    current_median: float
    change: float
    ci_low: float
    ci_high: float
    p_greater: float
    p_less: float
    weak: bool
    verdict: Verdict
    evidence: str
    notes: tuple[str, ...] = ()
    threshold: float = 0.10
    threshold_source: str = "default"
    paired: bool = False

    @property
    def name(self) -> str:
        return f"{self.target} {self.metric}"


@dataclass(frozen=True)
class GateReport:
    """Everything `capacity check` decided, in the order it was checked."""

    run_ids: tuple[str, ...]
    scenario: str
    reference_run_ids: tuple[str, ...]
    config: GateConfig
    slo_checks: tuple[SloCheck, ...]
    relative_checks: tuple[RelativeCheck, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def verdict(self) -> Verdict:
        return overall_verdict([c.verdict for c in self.slo_checks + self.relative_checks])

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.verdict)


def overall_verdict(verdicts: Sequence[Verdict]) -> Verdict:
    """Worst verdict wins: an SLO failure, a regression, suspect, inconclusive, else pass."""
    for worst in (Verdict.FAIL, Verdict.REGRESSION, Verdict.SUSPECT, Verdict.INCONCLUSIVE):
        if worst in verdicts:
            return worst
    return Verdict.PASS


def format_value(metric: str, value: float) -> str:
    """A value with its unit, as the metric name says."""
    if metric.endswith("_ms"):
        return f"{value:.4g} ms"
    if metric.startswith("cpu_cores"):
        return f"{value:.3g} cores"
    if metric.startswith("mem_mb"):
        return f"{value:.4g} MB"
    if metric == "error_rate":
        return f"{value * 100:.3g}%"
    return f"{value:.4g}"


def format_change(change: float) -> str:
    if math.isinf(change):
        return "+inf%" if change > 0 else "-inf%"
    return f"{change:+.1%}"


def min_attainable_p(n_baseline: int, n_current: int) -> float:
    """Smallest one-sided exact Mann-Whitney p-value possible with these sample sizes."""
    return 1.0 / math.comb(n_baseline + n_current, n_baseline)


def relative_change(baseline_median: float, current_median: float) -> float:
    if baseline_median > 0:
        return current_median / baseline_median - 1.0
    if current_median == baseline_median:
        return 0.0
    return math.inf if current_median > baseline_median else -math.inf


def mann_whitney_p(
    baseline: np.ndarray, current: np.ndarray, alternative: Literal["greater", "less"]
) -> float:
    """One-sided p that `current` is stochastically greater (or less) than `baseline`.

    Without ties this is scipy's exact test. With ties (rounded memory figures, identical
    values) scipy's "exact" is anti-conservative, so we enumerate every split of the pooled
    mid-ranks instead; past a few thousand splits the tie-corrected normal approximation is
    already good.
    """
    pooled = np.concatenate([baseline, current])
    if len(np.unique(pooled)) == len(pooled):
        result = stats.mannwhitneyu(current, baseline, alternative=alternative, method="exact")
        return float(result.pvalue)
    n_base, n_cur = len(baseline), len(current)
    if math.comb(n_base + n_cur, n_cur) > _MAX_ENUMERATED_SPLITS:
        result = stats.mannwhitneyu(current, baseline, alternative=alternative, method="asymptotic")
        return float(result.pvalue)
    ranks = stats.rankdata(pooled)
    splits = np.array(list(itertools.combinations(range(n_base + n_cur), n_cur)))
    rank_sums = ranks[splits].sum(axis=1)
    observed = ranks[n_base:].sum()
    tolerance = 1e-9
    if alternative == "greater":
        return float(np.mean(rank_sums >= observed - tolerance))
    return float(np.mean(rank_sums <= observed + tolerance))


def bootstrap_change_ci(
    baseline: np.ndarray, current: np.ndarray, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap CI of the relative median change, resampling whole runs."""
    rng = np.random.default_rng(seed)
    base_idx = rng.integers(0, len(baseline), size=(resamples, len(baseline)))
    cur_idx = rng.integers(0, len(current), size=(resamples, len(current)))
    base_med = np.median(baseline[base_idx], axis=1)
    cur_med = np.median(current[cur_idx], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        changes = np.where(
            base_med > 0,
            cur_med / np.where(base_med > 0, base_med, 1.0) - 1.0,
            np.sign(cur_med - base_med) * np.inf,
        )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(changes, [tail, 1.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def compare(
    kind: TargetKind,
    target: str,
    metric: str,
    baseline_values: Sequence[float],
    current_values: Sequence[float],
    config: GateConfig,
    *,
    threshold: float | None = None,
    threshold_source: str = "default",
    paired: bool = False,
) -> RelativeCheck:
    """Judge one metric: regression needs significance AND a median shift above min effect.

    `threshold` replaces `config.min_effect` (a spread-calibrated minimum effect); `paired`
    says the values are interleaved pairs, in the same order on both sides, and are tested
    pair by pair (`capacity.analysis.drift`)."""
    if not baseline_values or not current_values:
        raise ValueError(f"{target} {metric}: need at least one value on each side")
    base = np.asarray(baseline_values, dtype=float)
    cur = np.asarray(current_values, dtype=float)
    seed = zlib.crc32(f"{config.seed}|{kind}|{target}|{metric}".encode())
    base_med, cur_med = float(np.median(base)), float(np.median(cur))
    change = relative_change(base_med, cur_med)
    if paired and np.all(base > 0):  # the typical pair's change, not a change of medians
        change = float(np.median(cur / base)) - 1.0
    ci_low, ci_high = bootstrap_change_ci(
        base, cur, config.confidence, config.bootstrap_resamples, seed
    )
    if paired:
        p_greater = drift.paired_p_greater(base, cur)
        p_less = drift.paired_p_greater(cur, base)
    else:
        p_greater = mann_whitney_p(base, cur, "greater")
        p_less = mann_whitney_p(base, cur, "less")
    floor = config.absolute_floor(metric)
    diff = cur_med - base_med
    n_base, n_cur = len(base), len(cur)
    lowest_p = drift.min_paired_p(n_cur) if paired else min_attainable_p(n_base, n_cur)
    weak = lowest_p > config.alpha * (1 + 1e-9)
    notes: list[str] = []
    min_effect = config.min_effect if threshold is None else threshold
    threshold = max(config.weak_min_effect, min_effect) if weak else min_effect
    big_up = change > threshold and diff > floor
    big_down = change < -threshold and -diff > floor
    significant_up = p_greater <= config.alpha * (1 + 1e-9)
    significant_down = p_less <= config.alpha * (1 + 1e-9)
    if weak:
        notes.append(
            f"weak: {n_base} vs {n_cur} runs cannot reach p<={config.alpha:g}; "
            f"a shift over {threshold:.0%} is "
            + ("a regression (fail_weak)" if config.fail_weak else "suspect, not a regression")
        )
        shifted = Verdict.REGRESSION if config.fail_weak else Verdict.SUSPECT
        verdict = shifted if big_up else Verdict.PASS
    elif big_up:
        verdict = Verdict.REGRESSION if significant_up else Verdict.INCONCLUSIVE
        if not significant_up:
            notes.append(f"shift above {threshold:.0%} but not significant at {config.alpha:g}")
    elif big_down:
        verdict = Verdict.IMPROVEMENT if significant_down else Verdict.PASS
        if not significant_down:
            notes.append("possible improvement, not significant")
    else:
        verdict = Verdict.PASS
        if significant_up and change > 0:
            notes.append(f"significant but below the minimum effect {threshold:.0%}")
    if (change > threshold or change < -threshold) and abs(diff) <= floor:
        notes.append(f"shift below the absolute floor {format_value(metric, floor)}")
    if verdict == Verdict.PASS and ci_high > 2 * threshold:
        notes.append(f"noisy: the CI reaches {format_change(ci_high)}")
    evidence = (
        f"{format_change(change)} [CI {format_change(ci_low)}, {format_change(ci_high)}], "
        f"p={p_greater:.3g}{' (paired)' if paired else ''}; threshold {threshold:.0%} "
        f"({threshold_source})"
    )
    if notes:
        evidence += "; " + "; ".join(notes)
    return RelativeCheck(
        kind=kind,
        target=target,
        metric=metric,
        baseline_values=tuple(float(v) for v in base),
        current_values=tuple(float(v) for v in cur),
        baseline_median=base_med,
        current_median=cur_med,
        change=change,
        ci_low=ci_low,
        ci_high=ci_high,
        p_greater=p_greater,
        p_less=p_less,
        weak=weak,
        verdict=verdict,
        evidence=evidence,
        notes=tuple(notes),
        threshold=threshold,
        threshold_source=threshold_source,
        paired=paired,
    )


def _aggregate(
    metric: str, kind: TargetKind, target: str, runs: Sequence[RunMetrics]
) -> tuple[float | None, str, tuple[float, ...]]:
    """One value over all runs: max for *_max, count-weighted mean for error_rate, else median."""
    rows = [run.targets(kind).get(target) for run in runs]
    present = [row for row in rows if row is not None and row.get(metric) is not None]
    values = tuple(float(row[metric] or 0.0) for row in present)
    if not values:
        return None, "no value", ()
    plural = "run" if len(runs) == 1 else "runs"
    of_runs = (
        f"{len(values)} of {len(runs)} {plural}"
        if len(values) < len(runs)
        else f"{len(values)} {plural}"
    )
    if metric.endswith("_max"):
        return max(values), f"max of {of_runs}", values
    if metric == "error_rate":
        counts = [float(row.get("count") or 0.0) for row in present]
        if sum(counts) > 0:
            pooled = sum(v * c for v, c in zip(values, counts, strict=True)) / sum(counts)
            return pooled, f"pooled over {of_runs}", values
    return float(np.median(values)), f"median of {of_runs}", values


def _too_few_samples(
    metric: str, kind: TargetKind, target: str, runs: Sequence[RunMetrics]
) -> str | None:
    """Why a latency percentile or error rate rests on too few requests, or None if enough."""
    need = MIN_SAMPLES.get(metric) if kind == "operation" else None
    rows = [run.operations.get(target) for run in runs]
    counts = [
        row.get("count")
        for row in rows
        if row is not None and row.get(metric) is not None and row.get("count") is not None
    ]
    if need is None or not counts:
        return None
    if metric == "error_rate":
        total = sum(c or 0.0 for c in counts)
        return None if total >= need else f"{total:.0f} requests in all (need {need})"
    fewest = min(c or 0.0 for c in counts)
    return None if fewest >= need else f"a run has {fewest:.0f} requests (need {need} per run)"


def check_slos(ceilings: Sequence[SloSpec], runs: Sequence[RunMetrics]) -> tuple[SloCheck, ...]:
    """Apply to every target of the runs the ceiling that applies to it (the most specific
    pattern, `capacity.slos.applicable`), in the ceilings' order; unmatched patterns are fine.

    Missing values fail and too few requests are inconclusive: neither ever passes.
    """
    chosen: list[tuple[int, str, SloSpec]] = []
    order = {id(c): i for i, c in enumerate(ceilings)}
    for kind in KINDS:
        for name in sorted({name for run in runs for name in run.targets(kind)}):
            for spec in applicable(ceilings, kind, name).values():
                chosen.append((order[id(spec)], name, spec))
    return tuple(
        _check_one(spec, target, runs) for _, target, spec in sorted(chosen, key=lambda c: c[0])
    )


def _check_one(ceiling: SloSpec, target: str, runs: Sequence[RunMetrics]) -> SloCheck:
    kind: TargetKind = "operation" if ceiling.kind == "operation" else "service"
    value, aggregate, values = _aggregate(ceiling.metric, kind, target, runs)
    limit_text = format_value(ceiling.metric, ceiling.limit)
    too_few = _too_few_samples(ceiling.metric, kind, target, runs)
    if value is None:
        verdict = Verdict.FAIL
        evidence = f"no {ceiling.metric} in any run: a gate never passes on missing data"
    elif too_few:
        verdict = Verdict.INCONCLUSIVE
        evidence = (
            f"{format_value(ceiling.metric, value)} ({aggregate}) vs {limit_text}: "
            f"too few samples, {too_few}"
        )
    else:
        verdict = Verdict.PASS if value <= ceiling.limit else Verdict.FAIL
        relation = "<=" if verdict == Verdict.PASS else ">"
        evidence = f"{format_value(ceiling.metric, value)} ({aggregate}) {relation} {limit_text}"
    return SloCheck(
        kind=kind,
        target=target,
        pattern=ceiling.pattern,
        metric=ceiling.metric,
        limit=ceiling.limit,
        value=value,
        aggregate=aggregate,
        run_values=values,
        verdict=verdict,
        evidence=evidence,
    )


def metric_value(run: RunMetrics, kind: TargetKind, target: str, metric: str) -> float | None:
    """One run's value of a metric, None when the run lacks the target or the value."""
    row = run.targets(kind).get(target)
    return None if row is None else row.get(metric)


def missing_reference_data(reference: Reference, runs: Sequence[RunMetrics]) -> tuple[str, ...]:
    """Every reference metric some current run lacks, as 'kind target metric (run ...)' lines."""
    problems: list[str] = []
    for kind in KINDS:
        for target, metrics in reference.targets(kind).items():
            for metric in metrics:
                lacking = [
                    run.run_id for run in runs if metric_value(run, kind, target, metric) is None
                ]
                if lacking:
                    problems.append(f"{kind} '{target}' {metric} (missing in {', '.join(lacking)})")
    return tuple(problems)


def compare_to_reference(
    reference: Reference, runs: Sequence[RunMetrics], config: GateConfig
) -> tuple[RelativeCheck, ...]:
    """Compare every reference metric; the caller must first rule out missing data."""
    missing = missing_reference_data(reference, runs)
    if missing:
        raise ValueError("missing reference data: " + "; ".join(missing))
    ref_ctx = reference.contexts
    cur_ctx = tuple(run.context for run in runs if run.context is not None)
    known = len(ref_ctx) == len(reference.run_ids) and len(cur_ctx) == len(runs)
    pairs = drift.paired(ref_ctx, cur_ctx) if known else None
    crowded = drift.contention(ref_ctx, cur_ctx) if known else None
    checks: list[RelativeCheck] = []
    for kind in KINDS:
        for target, metrics in sorted(reference.targets(kind).items()):
            for metric, baseline_values in metrics.items():
                current = [metric_value(run, kind, target, metric) or 0.0 for run in runs]
                base, cur = list(baseline_values), current
                if pairs is not None:
                    base, cur = [base[i] for i, _ in pairs], [cur[j] for _, j in pairs]
                if pairs is None:
                    threshold, source = drift.min_effect_for(baseline_values, config.min_effect)
                else:  # drift cancels pair by pair: the reference's spread is not the noise
                    threshold, source = config.min_effect, "default, paired runs"
                check = compare(
                    kind, target, metric, base, cur, config,
                    threshold=threshold, threshold_source=source, paired=pairs is not None,
                )  # fmt: skip
                reasons = []
                if too_few := _too_few_samples(metric, kind, target, runs):
                    reasons.append(f"not judged: {too_few}")
                if known and pairs is None:  # paired runs: a shared drift cancels
                    for side, values, ctx in (
                        ("reference", baseline_values, ref_ctx),
                        ("current", current, cur_ctx),
                    ):
                        moved = drift.trend(values, [c.order_s for c in ctx], config.alpha)
                        if moved:
                            reasons.append(f"the {side} runs {moved}")
                if crowded:
                    reasons.append(crowded)
                if reasons and check.verdict not in (Verdict.PASS, Verdict.INCONCLUSIVE):
                    check = dataclasses.replace(
                        check,
                        verdict=Verdict.INCONCLUSIVE,
                        evidence="; ".join(reasons) + f"; {check.evidence}",
                    )
                checks.append(check)
    return tuple(checks)


def evaluate(
    ceilings: Sequence[SloSpec],
    reference: Reference | None,
    runs: Sequence[RunMetrics],
    config: GateConfig,
) -> GateReport:
    """The whole gate over current runs: SLO ceilings, then the reference comparison."""
    if not runs:
        raise ValueError("no runs to check")
    notes: list[str] = []
    relative: tuple[RelativeCheck, ...] = ()
    if reference is None:
        notes.append("the baseline has no reference results: relative comparison skipped")
    else:
        relative = compare_to_reference(reference, runs, config)
        extra = sorted(
            {name for run in runs for name in run.operations} - set(reference.operations)
        )
        if extra:
            notes.append("not in the reference, not compared: " + ", ".join(extra))
        if any(check.weak for check in relative):
            notes.append(
                f"weak comparison ({len(reference.run_ids)} reference vs {len(runs)} current "
                f"runs): repeat runs (capacity run --repeat N) for a real test"
            )
    slo_checks = check_slos(ceilings, runs)
    if not ceilings:
        notes.append("the baseline has no SLO ceilings")
    scenarios = sorted({run.scenario for run in runs})
    return GateReport(
        run_ids=tuple(run.run_id for run in runs),
        scenario=", ".join(scenarios),
        reference_run_ids=reference.run_ids if reference else (),
        config=config,
        slo_checks=slo_checks,
        relative_checks=relative,
        notes=tuple(notes),
    )
