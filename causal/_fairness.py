"""Fairness metrics of a model's binary decisions: counterfactual and group-level.

A counterfactual flip rate asks how often intervening on a protected factor changes a unit's
decision; group metrics (demographic parity, disparate impact, equal opportunity) compare
decision rates across the factor's values in the population, the figures audits ask for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from causal._format import format_fairness_estimate
from causal._linking import _records
from causal._proportions import as_binary, difference_interval, proportion_interval
from causal.errors import EstimationError

FAIRNESS_COLUMNS = (
    "metric",
    "factor",
    "contrast",
    "value",
    "estimate",
    "ci_low",
    "ci_high",
    "n_units",
    "four_fifths_violated",
)

Metric = Literal[
    "flip_rate",
    "positive_rate",
    "demographic_parity_difference",
    "disparate_impact_ratio",
    "true_positive_rate",
    "equal_opportunity_difference",
]

FOUR_FIFTHS = 0.8
"""The four-fifths rule: a disparate impact ratio below it is flagged."""


@dataclass(frozen=True)
class FairnessMetric:
    """One fairness figure: a row of fairness.csv (`FAIRNESS_COLUMNS`).

    flip_rate: share of units whose decision under do(a) differs from that under do(b), for
    `contrast` "a vs b" of treatment `factor`. positive_rate / true_positive_rate: the rate of
    positive decisions (among units labelled positive, for the latter) for `value` of `factor`.
    demographic_parity_difference / equal_opportunity_difference: highest minus lowest of those
    rates, `contrast` naming the two values ("highest vs lowest"). disparate_impact_ratio: lowest
    over highest positive rate (`contrast` "lowest vs highest"), with `four_fifths_violated`
    when below 0.8; nan and unflagged (None, as on every other metric) when undefined: no
    positive decisions in either group, or fewer than two values. Its CI is not computed
    (nan). CIs are Clopper-Pearson for rates and Newcombe for differences (of the two values
    compared, taken as given: choosing them as the extremes is not accounted for); zero-width
    for weighted (enumerated) units, which carry no sampling error.
    """

    metric: Metric
    factor: str
    contrast: str | None
    value: str | None
    estimate: float
    ci_low: float
    ci_high: float
    n_units: int
    four_fifths_violated: bool | None = None

    def summary(self) -> str:
        """One line of plain text."""
        name = self.metric.replace("_", " ")
        where = f" ({self.contrast})" if self.contrast else f" = {self.value}" if self.value else ""
        interval = "" if math.isnan(self.ci_low) else f" [{self.ci_low:.3g}, {self.ci_high:.3g}]"
        flag = ""
        if self.four_fifths_violated is not None:
            flag = "; four-fifths rule violated" if self.four_fifths_violated else "; four-fifths rule met"
        estimate = format_fairness_estimate(self.metric, self.estimate, self.contrast, ".3g")
        return f"{self.factor}{where}: {name} {estimate}{interval}{flag} [n={self.n_units}]"

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True)
class FairnessTable:
    """Fairness figures in order, CIs at `level`."""

    metrics: tuple[FairnessMetric, ...]
    level: float

    @property
    def four_fifths_violations(self) -> tuple[str, ...]:
        """Factors whose disparate impact ratio falls below four fifths."""
        return tuple(m.factor for m in self.metrics if m.four_fifths_violated)

    def to_frame(self) -> pd.DataFrame:
        """One row per figure, columns exactly `FAIRNESS_COLUMNS`."""
        return _records(self.metrics, FAIRNESS_COLUMNS)

    def summary(self) -> str:
        """Plain text: one line per figure."""
        header = f"{len(self.metrics)} fairness figures ({self.level:.0%} CIs)"
        return "\n".join([header, *(m.summary() for m in self.metrics)])

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(index=False, float_format="{:.4g}".format)

    @classmethod
    def concat(cls, tables: Sequence[FairnessTable]) -> FairnessTable:
        """Join tables computed at one level, in order."""
        levels = {table.level for table in tables}
        if len(levels) != 1:
            raise EstimationError(f"tables to join must share one level; got levels {sorted(levels)}")
        return cls(tuple(m for table in tables for m in table.metrics), level=levels.pop())


def counterfactual_flip_rates(
    decisions: pd.DataFrame, *, weight: str | None = None, level: float = 0.95
) -> FairnessTable:
    """Share of units whose decision changes under each intervention, with a Clopper-Pearson CI.

    `decisions` has one row per (unit, treatment, contrast) with columns treatment, contrast,
    decision_treated and decision_reference (0/1). With `weight` (a column of unit
    probabilities, as in exact mode), the rate is the weighted share and the CI collapses to it.
    """
    _check_level(level)
    columns = ["treatment", "contrast", "decision_treated", "decision_reference"]
    _require(decisions, columns + ([weight] if weight else []), "decisions")
    rows = []
    for (treatment, contrast), group in decisions.groupby(["treatment", "contrast"], sort=False):
        flips = (
            as_binary(group["decision_treated"], "decision_treated")
            != as_binary(group["decision_reference"], "decision_reference")
        ).to_numpy(np.float64)
        estimate, ci_low, ci_high = _rate(flips, _weights(group, weight), level)
        rows.append(
            FairnessMetric("flip_rate", str(treatment), str(contrast), None, estimate, ci_low, ci_high, len(group))
        )
    return FairnessTable(tuple(rows), level=level)


def group_fairness(
    frame: pd.DataFrame,
    *,
    factor: str,
    decision: str = "decision",
    label: str | None = None,
    weight: str | None = None,
    level: float = 0.95,
) -> FairnessTable:
    """Decision rates per value of `factor` and the parity figures across them.

    Rows: positive_rate per value, demographic_parity_difference, disparate_impact_ratio
    (four-fifths flag), and, when `label` names a 0/1 ground-truth column, true_positive_rate
    per value and equal_opportunity_difference. Differences compare the highest and the lowest
    rate (nan with fewer than two values). With `weight` (unit probabilities, as in exact
    mode) rates are weighted and CIs collapse to the point.
    """
    _check_level(level)
    _require(frame, [factor, decision] + [c for c in (label, weight) if c], "frame")
    decided = as_binary(frame[decision], decision).to_numpy(np.float64)
    weights = _weights(frame, weight)
    values = frame[factor]
    rates = _value_rates("positive_rate", factor, values, decided, weights, level)
    rows = [*rates, *_parity(factor, rates, level, exact=weights is not None, ratio=True)]
    if label is not None:
        positive = (as_binary(frame[label], label) == 1).to_numpy()
        tprs = _value_rates(
            "true_positive_rate",
            factor,
            values[positive],
            decided[positive],
            None if weights is None else weights[positive],
            level,
        )
        rows += [*tprs, *_parity(factor, tprs, level, exact=weights is not None, ratio=False)]
    return FairnessTable(tuple(rows), level=level)


def _value_rates(
    metric: Metric, factor: str, values: pd.Series, decided: np.ndarray, weights: np.ndarray | None, level: float
) -> list[FairnessMetric]:
    """One rate per value present, in category order (else sorted by text)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        order = list(values.cat.categories)
    else:
        order = sorted(values.unique(), key=str)
    rows = []
    for value in order:
        chosen = (values == value).to_numpy()
        if not chosen.any():
            continue
        estimate, ci_low, ci_high = _rate(decided[chosen], None if weights is None else weights[chosen], level)
        rows.append(FairnessMetric(metric, factor, None, str(value), estimate, ci_low, ci_high, int(chosen.sum())))
    return rows


