"""Wald test that the mean paired difference is equal across strata of a moderator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from causal._paired import is_constant


@dataclass(frozen=True)
class WaldTest:
    """Wald chi-square statistic and its p-value."""

    statistic: float
    p_value: float


def heterogeneity_wald(differences: np.ndarray, strata: np.ndarray) -> WaldTest:
    """Test H0: all stratum means are equal, from OLS on stratum dummies with HC3 errors.

    HC3 keeps the test valid when strata differ in size and variance. Degenerate
    inputs follow the rule for constant differences: strata known exactly (constant)
    with different values give statistic inf and p 0; all strata constant and equal
    give 0 and p 1. The HC3 covariance is undefined for a stratum with one unit and
    singular for several constant strata beside noisy ones; those give nan.
    """
    labels, codes = np.unique(strata, return_inverse=True)
    groups = [differences[codes == j] for j in range(labels.size)]
    if min(group.size for group in groups) < 2:
        return WaldTest(math.nan, math.nan)
    constants = [float(group[0]) for group in groups if is_constant(group)]
    if len(set(constants)) > 1:
        return WaldTest(math.inf, 0.0)
    if len(constants) == len(groups):
        return WaldTest(0.0, 1.0)
    if len(constants) > 1:
        return WaldTest(math.nan, math.nan)

    from statsmodels.regression.linear_model import OLS

    dummies = codes[:, None] == np.arange(1, labels.size)
    design = np.column_stack([np.ones(codes.size), dummies]).astype(np.float64)
    fit = OLS(differences, design).fit(cov_type="HC3")
    test = fit.wald_test(np.eye(labels.size)[1:], scalar=True, use_f=False)
    return WaldTest(float(test.statistic), float(test.pvalue))
