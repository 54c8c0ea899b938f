"""USL fitting: parameter recovery, prediction from the linear part, thin data, bands."""

from __future__ import annotations

import math

import numpy as np
import pytest

from capacity.analysis.model import fit_usl, usl_throughput

LAMBDA_RPS = 100.0
# Per-step multiplicative throughput noise the recovery criteria are checked at. At 1% the
# worst of 30 seeds reached ~10% error on the smallest sigma (0.02); see the report.
NOISE = 0.005
PAIRS = [(0.02, 0.0005), (0.05, 0.001), (0.1, 0.002), (0.03, 0.0002), (0.2, 0.005)]
SEEDS = range(10)


def peak_of(sigma: float, kappa: float) -> float:
    return math.sqrt((1.0 - sigma) / kappa)


def synthetic(n: np.ndarray, sigma: float, kappa: float, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clean = usl_throughput(n, sigma, kappa, LAMBDA_RPS)
    return clean * (1.0 + noise * rng.standard_normal(n.size))


@pytest.mark.parametrize(("sigma", "kappa"), PAIRS)
def test_recovers_sigma_and_kappa_within_10_percent(sigma: float, kappa: float) -> None:
    n = np.unique(np.round(np.linspace(1, 2 * peak_of(sigma, kappa), 12)))
    for seed in SEEDS:
        fit = fit_usl(n, synthetic(n, sigma, kappa, NOISE, seed))
        assert fit.ok, fit.reason
        assert fit.sigma == pytest.approx(sigma, rel=0.10), seed
        assert fit.kappa == pytest.approx(kappa, rel=0.10), seed
        assert fit.lambda_ == pytest.approx(LAMBDA_RPS, rel=0.10), seed
        assert fit.peak_concurrency == pytest.approx(peak_of(sigma, kappa), rel=0.10)
        assert fit.reached_curvature
        assert fit.r2 > 0.99


@pytest.mark.parametrize(("sigma", "kappa"), PAIRS)
def test_fit_below_half_peak_predicts_peak_within_15_percent(sigma: float, kappa: float) -> None:
    peak = peak_of(sigma, kappa)
    n = np.unique(np.floor(np.linspace(1, peak / 2, 12)))
    assert n.max() <= peak / 2
    for seed in SEEDS:
        fit = fit_usl(n, synthetic(n, sigma, kappa, NOISE, seed))
        assert fit.ok, fit.reason
        truth = float(usl_throughput(peak, sigma, kappa, LAMBDA_RPS))
        assert float(fit.predict(peak)) == pytest.approx(truth, rel=0.15), seed
        assert fit.max_throughput_rps == pytest.approx(truth, rel=0.15), seed


def test_noise_free_fit_is_exact_without_a_point_at_one_user() -> None:
    n = np.array([2.0, 5, 10, 20, 30, 40, 60])
    fit = fit_usl(n, usl_throughput(n, 0.07, 0.0008, 250.0))
    assert fit.sigma == pytest.approx(0.07, rel=1e-4)
    assert fit.kappa == pytest.approx(0.0008, rel=1e-4)
    assert fit.lambda_ == pytest.approx(250.0, rel=1e-4)


def test_confidence_intervals_cover_the_truth_about_95_percent_of_the_time() -> None:
    sigma, kappa = 0.05, 0.001
    n = np.unique(np.round(np.linspace(1, 2 * peak_of(sigma, kappa), 12)))
    peak = peak_of(sigma, kappa)
    truth_at_peak = float(usl_throughput(peak, sigma, kappa, LAMBDA_RPS))
    trials = 80
    covered_sigma = covered_kappa = covered_band = 0
    for seed in range(trials):
        fit = fit_usl(n, synthetic(n, sigma, kappa, 0.03, seed))
        covered_sigma += fit.sigma_ci[0] <= sigma <= fit.sigma_ci[1]
        covered_kappa += fit.kappa_ci[0] <= kappa <= fit.kappa_ci[1]
        low, high = fit.predict_band(peak)
        covered_band += float(low) <= truth_at_peak <= float(high)
    assert covered_sigma / trials >= 0.85
    assert covered_kappa / trials >= 0.85
    assert covered_band / trials >= 0.85


def test_band_contains_the_prediction_and_widens_away_from_data() -> None:
    sigma, kappa = 0.05, 0.001
    n = np.arange(1.0, 16.0)
    fit = fit_usl(n, synthetic(n, sigma, kappa, 0.02, 3))
    grid = np.array([5.0, 60.0])
    low, high = fit.predict_band(grid)
    centre = fit.predict(grid)
    assert np.all(low < centre) and np.all(centre < high)
    assert (high - low)[1] > (high - low)[0]


@pytest.mark.parametrize("n_steps", [0, 1, 2, 3])
def test_fewer_than_four_steps_gives_a_reason_not_an_exception(n_steps: int) -> None:
    n = np.array([1.0, 5.0, 10.0][:n_steps])
    fit = fit_usl(n, usl_throughput(n, 0.05, 0.001, LAMBDA_RPS))
    assert not fit.ok
    assert fit.reason is not None and "at least 4" in fit.reason
    assert fit.n_distinct == n_steps
    assert np.isnan(fit.predict(10.0))


def test_repeated_concurrency_does_not_count_as_distinct_steps() -> None:
    n = np.array([1.0, 1, 5, 5, 10, 10])
    fit = fit_usl(n, usl_throughput(n, 0.05, 0.001, LAMBDA_RPS))
    assert not fit.ok
    assert fit.n_points == 6 and fit.n_distinct == 3


def test_steps_without_throughput_are_dropped_and_said() -> None:
    n = np.array([1.0, 5, 10, 20])
    x = usl_throughput(n, 0.05, 0.001, LAMBDA_RPS)
    x[3] = 0.0
    fit = fit_usl(n, x)
    assert not fit.ok
    assert fit.reason is not None and "dropped" in fit.reason


def test_linear_data_reports_no_peak_and_no_curvature() -> None:
    n = np.array([1.0, 2, 4, 8, 16])
    fit = fit_usl(n, 50.0 * n)
    assert fit.ok
    assert fit.sigma == pytest.approx(0.0, abs=1e-4)
    assert math.isinf(fit.peak_concurrency)
    assert not fit.reached_curvature
    assert any("no retrograde region" in w for w in fit.warnings)
    assert any("near-linear" in w for w in fit.warnings)


def test_amdahl_only_data_reports_the_asymptote() -> None:
    n = np.array([1.0, 4, 8, 16, 32, 64])
    fit = fit_usl(n, usl_throughput(n, 0.1, 0.0, LAMBDA_RPS))
    assert fit.kappa == pytest.approx(0.0, abs=1e-9)
    assert math.isinf(fit.peak_concurrency)
    assert fit.max_throughput_rps == pytest.approx(LAMBDA_RPS / 0.1, rel=1e-3)
    assert any("no retrograde region" in w for w in fit.warnings)


def test_data_far_below_the_peak_is_flagged_as_extrapolation() -> None:
    sigma, kappa = 0.02, 0.0002
    n = np.arange(1.0, 9.0)
    fit = fit_usl(n, usl_throughput(n, sigma, kappa, LAMBDA_RPS))
    assert fit.ok
    assert not fit.reached_curvature
    assert any("extrapolated" in w for w in fit.warnings)


def test_mismatched_lengths_are_a_caller_error() -> None:
    from capacity.errors import CapacityError

    with pytest.raises(CapacityError, match="throughput values"):
        fit_usl([1.0, 2.0], [1.0])
