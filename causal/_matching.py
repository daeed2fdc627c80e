"""Nearest-neighbour matching on the propensity score, with replacement, and its Abadie-Imbens variance.

Each document's missing potential outcome is the mean outcome of the other arm's
documents nearest in propensity; all documents tied at the nearest distance are used
(as in Abadie and Imbens' nnmatch), so with a propensity that is a function of the
strata a document is matched to every document of the other arm sharing its propensity.
The bootstrap is invalid for nearest-neighbour matching (Abadie and Imbens, 2008); the
variance is their analytic one (Abadie and Imbens, 2006), generalised to ties, which
counts how often each document serves as a match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from causal._adjusted import AdjustedEstimate, Sample, Target

_TIE = 1e-10
"""Propensities this close count as equal: the same stratum can be fitted a few ulps apart."""


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class _Matches:
    imputed: np.ndarray  # per source document: mean outcome of its matches in the pool
    uses: np.ndarray  # per pool document: K, the sum over the sources it matches of 1 / (their number of matches)
    squared_uses: np.ndarray  # per pool document: the sum of 1 / (their number of matches)^2


def _tied_range(pool: np.ndarray, score: np.ndarray, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index range, in the sorted pool, of the pool scores within `distance` (plus ties) of `score`."""
    low = np.searchsorted(pool, score - distance - _TIE, side="left")
    return low, np.searchsorted(pool, score + distance + _TIE, side="right")


def _range_sums(low: np.ndarray, high: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """For each of `size` positions, the sum of `values` over the ranges [low, high) that cover it."""
    steps = np.zeros(size + 1)
    np.add.at(steps, low, values)
    np.add.at(steps, high, -values)
    return np.cumsum(steps)[:size]


def _match(source: np.ndarray, pool: np.ndarray, pool_outcome: np.ndarray) -> _Matches:
    order = np.argsort(pool, kind="stable")
    sorted_pool, cumulative = pool[order], np.concatenate([[0.0], np.cumsum(pool_outcome[order])])
    position = np.searchsorted(sorted_pool, source)
    left = sorted_pool[np.maximum(position - 1, 0)]
    right = sorted_pool[np.minimum(position, pool.size - 1)]
    low, high = _tied_range(sorted_pool, source, np.minimum(np.abs(source - left), np.abs(right - source)))
    share = 1.0 / (high - low)
    uses, squared_uses = np.empty(pool.size), np.empty(pool.size)
    uses[order] = _range_sums(low, high, share, pool.size)
    squared_uses[order] = _range_sums(low, high, share**2, pool.size)
    return _Matches((cumulative[high] - cumulative[low]) * share, uses, squared_uses)


def _conditional_variance(score: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Per document: J/(J+1) (y - mean of its J nearest same-arm neighbours)^2, ties included.

    Abadie and Imbens' (2006) estimate of the outcome variance at the document's
    propensity, from its own arm; it needs at least two documents in the arm.
    """
    order = np.argsort(score, kind="stable")
    s, y = score[order], outcome[order]
    gaps = np.diff(s)
    nearest = np.minimum(np.concatenate([[np.inf], gaps]), np.concatenate([gaps, [np.inf]]))
    low, high = _tied_range(s, s, nearest)
    cumulative = np.concatenate([[0.0], np.cumsum(y)])
    neighbours = high - low - 1
    mean = (cumulative[high] - cumulative[low] - y) / neighbours
    variance = np.empty(score.size)
    variance[order] = neighbours / (neighbours + 1) * (y - mean) ** 2
    return variance


def propensity_matching(sample: Sample, targets: tuple[Target, ...]) -> dict[Target, AdjustedEstimate]:
    """Matching estimate per target population with the Abadie-Imbens standard error.

    With K the (tie-weighted) number of times a document is used as a match, K' the sum
    of its squared tie weights and sigma^2 its conditional variance, the variance is
    (sum over the population of (effect_i - effect)^2 + sum over the matches used of
    (K^2 + c K - K') sigma^2) / n^2, with c = 2 for ate (every document is both matched
    and a match) and 0 for att and atc.
    """
    y, t, e = sample.outcome, sample.treated, sample.propensity
    for_treated = _match(e[t], e[~t], y[~t])  # reference documents matched to each treated one
    for_reference = _match(e[~t], e[t], y[t])
    treated_outcome, reference_outcome = y.copy(), y.copy()
    treated_outcome[~t], reference_outcome[t] = for_reference.imputed, for_treated.imputed
    differences = treated_outcome - reference_outcome
    uses, squared_uses, variance = np.empty(y.size), np.empty(y.size), np.empty(y.size)
    uses[~t], uses[t] = for_treated.uses, for_reference.uses
    squared_uses[~t], squared_uses[t] = for_treated.squared_uses, for_reference.squared_uses
    variance[t], variance[~t] = _conditional_variance(e[t], y[t]), _conditional_variance(e[~t], y[~t])
    matched = {"ate": np.ones_like(t), "att": ~t, "atc": t}  # documents whose uses count for the target
    estimates = {}
    for target in targets:
        members = sample.population(target)
        effect = float(differences[members].mean())
        extra = 2 * uses if target == "ate" else 0
        spread = np.sum((differences[members] - effect) ** 2)
        reuse = np.sum(((uses**2 + extra - squared_uses) * variance)[matched[target]])
        estimates[target] = AdjustedEstimate(effect, math.sqrt(float(spread + reuse)) / members.sum())
    return estimates
