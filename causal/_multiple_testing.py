"""Multiple-testing correction that tolerates rows without a p-value."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from causal.errors import EstimationError


def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def _benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    scaled = len(p) / np.arange(1, len(p) + 1) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return adjusted


# Written out rather than taken from statsmodels' multipletests, which runs gc.collect()
# on every call (about 0.2 s each in a process holding a model).
_METHODS = {"holm": _holm, "bh": _benjamini_hochberg}


def adjust_p_values(p_values: ArrayLike, *, method: Literal["holm", "bh"]) -> np.ndarray:
    """Adjust the finite p-values as one family (Holm or Benjamini-Hochberg).

    nan entries mark rows that are not tests: they stay nan and do not count toward
    the family size.
    """
    if method not in _METHODS:
        raise EstimationError(f"correction method must be one of {sorted(_METHODS)}; got {method!r}")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise EstimationError(f"p_values must be one-dimensional; got shape {p.shape}")
    tested = ~np.isnan(p)
    outside = p[tested & ~((p >= 0) & (p <= 1))]
    if outside.size:
        raise EstimationError(f"p_values must lie in [0, 1] or be nan; got {outside.tolist()}")
    adjusted = np.full_like(p, np.nan)
    if tested.any():
        adjusted[tested] = _METHODS[method](p[tested])
    return adjusted
