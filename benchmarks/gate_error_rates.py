"""Measure the CI gate's false-alarm and detection rates on simulated runs.

Each simulated run draws a few thousand lognormal latencies scaled by a per-run
multiplicative noise (5% by default), and its P95 is what the gate sees, as with real runs.
A "false alarm" is a regression verdict when nothing changed; "detected" is a regression
verdict when every latency of the current side is slower by the given factor.

    .venv/bin/python benchmarks/gate_error_rates.py [--trials 400] [--noise 0.05]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from capacity.analysis.gate import GateConfig, Verdict, compare


def simulate_p95s(
    rng: np.random.Generator,
    runs: int,
    slowdown: float,
    noise: float,
    samples_per_run: int,
    median_ms: float = 40.0,
    sigma: float = 0.6,
) -> list[float]:
    """Per-run P95s of `runs` simulated runs, all latencies multiplied by `slowdown`."""
    run_factor = np.exp(rng.normal(0.0, noise, size=(runs, 1)))
    latencies_ms = (
        median_ms * slowdown * run_factor * rng.lognormal(0.0, sigma, size=(runs, samples_per_run))
    )
    return [float(v) for v in np.percentile(latencies_ms, 95, axis=1)]


def verdict_rates(
    rng: np.random.Generator,
    runs_per_side: int,
    slowdown: float,
    trials: int,
    config: GateConfig,
    noise: float = 0.05,
    samples_per_run: int = 3000,
) -> dict[Verdict, float]:
    """Fraction of trials ending in each verdict."""
    counts = dict.fromkeys(Verdict, 0)
    for _ in range(trials):
        baseline = simulate_p95s(rng, runs_per_side, 1.0, noise, samples_per_run)
        current = simulate_p95s(rng, runs_per_side, slowdown, noise, samples_per_run)
        check = compare("operation", "graphql Simulated", "p95_ms", baseline, current, config)
        counts[check.verdict] += 1
    return {verdict: count / trials for verdict, count in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--noise", type=float, default=0.05, help="per-run noise (sigma)")
    parser.add_argument("--samples", type=int, default=3000, help="latencies per run")
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args()
    config = GateConfig()
    rng = np.random.default_rng(args.seed)
    print(
        f"alpha={config.alpha} min_effect={config.min_effect:.0%} "
        f"weak_min_effect={config.weak_min_effect:.0%} noise={args.noise:.0%} "
        f"samples/run={args.samples} trials={args.trials}"
    )
    print(f"{'runs/side':>9} {'change':>7} {'regression':>10} {'inconclusive':>12} {'pass':>6}")
    started = time.perf_counter()
    for runs in (1, 3, 6):
        for slowdown in (1.0, 1.1, 1.2):
            rates = verdict_rates(
                rng, runs, slowdown, args.trials, config, args.noise, args.samples
            )
            label = "none" if slowdown == 1.0 else f"+{slowdown - 1:.0%}"
            print(
                f"{runs:>9} {label:>7} {rates[Verdict.REGRESSION]:>10.1%} "
                f"{rates[Verdict.INCONCLUSIVE]:>12.1%} "
                f"{rates[Verdict.PASS] + rates[Verdict.IMPROVEMENT]:>6.1%}"
            )
    print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
