"""Pure change-point detection: E-Divisive means with a permutation test.

The method of Matteson and James ("A Nonparametric Approach for Multiple Change Point
Analysis of Multivariate Data", 2014), as Apache Otava and MongoDB's
signal-processing-algorithms use it for performance histories: split the series where the
energy distance between the two sides (the divergence statistic q) is largest, test that
split by recomputing the best q after shuffling each current segment (no change point within
a segment is the null hypothesis), keep it when p <= `sig_level`, and repeat within the
segments. Nonparametric: no normality assumed, so a latency series with outliers does not
raise false alarms the way a t-test would.

Apache Otava itself (PyPI `apache-otava` 0.8.0) installs and its `compute_change_points_orig`
works as a library, but it pins numpy 2.2.0 and scipy < 1.17 and pulls in BigQuery, gRPC and
Slack clients; this module is the same statistic in ~150 lines of numpy instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChangePointConfig:
    """Settings of the detector; the defaults keep false alarms near 1 series in 100."""

    sig_level: float = 0.01
    permutations: int = 199
    min_size: int = 3
    alpha: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.sig_level < 1.0:
            raise ValueError(f"sig_level must be in (0, 1), got {self.sig_level}")
        if self.permutations < 19:
            raise ValueError(f"permutations must be >= 19, got {self.permutations}")
        if self.min_size < 2:
            raise ValueError(f"min_size must be >= 2, got {self.min_size}")
        if not 0.0 < self.alpha < 2.0:
            raise ValueError(f"alpha must be in (0, 2), got {self.alpha}")


@dataclass(frozen=True)
class ChangePoint:
    """A shift at `index` (the first value of the new regime), with its size and p-value.

    Means are over the neighbouring segments of the final segmentation (from the previous
    change point to this one, and from this one to the next).
    """

    index: int
    p_value: float
    q_hat: float
    mean_before: float
    mean_after: float

    @property
    def relative_change(self) -> float:
        if self.mean_before == 0:
            return 0.0 if self.mean_after == 0 else math.copysign(math.inf, self.mean_after)
        return self.mean_after / self.mean_before - 1.0


def best_split(values: np.ndarray, min_size: int, alpha: float = 1.0) -> tuple[int, float] | None:
    """(tau, q) maximising the divergence between values[:tau] and values[tau:kappa].

    As Matteson and James define it, kappa (the end of the right-hand side) is searched too,
    so a shift that later reverts is still seen. With X = values[:tau], Y = values[tau:kappa],
    n = |X|, m = |Y|: q = n m / (n + m) * (2/(n m) sum|X-Y|^a - sum_{i<k}|X_i-X_k|^a / C(n,2)
    - sum_{j<k}|Y_j-Y_k|^a / C(m,2)). Every (tau, kappa) is evaluated at once from a 2-d
    prefix sum of the pairwise distances. None when the segment is too short to split.
    """
    size = len(values)
    if size < 2 * min_size:
        return None
    dist = np.abs(values[:, None] - values[None, :])
    if alpha != 1.0:
        dist = dist**alpha
    # prefix[a, b] = sum of d(i, j) over i < j, i < a, j < b; pairs within [a, b) are then
    # prefix[b, b] - prefix[a, b].
    prefix = np.zeros((size + 1, size + 1))
    prefix[1:, 1:] = np.cumsum(np.cumsum(np.triu(dist, k=1), axis=0), axis=1)
    taus = np.arange(min_size, size - min_size + 1)[:, None]
    kappas = np.arange(2 * min_size, size + 1)[None, :]
    diagonal = np.diagonal(prefix)
    within_x = diagonal[taus]
    within_y = diagonal[kappas] - prefix[taus, kappas]
    between = prefix[taus, kappas] - within_x
    n = taus.astype(float)
    m = (kappas - taus).astype(float)
    valid = m >= min_size
    m_safe = np.where(valid, m, 2.0)
    energy = (
        2.0 * between / (n * m_safe)
        - within_x / (n * (n - 1) / 2)
        - within_y / (m_safe * (m_safe - 1) / 2)
    )
    q = np.where(valid, n * m_safe / (n + m_safe) * energy, -np.inf)
    row, _col = np.unravel_index(int(np.argmax(q)), q.shape)
    return int(taus[row, 0]), float(q.max())


def _best_over(
    values: np.ndarray, bounds: Sequence[int], config: ChangePointConfig
) -> tuple[int, float] | None:
    best: tuple[int, float] | None = None
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        found = best_split(values[start:end], config.min_size, config.alpha)
        if found is not None and (best is None or found[1] > best[1]):
            best = (start + found[0], found[1])
    return best


def _p_value(
    values: np.ndarray,
    bounds: Sequence[int],
    observed_q: float,
    config: ChangePointConfig,
    rng: np.random.Generator,
) -> float:
    """Share of within-segment shuffles whose best q reaches the observed one.

    Stops as soon as the p-value can no longer reach `sig_level` (then the figure returned
    is a lower bound, above `sig_level`: enough to reject the split, and never reported).
    """
    give_up = config.sig_level * (config.permutations + 1)
    reached = 0
    for _ in range(config.permutations):
        shuffled = values.copy()
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            rng.shuffle(shuffled[start:end])
        best = _best_over(shuffled, bounds, config)
        if best is not None and best[1] >= observed_q * (1 - 1e-12):
            reached += 1
            if reached + 1 > give_up:
                break
    return (reached + 1) / (config.permutations + 1)


def e_divisive(
    values: Sequence[float], config: ChangePointConfig | None = None
) -> tuple[ChangePoint, ...]:
    """Every significant change point of `values` in index order (NaN values not allowed)."""
    config = config or ChangePointConfig()
    series = np.asarray(values, dtype=float)
    if series.ndim != 1 or not np.all(np.isfinite(series)):
        raise ValueError("values must be a 1-d series of finite numbers")
    rng = np.random.default_rng(config.seed)
    found: dict[int, tuple[float, float]] = {}
    while True:
        bounds = [0, *sorted(found), len(series)]
        best = _best_over(series, bounds, config)
        if best is None or best[1] <= 0:
            break
        p = _p_value(series, bounds, best[1], config, rng)
        if p > config.sig_level:
            break
        found[best[0]] = (p, best[1])
    cuts = [0, *sorted(found), len(series)]
    points = []
    for i, index in enumerate(cuts[1:-1], start=1):
        p, q = found[index]
        points.append(
            ChangePoint(
                index=index,
                p_value=p,
                q_hat=q,
                mean_before=float(series[cuts[i - 1] : index].mean()),
                mean_after=float(series[index : cuts[i + 1]].mean()),
            )
        )
    return tuple(points)
