"""Intervals for proportions and their differences (flip rates, decision rates, fidelities).

Small counts and rates at 0 or 1 are common here (a model that never flips), so the
intervals are the exact and score ones that stay valid there, not the normal approximation.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from causal.errors import EstimationError


def as_binary(column: pd.Series, name: str) -> pd.Series:
    """A 0/1 (or boolean) column as integers; anything else raises, naming the column."""
    bad = sorted({str(v) for v in column.unique()} - {"0", "1", "True", "False", "0.0", "1.0"})
    if bad:
        raise EstimationError(
            f"column {name!r} must hold 0/1 decisions or labels; got values {bad[:5]}; threshold the outcome first"
        )
    return column.astype(np.int64)


def proportion_interval(successes: int, n: int, *, level: float) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval of successes / n; nan when n is 0."""
    if n == 0:
        return math.nan, math.nan
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(interval.low), float(interval.high)


def difference_interval(successes_a: int, n_a: int, successes_b: int, n_b: int, *, level: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval of successes_a / n_a - successes_b / n_b.

    Built from the two Wilson intervals, so it stays inside [-1, 1] and keeps a width
    when a rate is 0 or 1. nan when either group is empty.
    """
    if n_a == 0 or n_b == 0:
        return math.nan, math.nan
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(
        successes_a, n_a, successes_b, n_b, method="newcomb", compare="diff", alpha=1 - level
    )
    return float(low), float(high)
