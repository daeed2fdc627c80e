"""Inverse propensity weighting: the Hajek (self-normalised) weighted difference of the arms' means.

Each arm's mean is weighted to stand for the target population: for all documents
(ate) treated 1/e and reference 1/(1-e); for the treated (att) reference e/(1-e); for
the reference documents (atc) treated (1-e)/e. The propensity is clipped to
`PROPENSITY_BOUNDS` first, as dowhy's PropensityScoreWeightingEstimator does (the same
estimator, which `estimate_observational` hands to dowhy's refuters).
"""

from __future__ import annotations

import numpy as np

from causal._adjusted import AdjustedEstimate, Sample, Target, from_influence
from causal._propensity import LOGISTIC_MODELS, PROPENSITY_BOUNDS, clip_propensity


def _weights(target: Target, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Treated weight and its derivative in the propensity's logit, then the same for the reference arm."""
    odds, inverse_odds = e / (1 - e), (1 - e) / e
    ones, zeros = np.ones_like(e), np.zeros_like(e)
    if target == "ate":
        return 1 / e, -inverse_odds, 1 / (1 - e), odds
    if target == "att":
        return ones, zeros, odds, odds
    return inverse_odds, -inverse_odds, ones, zeros


def hajek(sample: Sample, targets: tuple[Target, ...]) -> dict[Target, AdjustedEstimate]:
    """Weighted difference of means per target, with a sandwich standard error.

    For the logistic models (and without features, where the propensity is the treated
    share, an intercept-only logistic fit) the variance is that of the stacked estimating
    equations, propensity fit included (Lunceford and Davidian, 2004). For gradient
    boosting the propensities are treated as known, which overstates the variance of
    the ate estimate (and may misstate that of att and atc).
    """
    y, t = sample.outcome, sample.treated
    raw = sample.propensity
    e = clip_propensity(raw)
    low, high = PROPENSITY_BOUNDS
    moving = ((raw > low) & (raw < high)).astype(np.float64)  # clipped weights do not move with the fit
    design = np.column_stack([np.ones_like(y), sample.features])
    corrected = sample.propensity_model in LOGISTIC_MODELS or sample.features.shape[1] == 0
    if corrected:
        information = (design * (raw * (1 - raw))[:, None]).T @ design / y.size
        fit_influence = (design * (t - raw)[:, None]) @ np.linalg.pinv(information)
    estimates = {}
    for target in targets:
        w1, slope1, w0, slope0 = _weights(target, e)
        parts = []
        for arm, weight, slope in ((t, w1, slope1), (~t, w0, slope0)):
            mean = float(np.sum(arm * weight * y) / np.sum(arm * weight))
            residual = arm * (y - mean)
            influence = residual * weight
            if corrected:
                influence = influence + fit_influence @ ((residual * slope * moving) @ design / y.size)
            parts.append((mean, influence / np.mean(arm * weight)))
        (mean1, influence1), (mean0, influence0) = parts
        estimates[target] = from_influence(influence1 - influence0, mean1 - mean0)
    return estimates
