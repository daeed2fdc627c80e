"""Frozen result objects for effect estimates and their tabular form."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from causal._format import format_p_value, frame_text
from causal._multiple_testing import adjust_p_values

EFFECT_COLUMNS = (
    "outcome",
    "analysis",
    "estimand",
    "treatment",
    "contrast",
    "moderator",
    "stratum",
    "estimate",
    "ci_low",
    "ci_high",
    "std_error",
    "p_value",
    "p_adjusted",
    "n_units",
    "method",
    "reason",
)

Analysis = Literal["ate", "cate", "heterogeneity", "observational", "human_pairs", "confounding_gap"]
Method = Literal[
    "t",
    "bootstrap",
    "exact",
    "wald_hc3",
    "naive",
    "regression",
    "ipw",
    "aipw",
    "matching",
    "exact_matching",
    "regression_minus_t",
    "asymptotic_cs",
]
Correction = Literal["holm", "bh"]


@dataclass(frozen=True)
class EffectEstimate:
    """One reported effect or test: a row of `effects.csv`.

    `contrast` reads "a vs b" and the effect is Y(do a) - Y(do b). `p_value` is nan
    for rows that are not tests (bootstrap and exact rows); `p_adjusted` is filled by
    `EffectTable.corrected`. A row whose `reason` is set is not estimable: it says why
    (no document with both arms, no overlap, an estimator's error) and its numbers are nan.
    `outcome` names the outcome the row measures in a run of several (None: not named).
    """

    analysis: Analysis
    estimand: str
    treatment: str
    contrast: str
    moderator: str | None
    stratum: str | None
    estimate: float
    ci_low: float
    ci_high: float
    std_error: float
    p_value: float
    n_units: int
    method: Method
    level: float
    p_adjusted: float = math.nan
    reason: str | None = None
    outcome: str | None = None

    @classmethod
    def not_estimable(
        cls,
        reason: str,
        *,
        analysis: Analysis,
        estimand: str,
        treatment: str,
        contrast: str,
        method: Method,
        level: float,
        moderator: str | None = None,
        stratum: str | None = None,
        n_units: int = 0,
    ) -> EffectEstimate:
        """A row that keeps its place in the table and says why it has no number."""
        nan = math.nan
        return cls(
            analysis,
            estimand,
            treatment,
            contrast,
            moderator,
            stratum,
            nan,
            nan,
            nan,
            nan,
            nan,
            n_units,
            method,
            level,
            reason=reason,
        )

    @property
    def estimable(self) -> bool:
        """False for a row that only records why it could not be estimated."""
        return self.reason is None

    def to_frame(self) -> pd.DataFrame:
        """One-row frame with columns `EFFECT_COLUMNS`."""
        return _frame((self,))

    def summary(self) -> str:
        """One line of plain text describing the estimate."""
        subject = f"{self.estimand} effect of {self.treatment} ({self.contrast})"
        footer = f"[{self.method}, n={self.n_units}]"
        if self.reason is not None:
            return f"{self.analysis.upper()} {subject} [{self.method}]: not estimable: {self.reason}"
        if self.analysis == "heterogeneity":
            return (
                f"heterogeneity of the {subject} across {self.moderator}: "
                f"Wald chi2 = {self.estimate:.4g}, {_p_text(self)} {footer}"
            )
        where = "" if self.moderator is None else f" | {self.moderator} = {self.stratum}"
        tests = f", {_p_text(self)}" if math.isfinite(self.p_value) else ""
        return (
            f"{self.analysis.upper()} {subject}{where}: {self.estimate:.4g} "
            f"[{self.ci_low:.4g}, {self.ci_high:.4g}] ({self.level:.0%} CI{tests}) {footer}"
        )

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True)
class EffectTable:
    """An ordered family of estimates; `correction` names how `p_adjusted` was filled."""

    estimates: tuple[EffectEstimate, ...]
    correction: Correction | None = None

    def to_frame(self) -> pd.DataFrame:
        """One row per estimate, columns exactly `EFFECT_COLUMNS`."""
        return _frame(self.estimates)

    def summary(self) -> str:
        """Plain-text table of every estimate."""
        header = f"{len(self.estimates)} estimates; p_adjusted: {self.correction or 'none'}"
        if not self.estimates:
            return header
        body = frame_text(self.to_frame())
        return f"{header}\n{body}"

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return frame_text(self.to_frame(), html=True)

    @classmethod
    def concat(cls, tables: Sequence[EffectTable]) -> EffectTable:
        """Join tables in order into one uncorrected family.

        Adjusted p-values are cleared because they belong to the old families; call
        `corrected` on the result to adjust across all of its tests.
        """
        return cls(
            tuple(
                dataclasses.replace(estimate, p_adjusted=math.nan) for table in tables for estimate in table.estimates
            )
        )

    def of_outcome(self, name: str) -> EffectTable:
        """The same estimates labelled as measuring the outcome `name`."""
        return EffectTable(
            tuple(dataclasses.replace(estimate, outcome=name) for estimate in self.estimates), self.correction
        )

    def only(self, name: str) -> EffectTable:
        """The estimates of the outcome `name`, in order."""
        return EffectTable(tuple(e for e in self.estimates if e.outcome == name), self.correction)

    def corrected(self, method: Correction) -> EffectTable:
        """New table whose `p_adjusted` corrects every finite `p_value` as one family.

        Rows without a p-value (bootstrap, exact) keep `p_adjusted` nan.
        """
        adjusted = adjust_p_values([e.p_value for e in self.estimates], method=method)
        return EffectTable(
            tuple(dataclasses.replace(e, p_adjusted=float(p)) for e, p in zip(self.estimates, adjusted, strict=True)),
            correction=method,
        )


def _frame(estimates: Sequence[EffectEstimate]) -> pd.DataFrame:
    records = [{column: getattr(e, column) for column in EFFECT_COLUMNS} for e in estimates]
    return pd.DataFrame(records, columns=list(EFFECT_COLUMNS))


def _p_text(estimate: EffectEstimate) -> str:
    p = format_p_value(estimate.p_value, name="p")
    if not math.isfinite(estimate.p_adjusted):
        return p
    return f"{p}, {format_p_value(estimate.p_adjusted, name='p_adjusted')}"
