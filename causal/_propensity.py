"""Propensity models: the probability of the treated value given the adjustment set's dummies.

One model choice serves ipw, aipw, matching and the overlap table, so what the table
shows is what the estimators weighted and matched on. "logistic" is the maximum
likelihood fit; sklearn's default ("logistic_l2", kept for comparison) shrinks the
coefficients toward 0, pulling the propensities toward the overall share and leaving
part of the confounding in the ipw estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

Propensity = Literal["logistic", "logistic_l2", "gradient_boosting"]

PROPENSITY_BOUNDS = (0.05, 0.95)
"""Where ipw and aipw clip the propensity (dowhy's default), so no weight exceeds 20."""

_TOLERANCE = 1e-10
"""Of the logistic fits: sklearn's default (1e-4) leaves the propensities some 1e-5 from the optimum."""


def _logistic(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    # C=inf is sklearn's spelling of "no penalty" (penalty=None is deprecated since 1.8). Newton's
    # method on these few dummy columns is some 50 times faster than the default lbfgs.
    return LogisticRegression(C=np.inf, solver="newton-cholesky", tol=_TOLERANCE)


def _logistic_l2(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(solver="newton-cholesky", tol=_TOLERANCE)  # sklearn's default penalty, C=1


def _gradient_boosting(seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(random_state=seed)


PROPENSITY_MODELS: dict[str, Callable[[int], Any]] = {
    "logistic": _logistic,
    "logistic_l2": _logistic_l2,
    "gradient_boosting": _gradient_boosting,
}
"""Unfitted sklearn classifier per name; the seed matters only where the model is random."""

LOGISTIC_MODELS = ("logistic", "logistic_l2")
"""Models fitted by (asymptotically) logistic maximum likelihood, so ipw can count the fit in its variance."""


def propensity_model(name: Propensity, seed: int) -> Any:
    """A fresh, unfitted classifier of kind `name` (also handed to dowhy, which fits its own copy)."""
    return PROPENSITY_MODELS[name](seed)


def fit_propensity(features: np.ndarray, treated: np.ndarray, name: Propensity, seed: int) -> np.ndarray:
    """Fitted probability of the treated value per document, unclipped.

    Without features (empty or constant adjustment set) it is the treated share.
    """
    if features.shape[1] == 0:
        return np.full(treated.size, treated.mean())
    model = propensity_model(name, seed).fit(features, treated.astype(np.int64))
    return model.predict_proba(features)[:, 1]


def clip_propensity(propensity: np.ndarray) -> np.ndarray:
    """The propensity clipped to `PROPENSITY_BOUNDS`, as ipw and aipw use it."""
    return np.clip(propensity, *PROPENSITY_BOUNDS)