def _parity(
    factor: str, rates: list[FairnessMetric], level: float, *, exact: bool, ratio: bool
) -> list[FairnessMetric]:
    """Highest-minus-lowest rate (and lowest-over-highest when `ratio`) across the values."""
    difference: Metric = "demographic_parity_difference" if ratio else "equal_opportunity_difference"
    if len(rates) < 2:
        n = sum(r.n_units for r in rates)
        rows = [FairnessMetric(difference, factor, None, None, math.nan, math.nan, math.nan, n)]
        if ratio:
            rows.append(FairnessMetric("disparate_impact_ratio", factor, None, None, math.nan, math.nan, math.nan, n))
        return rows
    ranked = sorted(rates, key=lambda r: r.estimate)
    low, high = ranked[0], ranked[-1]
    gap, n = high.estimate - low.estimate, high.n_units + low.n_units
    if exact:
        ci_low = ci_high = gap
    else:
        ci_low, ci_high = difference_interval(
            round(high.estimate * high.n_units),
            high.n_units,
            round(low.estimate * low.n_units),
            low.n_units,
            level=level,
        )
    rows = [FairnessMetric(difference, factor, f"{high.value} vs {low.value}", None, gap, ci_low, ci_high, n)]
    if ratio:
        # Both rates 0 (the highest is 0): 0/0 is undefined, and neither passes nor fails the rule.
        impact = math.nan if high.estimate == 0 else low.estimate / high.estimate
        rows.append(
            FairnessMetric(
                "disparate_impact_ratio",
                factor,
                f"{low.value} vs {high.value}",
                None,
                impact,
                math.nan,
                math.nan,
                n,
                None if math.isnan(impact) else bool(impact < FOUR_FIFTHS),
            )
        )
    return rows


def _rate(outcomes: np.ndarray, weights: np.ndarray | None, level: float) -> tuple[float, float, float]:
    """Share of ones: Clopper-Pearson without weights, the exact weighted share with them."""
    if weights is None:
        successes, n = int(outcomes.sum()), outcomes.size
        return (successes / n, *proportion_interval(successes, n, level=level))
    share = float(np.dot(weights, outcomes) / weights.sum())
    return share, share, share


def _weights(frame: pd.DataFrame, weight: str | None) -> np.ndarray | None:
    """The weight column checked, or None when units are unweighted samples."""
    if weight is None:
        return None
    weights = frame[weight].to_numpy(np.float64)
    if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        raise EstimationError(
            f"weights in column {weight!r} must be finite, >= 0 and not all zero; got "
            f"min {weights.min()!r}, sum {weights.sum()!r}"
        )
    return weights


def _require(frame: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise EstimationError(f"{name} lacks columns {missing}; it has {list(frame.columns)}")
    if frame.empty:
        raise EstimationError(f"{name} is empty; fairness needs at least one unit")


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise EstimationError(f"level must lie strictly between 0 and 1; got {level!r}")
