"""Anytime-valid intervals for a mean effect that stay valid when the sample size is chosen by peeking.

A fixed-n interval (t, bootstrap) covers at its nominal rate only when the number of
units is fixed in advance. Drawing units in batches and stopping once the interval is
narrow enough, or looking after every batch, breaks that guarantee. A confidence
sequence covers the mean at every sample size at once, so it may be read after every
batch and stopped on at any data-dependent time.

The sequence here is the Gaussian-mixture asymptotic confidence sequence of
Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit theory
and asymptotic confidence sequences" (Ann. Statist. 52(6), 2024, Theorem 2.2): at
sample size t, with running mean m and standard deviation s,

    m +/- s * sqrt( 2 (t rho^2 + 1) / (t^2 rho^2) * log( sqrt(t rho^2 + 1) / alpha ) ),

two-sided at level 1 - alpha. Any rho > 0 keeps the guarantee; rho^2 =
(-2 log alpha + log(1 - 2 log alpha)) / t* (the paper's choice) makes it tightest near
t = t*. Writing s outside the root keeps rho free of the outcome's units: it equals the
form with s^2 inside the root for rho there equal to rho / s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd

from causal._estimate import _check_level
from causal._format import format_p_value
from causal._paired import is_constant
from causal.errors import EstimationError

SEQUENCE_COLUMNS = (
    "estimate",
    "ci_low",
    "ci_high",
    "half_width",
    "std_error",
    "p_value",
    "n_units",
    "level",
    "design_size",
    "method",
)


@dataclass(frozen=True)
class SequenceInterval:
    """The confidence sequence's interval after `n_units` units, and its anytime-valid test of zero.

    `half_width` is half of `ci_high - ci_low`; `std_error` is the plug-in s / sqrt(n);
    `p_value` is anytime-valid: rejecting H0 (mean 0) whenever it falls below 1 - level,
    at any look, keeps the error rate. Fewer than two units give nan (no spread to
    estimate), constant differences a degenerate interval at the mean.
    """

    estimate: float
    ci_low: float
    ci_high: float
    half_width: float
    std_error: float
    p_value: float
    n_units: int
    level: float
    design_size: int
    method: str = "asymptotic_cs"

    def to_frame(self) -> pd.DataFrame:
        """One-row frame with columns `SEQUENCE_COLUMNS`."""
        return pd.DataFrame(
            [{column: getattr(self, column) for column in SEQUENCE_COLUMNS}], columns=list(SEQUENCE_COLUMNS)
        )

    def summary(self) -> str:
        """One line of plain text describing the interval."""
        return (
            f"mean {self.estimate:.4g} [{self.ci_low:.4g}, {self.ci_high:.4g}] "
            f"(half width {self.half_width:.4g}, {self.level:.0%} anytime-valid, "
            f"{format_p_value(self.p_value, name='p')}) [{self.method}, n={self.n_units}, "
            f"tuned for n={self.design_size}]"
        )

    def __str__(self) -> str:
        return self.summary()


def confidence_sequence(
    differences: np.ndarray,
    *,
    level: float = 0.95,
    weights: np.ndarray | None = None,
    design_size: int = 500,
) -> SequenceInterval:
    """Anytime-valid interval for the mean of per-unit paired differences seen so far.

    Pass every difference drawn up to now (in any order: the interval depends on the
    count, mean and spread only). `design_size` is the sample size at which the
    sequence is tightest; any value keeps coverage, a value near the expected stopping
    size gives the narrowest interval there. `weights` (positive, one per unit) make
    the estimate the weighted mean, with the spread of its linearisation
    w_i (x_i - m) / mean(w), so constant weights give the unweighted interval.
    The guarantee is asymptotic, like a CLT interval: read it after tens of units.
    """
    values = _check_differences(differences)
    level = _check_level(level)
    design_size = _check_design_size(design_size)
    scaled_weights = _check_weights(weights, values.size)
    n = values.size
    estimate = float(np.dot(scaled_weights, values) / n)
    if n < 2:
        return SequenceInterval(estimate, math.nan, math.nan, math.nan, math.nan, math.nan, n, level, design_size)
    if is_constant(values):
        return SequenceInterval(
            estimate, estimate, estimate, 0.0, 0.0, 0.0 if estimate != 0 else 1.0, n, level, design_size
        )
    spread = math.sqrt(float(np.sum((scaled_weights * (values - estimate)) ** 2)) / (n - 1))
    alpha = 1 - level
    rho2 = (-2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))) / design_size
    inflation = n * rho2 + 1
    half_width = spread * math.sqrt(2 * inflation / (n * n * rho2) * math.log(math.sqrt(inflation) / alpha))
    # With rho held at this level's tuning, the smallest alpha whose sequence excludes zero
    # (the inverse of the Gaussian mixture martingale at mean 0): p <= alpha iff 0 is outside.
    log_p = 0.5 * math.log(inflation) - (n * n * rho2 * estimate**2) / (2 * spread**2 * inflation)
    return SequenceInterval(
        estimate=estimate,
        ci_low=estimate - half_width,
        ci_high=estimate + half_width,
        half_width=half_width,
        std_error=spread / math.sqrt(n),
        p_value=math.exp(min(log_p, 0.0)),
        n_units=n,
        level=level,
        design_size=design_size,
    )


def _check_differences(differences: np.ndarray) -> np.ndarray:
    try:
        values = np.asarray(differences, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise EstimationError(f"differences must be numeric; got {type(differences).__name__}") from error
    if values.ndim != 1 or values.size == 0:
        raise EstimationError(
            f"differences must be a non-empty 1-D array (one value per unit); got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise EstimationError(
            f"differences must be finite; {int(np.sum(~np.isfinite(values)))} value(s) are not, "
            f"first at position {int(np.flatnonzero(~np.isfinite(values))[0])}. "
            "Drop or re-evaluate those units."
        )
    return values


def _check_weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    """Weights rescaled to mean 1 (all ones when None)."""
    if weights is None:
        return np.ones(n)
    values = np.asarray(weights, dtype=np.float64)
    if values.shape != (n,):
        raise EstimationError(f"weights must hold one value per difference, shape ({n},); got shape {values.shape}")
    if not np.all(np.isfinite(values) & (values > 0)):
        bad = values[~(np.isfinite(values) & (values > 0))]
        raise EstimationError(f"weights must be finite and positive; got {bad[:5].tolist()}")
    return values / values.mean()


def _check_design_size(design_size: int) -> int:
    if isinstance(design_size, bool) or not isinstance(design_size, Integral) or design_size < 1:
        raise EstimationError(
            f"design_size must be a positive integer (the sample size where the sequence is "
            f"tightest); got {design_size!r} (e.g. 500)"
        )
    return int(design_size)
