"""Measured error rates of the relative gate on simulated runs (the issue's acceptance test).

Each simulated run draws 3000 lognormal latencies, scaled by a per-run multiplicative noise
of 5% (lognormal, sigma 0.05); the gate sees each run's P95, six runs per side. Over 300
trials per case: false alarms (regression verdict, nothing changed) <= 5%, and a 20% P95
regression detected >= 95% of the time. A seeded Generator makes it deterministic.
"""

from __future__ import annotations

import numpy as np

from capacity.analysis.gate import GateConfig, Verdict, compare

TRIALS = 300
RUNS_PER_SIDE = 6
SAMPLES_PER_RUN = 3000
RUN_NOISE = 0.05


def per_run_p95_ms(rng: np.random.Generator, slowdown: float) -> list[float]:
    run_factor = np.exp(rng.normal(0.0, RUN_NOISE, size=(RUNS_PER_SIDE, 1)))
    latencies_ms = (
        40.0 * slowdown * run_factor * rng.lognormal(0.0, 0.6, (RUNS_PER_SIDE, SAMPLES_PER_RUN))
    )
    return [float(v) for v in np.percentile(latencies_ms, 95, axis=1)]


def regression_rate(rng: np.random.Generator, slowdown: float, config: GateConfig) -> float:
    regressions = 0
    for _ in range(TRIALS):
        baseline = per_run_p95_ms(rng, 1.0)
        current = per_run_p95_ms(rng, slowdown)
        check = compare("operation", "graphql Simulated", "p95_ms", baseline, current, config)
        regressions += check.verdict == Verdict.REGRESSION
    return regressions / TRIALS


def test_false_alarm_and_detection_rates_with_six_runs_per_side() -> None:
    config = GateConfig()
    rng = np.random.default_rng(20261126)
    false_alarms = regression_rate(rng, 1.0, config)
    detected_20 = regression_rate(rng, 1.2, config)
    print(
        f"\n{TRIALS} trials, {RUNS_PER_SIDE} runs/side, {RUN_NOISE:.0%} run noise, "
        f"alpha={config.alpha}, min_effect={config.min_effect:.0%}: "
        f"false alarms {false_alarms:.1%}, 20% regression detected {detected_20:.1%}"
    )
    assert false_alarms <= 0.05
    assert detected_20 >= 0.95


def test_the_simulation_fools_a_single_run_ten_percent_threshold() -> None:
    """Guards the test above against a too-easy simulation: the naive gate must do badly."""
    rng = np.random.default_rng(7)
    false_alarms = missed = 0
    for _ in range(TRIALS):
        base, same, slower = (per_run_p95_ms(rng, s)[0] for s in (1.0, 1.0, 1.1))
        false_alarms += same / base - 1 > 0.10
        missed += slower / base - 1 <= 0.10
    print(
        f"\nsingle run vs single run, 10% threshold: false alarms {false_alarms / TRIALS:.1%}, "
        f"10% regressions missed {missed / TRIALS:.1%}"
    )
    assert false_alarms / TRIALS > 0.05
    assert missed / TRIALS > 0.30
