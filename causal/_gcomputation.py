"""G-computation: the outcome regression with treatment interactions, averaged over a population.

The outcome is regressed (OLS) on the treatment, the adjustment set's dummies and their
products with the treatment, so each stratum of every factor may have its own effect.
The effect on a population is the mean over its documents of the predicted difference
m1(x) - m0(x). A regression without the interactions would target a variance-weighted
average of the stratum effects, not the average effect, when the effect varies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from causal._adjusted import AdjustedEstimate, Sample, Target


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class OutcomeModel:
    """The fitted interacted regression: per-document predictions under each arm."""

    predicted_treated: np.ndarray  # m1(x): predicted outcome if the document had the treated value
    predicted_reference: np.ndarray  # m0(x): predicted outcome if it had the reference value
    covariance: np.ndarray  # HC1 covariance of the coefficients (intercept, treatment, dummies, products)


def fit_outcome_model(sample: Sample) -> OutcomeModel:
    """OLS of the outcome on [1, t, x, t*x] with a heteroskedasticity-robust (HC1) covariance.

    Strata with one arm only leave some products unidentified; the pseudo-inverse sets
    their coefficients to 0, so the model extrapolates the reference stratum's effect there.
    """
    import statsmodels.api as sm

    indicator = sample.treated.astype(np.float64)[:, None]
    ones = np.ones_like(indicator)

    def design(arm: np.ndarray) -> np.ndarray:
        return np.hstack([ones, arm, sample.features, arm * sample.features])

    fit = sm.OLS(sample.outcome, design(indicator)).fit(cov_type="HC1")
    return OutcomeModel(
        predicted_treated=design(ones) @ fit.params,
        predicted_reference=design(np.zeros_like(indicator)) @ fit.params,
        covariance=np.asarray(fit.cov_params()),
    )


def g_computation(sample: Sample, targets: tuple[Target, ...]) -> dict[Target, AdjustedEstimate]:
    """Mean predicted difference over each target population, with its delta-method standard error.

    The variance adds the coefficients' part (gradient' V gradient, the gradient being
    the population's mean of [0, 1, 0, x]) and the sampling of the population's
    documents (variance of the predicted differences over them, divided by their number).
    """
    model = fit_outcome_model(sample)
    differences = model.predicted_treated - model.predicted_reference
    k = sample.features.shape[1]
    estimates = {}
    for target in targets:
        members = sample.population(target)
        gradient = np.concatenate([[0.0, 1.0], np.zeros(k), sample.features[members].mean(axis=0)])
        effect = float(differences[members].mean())
        spread = float(np.sum((differences[members] - effect) ** 2)) / members.sum() ** 2
        estimates[target] = AdjustedEstimate(effect, math.sqrt(gradient @ model.covariance @ gradient + spread))
    return estimates
