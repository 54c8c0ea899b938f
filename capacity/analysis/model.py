"""Capacity models of the throughput curve: USL fit, knee, SLO-limited capacity.

Pure functions: arrays and step objects in, frozen results out, never I/O. Thin or odd data
gives a result that says why (ok=False, a reason, warnings) instead of raising, because a
short or killed run must still render a report; only caller mistakes a user can fix raise
`CapacityError`. Resource planning (demand, projections, bottleneck) is
`capacity.analysis.planning`; neither module imports the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from warnings import catch_warnings, simplefilter

import numpy as np
from scipy import optimize, stats

from capacity.analysis.steps import StepLike
from capacity.errors import CapacityError

__all__ = [
    "CI_LEVEL",
    "Knee",
    "SloCapacity",
    "StepLike",
    "UslFit",
    "detect_knee",
    "fit_usl",
    "slo_limited_capacity",
    "usl_throughput",
]

CI_LEVEL = 0.95
MIN_DISTINCT_POINTS = 4
# kappa adds less than this to the USL denominator over the measured range: treat it as 0.
KAPPA_NEGLIGIBLE = 1e-6
# Measured points whose efficiency X/(lambda N) stays above this never left the linear part.
LINEAR_EFFICIENCY = 0.8

ArrayLike = Sequence[float] | np.ndarray


def usl_throughput(n: ArrayLike | float, sigma: float, kappa: float, lambda_: float) -> np.ndarray:
    """Universal Scalability Law: X(N) = lambda N / (1 + sigma (N-1) + kappa N (N-1))."""
    n_arr = np.asarray(n, dtype=float)
    return lambda_ * n_arr / (1.0 + sigma * (n_arr - 1.0) + kappa * n_arr * (n_arr - 1.0))


@dataclass(frozen=True)
class UslFit:
    """A fitted USL with 95% intervals; ok=False with `reason` when it could not be fitted.

    `peak_concurrency` is inf when kappa is negligible (no retrograde region measured); then
    `max_throughput_rps` is the asymptote lambda/sigma. `reached_curvature` is False when the
    measured points stay near-linear or end below half the predicted peak, i.e. sigma, kappa
    and the peak are extrapolated rather than measured.
    """

    ok: bool
    reason: str | None
    n_points: int
    n_distinct: int
    sigma: float = math.nan
    kappa: float = math.nan
    lambda_: float = math.nan
    sigma_ci: tuple[float, float] = (math.nan, math.nan)
    kappa_ci: tuple[float, float] = (math.nan, math.nan)
    lambda_ci: tuple[float, float] = (math.nan, math.nan)
    r2: float = math.nan
    peak_concurrency: float = math.nan
    max_throughput_rps: float = math.nan
    max_measured_concurrency: float = math.nan
    max_measured_throughput_rps: float = math.nan
    reached_curvature: bool = False
    warnings: tuple[str, ...] = ()
    covariance: tuple[tuple[float, ...], ...] | None = field(default=None, repr=False)

    def predict(self, n: ArrayLike | float) -> np.ndarray:
        """Throughput predicted at concurrency n (NaN when the fit failed)."""
        if not self.ok:
            return np.full(np.shape(n), math.nan)
        return usl_throughput(n, self.sigma, self.kappa, self.lambda_)

    def predict_band(
        self, n: ArrayLike | float, level: float = CI_LEVEL
    ) -> tuple[np.ndarray, np.ndarray]:
        """Confidence band (low, high) of the mean throughput at n, by the delta method.

        The gradient of X(N) with respect to (sigma, kappa, lambda) maps the fit's covariance
        to a variance of X(N); the band uses Student's t with n_points - 3 degrees of freedom.
        """
        n_arr = np.asarray(n, dtype=float)
        centre = self.predict(n_arr)
        dof = self.n_points - 3
        if not self.ok or self.covariance is None or dof < 1:
            nan = np.full(np.shape(n_arr), math.nan)
            return nan, nan.copy()
        denom = 1.0 + self.sigma * (n_arr - 1.0) + self.kappa * n_arr * (n_arr - 1.0)
        grad = np.stack(
            [
                -self.lambda_ * n_arr * (n_arr - 1.0) / denom**2,
                -self.lambda_ * n_arr * n_arr * (n_arr - 1.0) / denom**2,
                n_arr / denom,
            ]
        )
        cov = np.asarray(self.covariance, dtype=float)
        variance = np.einsum("i...,ij,j...->...", grad, cov, grad)
        half = stats.t.ppf(0.5 + level / 2.0, dof) * np.sqrt(np.clip(variance, 0.0, None))
        return centre - half, centre + half


def _failed_fit(
    reason: str, n_points: int, n_distinct: int, n: np.ndarray, x: np.ndarray
) -> UslFit:
    return UslFit(
        ok=False,
        reason=reason,
        n_points=n_points,
        n_distinct=n_distinct,
        max_measured_concurrency=float(n.max()) if n.size else math.nan,
        max_measured_throughput_rps=float(x.max()) if x.size else math.nan,
    )


def _initial_guesses(n: np.ndarray, x: np.ndarray) -> list[tuple[float, float, float]]:
    """Starting points: Gunther's linearisation plus a few fixed shapes.

    With lambda ~ X(N_min)/N_min, N/C(N) - 1 = sigma (N-1) + kappa N (N-1) is linear in
    sigma and kappa, which lands the optimiser near the right basin on most data.
    """
    smallest = n == n.min()
    lambda0 = float(np.max(x[smallest] / n[smallest]))
    capacity_ratio = x / lambda0
    y = n / capacity_ratio - 1.0
    design = np.column_stack([n - 1.0, n * (n - 1.0)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    sigma0 = float(np.clip(coef[0], 1e-4, 0.95))
    kappa0 = float(max(coef[1], 1e-8))
    return [
        (sigma0, kappa0, lambda0),
        (0.05, 1e-4, lambda0),
        (0.2, 1e-3, lambda0 * 1.2),
        (0.01, 1e-6, lambda0),
    ]


def fit_usl(concurrency: ArrayLike, throughput_rps: ArrayLike, level: float = CI_LEVEL) -> UslFit:
    """Fit the USL by bounded nonlinear least squares on relative residuals.

    Residuals are weighted by 1/X because load-test noise is roughly proportional to
    throughput; unweighted fits let the largest steps dominate and bias sigma. Bounds:
    0 <= sigma <= 1, kappa >= 0, lambda > 0. Several starts; the lowest cost wins.
    """
    n_all = np.asarray(concurrency, dtype=float).ravel()
    x_all = np.asarray(throughput_rps, dtype=float).ravel()
    if n_all.shape != x_all.shape:
        raise CapacityError(
            f"fit_usl: {n_all.size} concurrency values but {x_all.size} throughput values"
        )
    keep = np.isfinite(n_all) & np.isfinite(x_all) & (n_all > 0) & (x_all > 0)
    n, x = n_all[keep], x_all[keep]
    n_distinct = int(np.unique(n).size)
    if n_distinct < MIN_DISTINCT_POINTS:
        dropped = int((~keep).sum())
        extra = f" ({dropped} point(s) without positive throughput dropped)" if dropped else ""
        return _failed_fit(
            f"needs at least {MIN_DISTINCT_POINTS} load steps with distinct concurrency and "
            f"positive throughput to fit 3 parameters, got {n_distinct}{extra}",
            int(n.size),
            n_distinct,
            n,
            x,
        )
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for p0 in _initial_guesses(n, x):
        try:
            with catch_warnings():
                simplefilter("ignore", optimize.OptimizeWarning)
                popt, pcov = optimize.curve_fit(
                    usl_throughput,
                    n,
                    x,
                    p0=p0,
                    sigma=x,
                    bounds=([0.0, 0.0, 1e-12], [1.0, np.inf, np.inf]),
                    x_scale="jac",
                    max_nfev=5000,
                )
        except (RuntimeError, ValueError):
            continue
        cost = float(np.sum(((usl_throughput(n, *popt) - x) / x) ** 2))
        if best is None or cost < best[0]:
            best = (cost, popt, pcov)
    if best is None:
        return _failed_fit(
            "the least-squares fit did not converge from any start", int(n.size), n_distinct, n, x
        )
    _, popt, pcov = best
    return _summarise_fit(n, x, popt, pcov, n_distinct, level)


def _summarise_fit(
    n: np.ndarray, x: np.ndarray, popt: np.ndarray, pcov: np.ndarray, n_distinct: int, level: float
) -> UslFit:
    sigma, kappa, lambda_ = (float(v) for v in popt)
    warnings: list[str] = []
    dof = n.size - 3
    finite_cov = bool(np.all(np.isfinite(pcov)))
    if dof >= 1 and finite_cov:
        half = stats.t.ppf(0.5 + level / 2.0, dof) * np.sqrt(np.clip(np.diag(pcov), 0.0, None))
    else:
        half = np.full(3, math.nan)
        warnings.append("no confidence intervals: too few points or a degenerate fit")
    # Intervals are clipped to the parameters' physical bounds.
    h_sigma, h_kappa, h_lambda = (float(v) for v in half)
    sigma_ci = (max(0.0, sigma - h_sigma), min(1.0, sigma + h_sigma))
    kappa_ci = (max(0.0, kappa - h_kappa), kappa + h_kappa)
    lambda_ci = (max(0.0, lambda_ - h_lambda), lambda_ + h_lambda)
    fitted = usl_throughput(n, sigma, kappa, lambda_)
    ss_tot = float(np.sum((x - x.mean()) ** 2))
    r2 = 1.0 - float(np.sum((x - fitted) ** 2)) / ss_tot if ss_tot > 0 else math.nan
    max_n = float(n.max())
    if kappa * max_n * max(max_n - 1.0, 1.0) < KAPPA_NEGLIGIBLE:
        peak = math.inf
        max_x = lambda_ / sigma if sigma > 0 else math.inf
        warnings.append(
            "no retrograde region measured: kappa ~ 0, so no peak; the maximum throughput "
            "is the asymptote lambda/sigma"
        )
    else:
        peak = math.sqrt((1.0 - sigma) / kappa)
        max_x = float(usl_throughput(peak, sigma, kappa, lambda_))
    efficiency = float(usl_throughput(max_n, sigma, kappa, lambda_)) / (lambda_ * max_n)
    linear_only = efficiency > LINEAR_EFFICIENCY
    if linear_only:
        warnings.append(
            f"measured points stay near-linear (efficiency {efficiency:.2f} at N={max_n:g}): "
            "sigma, kappa and the peak are extrapolated"
        )
    if math.isfinite(peak) and max_n < 0.5 * peak:
        warnings.append(
            f"largest measured concurrency {max_n:g} is below half the predicted peak "
            f"{peak:.1f}: the peak is extrapolated"
        )
    if finite_cov and math.isfinite(h_kappa) and kappa_ci[0] <= 0.0 < kappa:
        warnings.append("kappa's interval includes 0: the retrograde region is not established")
    reached = (not linear_only) and math.isfinite(peak) and max_n >= 0.5 * peak
    return UslFit(
        ok=True,
        reason=None,
        n_points=int(n.size),
        n_distinct=n_distinct,
        sigma=sigma,
        kappa=kappa,
        lambda_=lambda_,
        sigma_ci=sigma_ci,
        kappa_ci=kappa_ci,
        lambda_ci=lambda_ci,
        r2=r2,
        peak_concurrency=peak,
        max_throughput_rps=max_x,
        max_measured_concurrency=max_n,
        max_measured_throughput_rps=float(x.max()),
        reached_curvature=reached,
        warnings=tuple(warnings),
        covariance=tuple(tuple(float(v) for v in row) for row in pcov) if finite_cov else None,
    )


@dataclass(frozen=True)
class Knee:
    """Where a load curve bends; found=False with a reason when it does not bend enough."""

    found: bool
    method: str
    reason: str | None = None
    index: int | None = None
    users: float = math.nan
    value: float = math.nan
    score: float = math.nan


def detect_knee(
    users: ArrayLike,
    values: ArrayLike,
    curve: Literal["throughput", "latency"] = "throughput",
    method: Literal["kneedle", "slope"] = "kneedle",
    min_score: float = 0.1,
    slope_fraction: float = 0.5,
) -> Knee:
    """Find the knee of throughput-vs-users (concave) or latency-vs-users (convex).

    "kneedle" (Satopaa et al. 2011, without smoothing): scale both axes to [0, 1]; the knee
    is the point farthest from the chord (y - x for concave, x - y for convex), accepted only
    if that distance is >= `min_score` so a straight line has no knee. "slope" (throughput
    only): the last step before the marginal throughput per added user falls below
    `slope_fraction` of the throughput per user at the smallest step. `index` refers to the
    points sorted by users.
    """
    u = np.asarray(users, dtype=float)
    v = np.asarray(values, dtype=float)
    keep = np.isfinite(u) & np.isfinite(v)
    order = np.argsort(u[keep], kind="stable")
    u, v = u[keep][order], v[keep][order]
    if u.size < 3 or np.unique(u).size < 3:
        return Knee(False, method, f"needs at least 3 distinct steps, got {np.unique(u).size}")
    if method == "slope":
        if curve != "throughput":
            raise CapacityError("detect_knee: the slope method applies to throughput curves only")
        initial = v[0] / u[0] if u[0] > 0 else (v[1] - v[0]) / (u[1] - u[0])
        marginal = np.diff(v) / np.diff(u)
        below = np.flatnonzero(marginal < slope_fraction * initial)
        if initial <= 0 or below.size == 0:
            return Knee(False, method, "marginal throughput never fell below the threshold")
        i = int(below[0])
        return Knee(True, method, None, i, float(u[i]), float(v[i]), float(marginal[i] / initial))
    span_u, span_v = u[-1] - u[0], float(v.max() - v.min())
    if span_v <= 0:
        return Knee(False, method, "the curve is flat")
    x_n = (u - u[0]) / span_u
    y_n = (v - v.min()) / span_v
    difference = y_n - x_n if curve == "throughput" else x_n - y_n
    i = int(np.argmax(difference))
    score = float(difference[i])
    if score < min_score or i in (0, u.size - 1):
        return Knee(
            False, method, f"no bend: the curve stays within {score:.2f} of a line", score=score
        )
    return Knee(True, method, None, i, float(u[i]), float(v[i]), score)


@dataclass(frozen=True)
class SloCapacity:
    """Most users and req/s measured within the SLO, and how that figure was obtained."""

    max_users: float
    max_rps: float
    limited_by: str | None
    interpolated: bool
    lower_bound: bool
    last_pass_users: float | None
    first_fail_users: float | None
    note: str


def _crossing(u0: float, y0: float, u1: float, y1: float, limit: float) -> float:
    if y1 <= y0:
        return u0
    return u0 + (limit - y0) * (u1 - u0) / (y1 - y0)


def slo_limited_capacity(
    steps: Sequence[StepLike], p95_limit_ms: float, error_rate_limit: float | None = None
) -> SloCapacity:
    """Users and req/s at which P95 (and the error rate) reach their limits.

    Steps are taken in order of users; the capacity lies between the last passing step and
    the first failing one, found by linear interpolation of the breached metric (the earlier
    crossing when both breach). Throughput is interpolated at that user count. Nothing
    breached means the figure is only a lower bound.
    """
    ordered = sorted(
        (s for s in steps if math.isfinite(s.p95_ms) and math.isfinite(s.users)),
        key=lambda s: s.users,
    )
    if not ordered:
        return SloCapacity(
            math.nan, math.nan, None, False, False, None, None, "no step has a measured P95"
        )

    def breaches(s: StepLike) -> list[str]:
        out = ["p95"] if s.p95_ms > p95_limit_ms else []
        if error_rate_limit is not None and s.error_rate > error_rate_limit:
            out.append("error_rate")
        return out

    fail_at = next((i for i, s in enumerate(ordered) if breaches(s)), None)
    if fail_at is None:
        top = ordered[-1]
        best_rps = max(s.throughput_rps for s in ordered)
        note = f"SLO never breached up to {top.users:g} users: capacity is at least this"
        return SloCapacity(top.users, best_rps, None, False, True, top.users, None, note)
    fail = ordered[fail_at]
    reasons = breaches(fail)
    if fail_at == 0:
        note = f"the smallest step ({fail.users:g} users) already breaches {', '.join(reasons)}"
        return SloCapacity(0.0, 0.0, reasons[0], False, False, None, fail.users, note)
    ok = ordered[fail_at - 1]
    crossings = {"p95": _crossing(ok.users, ok.p95_ms, fail.users, fail.p95_ms, p95_limit_ms)}
    if "error_rate" in reasons and error_rate_limit is not None:
        crossings["error_rate"] = _crossing(
            ok.users, ok.error_rate, fail.users, fail.error_rate, error_rate_limit
        )
    limited_by = min((r for r in reasons), key=lambda r: crossings[r])
    users_at = crossings[limited_by]
    span_users = fail.users - ok.users
    frac = (users_at - ok.users) / span_users if span_users > 0 else 0.0
    rps_at = ok.throughput_rps + frac * (fail.throughput_rps - ok.throughput_rps)
    best_rps = max(max(s.throughput_rps for s in ordered[:fail_at]), rps_at)
    note = (
        f"interpolated between {ok.users:g} users (pass) and {fail.users:g} users "
        f"(fails {', '.join(reasons)})"
    )
    return SloCapacity(users_at, best_rps, limited_by, True, False, ok.users, fail.users, note)
