"""Multiple-testing correction that tolerates rows without a p-value."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from causal.errors import EstimationError

_STATSMODELS_METHODS = {"holm": "holm", "bh": "fdr_bh"}


def adjust_p_values(p_values: ArrayLike, *, method: Literal["holm", "bh"]) -> np.ndarray:
    """Adjust the finite p-values as one family (Holm or Benjamini-Hochberg).

    nan entries mark rows that are not tests: they stay nan and do not count toward
    the family size.
    """
    if method not in _STATSMODELS_METHODS:
        raise EstimationError(
            f"correction method must be one of {sorted(_STATSMODELS_METHODS)}; got {method!r}")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise EstimationError(f"p_values must be one-dimensional; got shape {p.shape}")
    tested = ~np.isnan(p)
    outside = p[tested & ~((p >= 0) & (p <= 1))]
    if outside.size:
        raise EstimationError(f"p_values must lie in [0, 1] or be nan; got {outside.tolist()}")
    adjusted = np.full_like(p, np.nan)
    if tested.any():
        from statsmodels.stats.multitest import multipletests

        adjusted[tested] = multipletests(p[tested], method=_STATSMODELS_METHODS[method])[1]
    return adjusted
