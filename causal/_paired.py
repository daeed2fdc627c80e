"""Intervals for the mean of per-unit paired differences.

Each function takes the differences of one set of units (all units, or one stratum)
and returns an `Interval`; fewer than two units give nan intervals (no spread to
estimate), constant differences a degenerate interval at the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

_MAX_DRAWS_PER_CHUNK = 1 << 22
"""Resampled values held at once by the bootstrap (about 32 MiB of indices)."""


@dataclass(frozen=True)
class Interval:
    """Point estimate, interval and test of H0: mean difference = 0 (nan when not a test)."""

    estimate: float
    ci_low: float
    ci_high: float
    std_error: float
    p_value: float


def is_constant(values: np.ndarray) -> bool:
    """True when every value is identical, so sampling variation is zero."""
    return bool(np.ptp(values) == 0)


def t_interval(differences: np.ndarray, *, level: float) -> Interval:
    """Paired t-interval and two-sided one-sample t-test of a zero mean."""
    n = differences.size
    mean = float(differences.mean())
    if n < 2:
        return _undefined(mean)
    if is_constant(differences):
        return Interval(mean, mean, mean, 0.0, 0.0 if mean != 0 else 1.0)
    std_error = float(differences.std(ddof=1) / math.sqrt(n))
    half_width = float(stats.t.ppf((1 + level) / 2, n - 1)) * std_error
    p_value = float(2 * stats.t.sf(abs(mean) / std_error, n - 1))
    return Interval(mean, mean - half_width, mean + half_width, std_error, p_value)


def bootstrap_interval(
    differences: np.ndarray,
    *,
    level: float,
    n_bootstrap: int,
    rng: np.random.Generator,
    max_draws_per_chunk: int = _MAX_DRAWS_PER_CHUNK,
) -> Interval:
    """Percentile bootstrap over units; `std_error` is the spread of resampled means.

    Resamples are drawn in chunks of at most `max_draws_per_chunk` values so memory
    stays bounded for large tables; the draws do not depend on the chunk size.
    """
    return bootstrap_intervals(
        differences[None, :], level=level, n_bootstrap=n_bootstrap, rng=rng, max_draws_per_chunk=max_draws_per_chunk
    )[0]


def bootstrap_intervals(
    rows: np.ndarray,
    *,
    level: float,
    n_bootstrap: int,
    rng: np.random.Generator,
    max_draws_per_chunk: int = _MAX_DRAWS_PER_CHUNK,
) -> list[Interval]:
    """Percentile bootstrap of each row's mean, every row resampled with the same unit draws.

    `rows` is (quantities, units): e.g. the indirect effect through each site, per unit.
    Sharing the draws across rows costs one set of resamples for a whole sweep.
    """
    quantities, n = rows.shape
    means = rows.mean(axis=1)
    if n < 2:
        return [_undefined(float(mean)) for mean in means]
    rows_per_chunk = max(1, max_draws_per_chunk // (n * quantities))
    chunk_rows = [min(rows_per_chunk, n_bootstrap - start) for start in range(0, n_bootstrap, rows_per_chunk)]
    resampled = np.concatenate(
        [rows[:, rng.integers(0, n, size=(count, n))].mean(axis=2) for count in chunk_rows], axis=1
    )
    lows, highs = np.quantile(resampled, [(1 - level) / 2, (1 + level) / 2], axis=1)
    spreads = resampled.std(axis=1, ddof=1)
    return [
        Interval(float(mean), float(mean), float(mean), 0.0, math.nan)
        if is_constant(row)
        else Interval(float(mean), float(low), float(high), float(spread), math.nan)
        for row, mean, low, high, spread in zip(rows, means, lows, highs, spreads, strict=True)
    ]


def exact_interval(differences: np.ndarray, weights: np.ndarray) -> Interval:
    """Weighted mean over enumerated units: the effect itself, with no sampling error."""
    mean = float(np.dot(weights, differences) / weights.sum())
    return Interval(mean, mean, mean, 0.0, math.nan)


def _undefined(mean: float) -> Interval:
    return Interval(mean, math.nan, math.nan, math.nan, math.nan)
