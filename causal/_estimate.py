"""ATE, CATE and heterogeneity rows from a table of per-unit paired differences."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import get_args

import numpy as np
import pandas as pd

from causal._heterogeneity import heterogeneity_wald
from causal._paired import (
    DEFAULT_BOOTSTRAP_METHOD,
    BootstrapMethod,
    Interval,
    bootstrap_interval,
    exact_interval,
    t_interval,
)
from causal._results import EffectEstimate, EffectTable
from causal.errors import EstimationError


@dataclass(frozen=True)
class _Settings:
    treatment: str
    contrast: str
    estimand: str
    exact: bool
    level: float
    n_bootstrap: int
    bootstrap_method: BootstrapMethod
    seed: int


@dataclass(frozen=True)
class _PairedUnits:
    differences: np.ndarray
    weights: np.ndarray | None
    strata: Mapping[str, tuple[np.ndarray, tuple[str, ...]]]  # moderator -> (labels, order)


def estimate_paired_effects(
    paired: pd.DataFrame,
    *,
    treatment: str,
    contrast: str,
    estimand: str = "total",
    moderators: Sequence[str] = (),
    exact: bool = False,
    level: float = 0.95,
    n_bootstrap: int = 2000,
    bootstrap_method: BootstrapMethod = DEFAULT_BOOTSTRAP_METHOD,
    seed: int = 0,
) -> EffectTable:
    """Average and per-stratum effects, with intervals, from paired differences.

    `paired` holds one row per unit: "difference" (Y(arm a) - Y(arm b)), "weight"
    (used when `exact`) and one column of stratum labels per moderator; it is not
    modified. Sampled units give "t" and "bootstrap" rows for the ATE and every
    stratum, plus one "wald_hc3" heterogeneity row per moderator with two or more
    strata; `bootstrap_method` says how the "bootstrap" rows' intervals are read off the
    resamples (see `causal._paired.BootstrapMethod`). Enumerated units (`exact`) give
    weighted means with no sampling error.
    Each set of units draws its bootstrap from its own stream derived from `seed`, so
    adding a moderator leaves the other rows unchanged.
    """
    settings = _Settings(
        treatment,
        contrast,
        estimand,
        exact,
        _check_level(level),
        _check_n_bootstrap(n_bootstrap),
        _check_bootstrap_method(bootstrap_method),
        _check_seed(seed),
    )
    units = _read_paired(paired, moderators=moderators, exact=exact)
    rows = _interval_rows(settings, units.differences, units.weights, moderator=None, stratum=None)
    for moderator, (labels, order) in units.strata.items():
        for stratum in order:
            in_stratum = labels == stratum
            weights = None if units.weights is None else units.weights[in_stratum]
            rows += _interval_rows(
                settings, units.differences[in_stratum], weights, moderator=moderator, stratum=stratum
            )
        if not exact and len(order) > 1:
            rows.append(_heterogeneity_row(settings, units.differences, labels, moderator=moderator))
    return EffectTable(tuple(rows))


def _interval_rows(
    settings: _Settings,
    differences: np.ndarray,
    weights: np.ndarray | None,
    *,
    moderator: str | None,
    stratum: str | None,
) -> list[EffectEstimate]:
    """ATE rows (no moderator) or CATE rows of one stratum, one per interval method."""
    if settings.exact:
        intervals: dict[str, Interval] = {"exact": exact_interval(differences, weights)}
    else:
        rng = _stream(settings.seed, moderator=moderator, stratum=stratum)
        intervals = {
            "t": t_interval(differences, level=settings.level),
            "bootstrap": bootstrap_interval(
                differences,
                level=settings.level,
                n_bootstrap=settings.n_bootstrap,
                rng=rng,
                bootstrap_method=settings.bootstrap_method,
            ),
        }
    return [
        EffectEstimate(
            analysis="ate" if moderator is None else "cate",
            estimand=settings.estimand,
            treatment=settings.treatment,
            contrast=settings.contrast,
            moderator=moderator,
            stratum=stratum,
            estimate=interval.estimate,
            ci_low=interval.ci_low,
            ci_high=interval.ci_high,
            std_error=interval.std_error,
            p_value=interval.p_value,
            n_units=int(differences.size),
            method=method,
            level=settings.level,
        )
        for method, interval in intervals.items()
    ]


def _heterogeneity_row(
    settings: _Settings,
    differences: np.ndarray,
    labels: np.ndarray,
    *,
    moderator: str,
) -> EffectEstimate:
    test = heterogeneity_wald(differences, labels)
    return EffectEstimate(
        analysis="heterogeneity",
        estimand=settings.estimand,
        treatment=settings.treatment,
        contrast=settings.contrast,
        moderator=moderator,
        stratum=None,
        estimate=test.statistic,
        ci_low=math.nan,
        ci_high=math.nan,
        std_error=math.nan,
        p_value=test.p_value,
        n_units=int(differences.size),
        method="wald_hc3",
        level=settings.level,
    )


def _stream(seed: int, *, moderator: str | None, stratum: str | None) -> np.random.Generator:
    """Generator for one set of units, keyed by its name so streams never collide."""
    key = repr((moderator, stratum)).encode()
    digest = int.from_bytes(hashlib.sha256(key).digest()[:8], "little")
    return np.random.default_rng([seed, digest])


def _read_paired(paired: pd.DataFrame, *, moderators: Sequence[str], exact: bool) -> _PairedUnits:
    if not isinstance(paired, pd.DataFrame):
        raise EstimationError(f"paired must be a pandas DataFrame; got {type(paired).__name__}")
    if len(paired) == 0:
        raise EstimationError("paired has no rows; it needs one row per unit with a 'difference' column")
    if isinstance(moderators, str):
        raise EstimationError(
            f"moderators must be a sequence of column names; got {moderators!r} (write [{moderators!r}])"
        )
    if len(set(moderators)) != len(moderators):
        raise EstimationError(f"moderators must be distinct; got {list(moderators)}")
    required = ["difference", *(["weight"] if exact else []), *moderators]
    missing = [column for column in required if column not in paired.columns]
    if missing:
        raise EstimationError(f"paired must have column(s) {missing}; it has {list(paired.columns)}")
    differences = _finite_column(paired, "difference")
    weights = _finite_column(paired, "weight") if exact else None
    if weights is not None and np.any(weights <= 0):
        raise EstimationError(
            f"paired['weight'] must be positive in exact mode; got {weights[weights <= 0][:5].tolist()}"
        )
    return _PairedUnits(differences, weights, {moderator: _strata(paired[moderator]) for moderator in moderators})


def _finite_column(paired: pd.DataFrame, column: str) -> np.ndarray:
    try:
        values = paired[column].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise EstimationError(f"paired[{column!r}] must be numeric; got dtype {paired[column].dtype}") from error
    bad = paired.index[~np.isfinite(values)]
    if len(bad):
        raise EstimationError(
            f"paired[{column!r}] must be finite; {len(bad)} row(s) are not, "
            f"first at index {bad[0]!r}. Drop or re-evaluate those units."
        )
    return values


def _strata(labels: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """Stratum labels as strings, in category order when categorical, else sorted."""
    if labels.isna().any():
        raise EstimationError(
            f"moderator column {labels.name!r} must label every unit; {int(labels.isna().sum())} row(s) are missing"
        )
    text = labels.astype(str).to_numpy(dtype=object)
    present = set(text)
    if isinstance(labels.dtype, pd.CategoricalDtype):
        order = tuple(str(c) for c in labels.cat.categories if str(c) in present)
    else:
        order = tuple(sorted(present))
    return text, order


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, Real) or not 0 < level < 1:
        raise EstimationError(f"level must lie strictly between 0 and 1; got {level!r} (e.g. 0.95)")
    return float(level)


def _check_n_bootstrap(n_bootstrap: int) -> int:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, Integral) or n_bootstrap < 2:
        raise EstimationError(f"n_bootstrap must be an integer >= 2; got {n_bootstrap!r} (e.g. 2000)")
    return int(n_bootstrap)


def _check_bootstrap_method(method: BootstrapMethod) -> BootstrapMethod:
    if method not in get_args(BootstrapMethod):
        raise EstimationError(f"bootstrap_method must be one of {list(get_args(BootstrapMethod))}; got {method!r}")
    return method


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise EstimationError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)
