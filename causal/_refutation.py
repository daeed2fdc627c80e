"""dowhy's refuters on the observational regression and ipw: placebo treatment, random common cause, subsets.

dowhy re-runs an estimator it implements, so each refuted method is handed to it as
dowhy's own version of the same estimator: its LinearRegressionEstimator with the
adjustment dummies as effect modifiers (the treatment interactions; its estimate is
the mean predicted difference, as in g-computation) and its
PropensityScoreWeightingEstimator with the chosen propensity model and clipping. The
data is a 0/1 treatment column, the outcome and the dummies, named as in the estimand;
dowhy gets copies, because its estimators add columns to the frames they are handed.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from causal._propensity import PROPENSITY_BOUNDS, Propensity, propensity_model

Refuter = Literal["placebo_treatment", "random_common_cause", "data_subset"]

REFUTED = ("regression", "ipw")
"""The methods dowhy can re-run."""
REFUTERS = ("placebo_treatment", "random_common_cause", "data_subset")


def dowhy_estimate(
    data: pd.DataFrame,
    estimand: Any,
    dummies: tuple[str, ...],
    method: str,
    propensity: Propensity,
    seed: int,
) -> Any:
    """dowhy's estimate of `method` ("regression" or "ipw") on `data`, for its refuters to re-run."""
    from dowhy.causal_estimator import estimate_effect
    from dowhy.causal_estimators.linear_regression_estimator import LinearRegressionEstimator
    from dowhy.causal_estimators.propensity_score_weighting_estimator import PropensityScoreWeightingEstimator

    if method == "regression":
        estimator, modifiers = LinearRegressionEstimator(estimand, need_conditional_estimates=False), dummies
    else:
        low, high = PROPENSITY_BOUNDS
        model = propensity_model(propensity, seed)
        estimator = PropensityScoreWeightingEstimator(
            estimand, min_ps_score=low, max_ps_score=high, propensity_score_model=model
        )
        modifiers = ()
    return estimate_effect(
        data.copy(),
        estimand.treatment_variable,
        estimand.outcome_variable,
        "backdoor",
        estimator,
        control_value=0,
        treatment_value=1,
        effect_modifiers=list(modifiers),
        method_params={},
    )


def refute(
    data: pd.DataFrame, estimand: Any, estimate: Any, refuter: str, method: str, seed: int, n_simulations: int
) -> dict[str, Any]:
    """One refuter's verdict on dowhy's `estimate` of `method`: a record of `REFUTATION_COLUMNS` but the labels."""
    from dowhy.causal_refuters.data_subset_refuter import refute_data_subset
    from dowhy.causal_refuters.placebo_treatment_refuter import PlaceboType, refute_placebo_treatment
    from dowhy.causal_refuters.random_common_cause import refute_random_common_cause

    # A RandomState object, not an int: dowhy reseeds every simulation with an int (same subset
    # each time) and draws unpermuted placebos from numpy's global generator.
    state = np.random.RandomState(_stream(seed, method, refuter).integers(2**32))
    common = dict(num_simulations=n_simulations, random_state=state)
    if refuter == "placebo_treatment":
        result = refute_placebo_treatment(
            data.copy(), estimand, estimate, estimand.treatment_variable, placebo_type=PlaceboType.PERMUTE, **common
        )
    elif refuter == "random_common_cause":
        result = refute_random_common_cause(data.copy(), estimand, estimate, **common)
    else:
        result = refute_data_subset(data.copy(), estimand, estimate, subset_fraction=0.8, **common)
    return {
        "method": method,
        "refuter": refuter,
        "estimate": float(result.estimated_effect),
        "new_effect": float(result.new_effect),
        "p_value": float(result.refutation_result["p_value"]),
    }


def _stream(seed: int, method: str, refuter: str) -> np.random.Generator:
    """Generator keyed by fixed registry positions, so asking for fewer refuters changes no other number."""
    keys = (*REFUTED, *REFUTERS)
    return np.random.default_rng([seed, keys.index(method), keys.index(refuter)])
