"""Exact matching on the adjustment set: within each stratum, the difference of the arms' means.

The effect on a population is the average of the stratum differences weighted by the
population's documents per stratum (all, treated or reference). Every stratum with
weight must hold both arms; `estimate_observational` checks that before calling.
"""

from __future__ import annotations

import math

import numpy as np

from causal._adjusted import AdjustedEstimate, Sample, Target


def _cells(sample: Sample, arm: np.ndarray, n_strata: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per stratum: documents of the arm, their mean outcome and its sampling variance.

    A stratum with one document of the arm borrows the arm's pooled within-stratum
    variance, so that a single document does not make the variance unknown.
    """
    codes, y = sample.strata[arm], sample.outcome[arm]
    count = np.bincount(codes, minlength=n_strata).astype(np.float64)
    total = np.bincount(codes, weights=y, minlength=n_strata)
    mean = np.divide(total, count, out=np.full(n_strata, np.nan), where=count > 0)
    squares = np.bincount(codes, weights=(y - mean[codes]) ** 2, minlength=n_strata)
    free = np.maximum(count - 1, 0)
    if free.sum() == 0:
        raise ValueError("every stratum has at most one document of an arm, so no within-stratum variance exists")
    pooled = squares.sum() / free.sum()
    variance = np.divide(squares, free, out=np.full(n_strata, pooled), where=free > 0)
    return count, mean, np.divide(variance, count, out=np.full(n_strata, np.nan), where=count > 0)


def exact_matching(sample: Sample, targets: tuple[Target, ...]) -> dict[Target, AdjustedEstimate]:
    """Stratified difference of means per target population, with its analytic variance.

    Variance: sum of w_s^2 (var_treated_s / n_treated_s + var_reference_s / n_reference_s)
    (the stratum differences) plus sum of w_s (effect_s - effect)^2 / n (the population's
    share of each stratum is itself estimated from its n documents).
    """
    n_strata = int(sample.strata.max()) + 1
    count1, mean1, spread1 = _cells(sample, sample.treated, n_strata)
    count0, mean0, spread0 = _cells(sample, ~sample.treated, n_strata)
    sizes = {"ate": count1 + count0, "att": count1, "atc": count0}
    estimates = {}
    for target in targets:
        size = sizes[target]
        weight, used = size / size.sum(), size > 0
        differences = (mean1 - mean0)[used]
        effect = float(weight[used] @ differences)
        variance = (
            weight[used] ** 2 @ (spread1 + spread0)[used] + weight[used] @ (differences - effect) ** 2 / size.sum()
        )
        estimates[target] = AdjustedEstimate(effect, math.sqrt(float(variance)))
    return estimates
