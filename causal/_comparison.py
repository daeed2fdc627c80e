"""Comparing the effects (and hypothesis verdicts) of two runs, e.g. two model builds.

Each estimate of run B is matched with run A's estimate of the same effect and their
difference B - A gets a CI: paired by unit when the runs share their units (same config and
seed), which cancels the units' own variation, else from the two independent standard errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from causal._format import frame_text
from causal._linking import _records
from causal._multiple_testing import adjust_p_values
from causal._paired import Interval, t_interval
from causal.errors import EstimationError

MATCH_KEYS = ("outcome", "analysis", "estimand", "treatment", "contrast", "moderator", "stratum", "method")
COMPARISON_COLUMNS = (
    *MATCH_KEYS,
    "estimate_a",
    "estimate_b",
    "difference",
    "ci_low",
    "ci_high",
    "std_error",
    "p_value",
    "p_adjusted",
    "significant",
    "pairing",
)
UNMATCHED_COLUMNS = (*MATCH_KEYS, "side")
VERDICT_CHANGE_COLUMNS = ("id", "claim", "effect", "verdict_a", "verdict_b")

_COMPARED_METHODS = ("t", "exact")
_PAIRED_COLUMNS = ("treatment", "contrast", "difference_a", "difference_b")

Pairing = Literal["paired", "independent", "exact"]


@dataclass(frozen=True)
class EffectDifference:
    """One effect in both runs and the difference B - A with its CI (a row of `COMPARISON_COLUMNS`).

    `pairing` says how the CI was made: "paired" (t-interval of per-unit differences),
    "independent" (normal interval from sqrt(se_a^2 + se_b^2)) or "exact" (both runs
    enumerate every unit: the difference has no sampling error). `significant` is
    p_adjusted < 1 - level, or any nonzero difference when there is no sampling error.
    `outcome` is the outcome both rows measure (None in tables without outcome names).
    """

    outcome: str | None
    analysis: str
    estimand: str
    treatment: str
    contrast: str
    moderator: str | None
    stratum: str | None
    method: str
    estimate_a: float
    estimate_b: float
    difference: float
    ci_low: float
    ci_high: float
    std_error: float
    p_value: float
    p_adjusted: float
    significant: bool
    pairing: Pairing


@dataclass(frozen=True)
class Unmatched:
    """An estimate present in one run only; `side` names that run ("a" or "b")."""

    outcome: str | None
    analysis: str
    estimand: str
    treatment: str
    contrast: str
    moderator: str | None
    stratum: str | None
    method: str
    side: Literal["a", "b"]


@dataclass(frozen=True)
class ComparisonTable:
    """Differences between two runs' matched estimates, and the estimates left unmatched."""

    differences: tuple[EffectDifference, ...]
    unmatched: tuple[Unmatched, ...]
    level: float
    correction: Literal["holm", "bh"]

    @property
    def significant(self) -> tuple[EffectDifference, ...]:
        """The differences flagged significant."""
        return tuple(d for d in self.differences if d.significant)

    def to_frame(self) -> pd.DataFrame:
        """One row per matched estimate, columns exactly `COMPARISON_COLUMNS`."""
        return _records(self.differences, COMPARISON_COLUMNS)

    def unmatched_frame(self) -> pd.DataFrame:
        """One row per estimate found in one run only, columns exactly `UNMATCHED_COLUMNS`."""
        return _records(self.unmatched, UNMATCHED_COLUMNS)

    def summary(self) -> str:
        """Plain text: counts, the matched table, then the unmatched estimates."""
        lines = [
            f"{len(self.differences)} matched estimates (difference B - A, {self.level:.0%} CIs, "
            f"{self.correction}-adjusted): {len(self.significant)} significant; "
            f"{len(self.unmatched)} unmatched"
        ]
        if self.differences:
            lines.append(frame_text(self.to_frame()))
        lines += [
            f"only in run {u.side}: {u.analysis} {u.estimand} {u.treatment}[{u.contrast}]"
            + (f" on {u.outcome}" if u.outcome else "")
            + (f" | {u.moderator} = {u.stratum}" if u.moderator else "")
            + f" ({u.method})"
            for u in self.unmatched
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return frame_text(self.to_frame(), html=True)


def compare_effects(
    a: pd.DataFrame,
    b: pd.DataFrame,
    *,
    paired: pd.DataFrame | None = None,
    level: float = 0.95,
    correction: Literal["holm", "bh"] = "holm",
) -> ComparisonTable:
    """Difference B - A of every estimate (methods t and exact) the two effects tables share.

    Rows match on `MATCH_KEYS`, the outcome first: estimates of different outcomes are never
    subtracted (a table without an `outcome` column reads as one unnamed outcome). Without
    `paired`, the CI is normal with se = sqrt(se_a^2 + se_b^2). `paired` (runs sharing their
    units) has one row per unit and contrast with columns treatment, contrast, difference_a,
    difference_b (and optionally estimand, default "total", and outcome): the ATE t rows it
    covers get the t-interval of difference_b - difference_a. The p-values of the
    differences are corrected as one family.
    """
    if not 0 < level < 1:
        raise EstimationError(f"level must lie strictly between 0 and 1; got {level!r}")
    left, right = _compared_rows(a, "a"), _compared_rows(b, "b")
    merged = left.merge(right, on=list(MATCH_KEYS), how="outer", suffixes=("_a", "_b"), indicator=True)
    per_unit = _per_unit(paired)
    matched = merged.loc[merged["_merge"] == "both"].to_dict("records")
    computed = [_difference(row, per_unit, level) for row in matched]
    adjusted = adjust_p_values([interval.p_value for interval, _ in computed], method=correction)
    differences = tuple(
        EffectDifference(
            *_keys(row),
            float(row["estimate_a"]),
            float(row["estimate_b"]),
            interval.estimate,
            interval.ci_low,
            interval.ci_high,
            interval.std_error,
            interval.p_value,
            float(p_adjusted),
            _significant(interval, float(p_adjusted), 1 - level),
            pairing,
        )
        for row, (interval, pairing), p_adjusted in zip(matched, computed, adjusted, strict=True)
    )
    unmatched = tuple(
        Unmatched(*_keys(row), side="a" if row["_merge"] == "left_only" else "b")
        for row in merged.loc[merged["_merge"] != "both"].to_dict("records")
    )
    return ComparisonTable(differences, unmatched, level=level, correction=correction)


def compare_verdicts(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Hypotheses whose verdict differs between two verdict tables (hypotheses.csv frames).

    Matched by id; a hypothesis judged in one run only appears with None on the other side.
    Columns `VERDICT_CHANGE_COLUMNS`.
    """
    for frame, side in ((a, "a"), (b, "b")):
        missing = [c for c in ("id", "claim", "effect", "verdict") if c not in frame.columns]
        if missing:
            raise EstimationError(
                f"verdict table {side} lacks columns {missing}; pass a hypotheses.csv frame (causal.VERDICT_COLUMNS)"
            )
    merged = a[["id", "claim", "effect", "verdict"]].merge(
        b[["id", "claim", "effect", "verdict"]], on="id", how="outer", suffixes=("_a", "_b"), sort=False
    )
    merged = merged.astype(object).where(merged.notna(), None)
    changed = merged.loc[merged["verdict_a"] != merged["verdict_b"]]
    return pd.DataFrame(
        {
            "id": changed["id"],
            "claim": changed["claim_b"].where(changed["claim_b"].notna(), changed["claim_a"]),
            "effect": changed["effect_b"].where(changed["effect_b"].notna(), changed["effect_a"]),
            "verdict_a": changed["verdict_a"],
            "verdict_b": changed["verdict_b"],
        },
        columns=list(VERDICT_CHANGE_COLUMNS),
    ).reset_index(drop=True)


def _compared_rows(effects: pd.DataFrame, side: str) -> pd.DataFrame:
    """The t and exact rows with normalised keys (moderator/stratum "" when absent), one per key."""
    if "outcome" not in effects.columns:
        effects = effects.assign(outcome=None)
    missing = [c for c in (*MATCH_KEYS, "estimate", "std_error") if c not in effects.columns]
    if missing:
        raise EstimationError(
            f"effects table {side} lacks columns {missing}; pass an effects.csv frame (causal.EFFECT_COLUMNS)"
        )
    rows = effects.loc[effects["method"].isin(_COMPARED_METHODS), [*MATCH_KEYS, "estimate", "std_error"]]
    keys = rows[list(MATCH_KEYS)].astype(object)
    rows = rows.assign(**{k: keys[k].where(keys[k].notna(), "").astype(str) for k in MATCH_KEYS})
    return rows.drop_duplicates(subset=list(MATCH_KEYS))


def _keys(row: dict[str, Any]) -> list[str | None]:
    return [None if k in ("outcome", "moderator", "stratum") and row[k] == "" else row[k] for k in MATCH_KEYS]


def _per_unit(paired: pd.DataFrame | None) -> dict[tuple[str, str, str, str], np.ndarray]:
    """(outcome, estimand, treatment, contrast) -> per-unit difference B - A ("" for an unnamed outcome)."""
    if paired is None:
        return {}
    missing = [c for c in _PAIRED_COLUMNS if c not in paired.columns]
    if missing:
        raise EstimationError(
            f"paired lacks columns {missing}; it needs one row per unit and contrast with {list(_PAIRED_COLUMNS)}"
        )
    estimand = paired["estimand"] if "estimand" in paired.columns else pd.Series("total", index=paired.index)
    outcome = paired["outcome"] if "outcome" in paired.columns else pd.Series("", index=paired.index)
    keyed = paired.assign(_outcome=outcome.fillna("").astype(str), _estimand=estimand.astype(str))
    return {
        (str(o), str(e), str(t), str(c)): group[["difference_a", "difference_b"]].to_numpy(np.float64)
        for (o, e, t, c), group in keyed.groupby(["_outcome", "_estimand", "treatment", "contrast"])
    }


def _difference(
    row: dict[str, Any], per_unit: dict[tuple[str, str, str, str], np.ndarray], level: float
) -> tuple[Interval, Pairing]:
    """The difference B - A of one matched row with its interval, and how it was paired."""
    difference = float(row["estimate_b"] - row["estimate_a"])
    if row["method"] == "exact":
        return Interval(difference, difference, difference, 0.0, math.nan), "exact"
    units = per_unit.get((row["outcome"], row["estimand"], row["treatment"], row["contrast"]))
    if units is not None and row["analysis"] == "ate":
        _check_pairing(row, units)
        return t_interval(units[:, 1] - units[:, 0], level=level), "paired"
    std_error = math.hypot(float(row["std_error_a"]), float(row["std_error_b"]))
    if std_error == 0:
        return Interval(difference, difference, difference, 0.0, 0.0 if difference != 0 else 1.0), "independent"
    half_width = float(stats.norm.ppf((1 + level) / 2)) * std_error
    p_value = float(2 * stats.norm.sf(abs(difference) / std_error))
    return Interval(difference, difference - half_width, difference + half_width, std_error, p_value), "independent"


def _check_pairing(row: dict[str, Any], units: np.ndarray) -> None:
    """Per-unit differences must reproduce both runs' estimates, else they belong to other units."""
    means = units.mean(axis=0)
    for side, mean in zip("ab", means, strict=True):
        estimate = float(row[f"estimate_{side}"])
        if not math.isclose(mean, estimate, rel_tol=1e-6, abs_tol=1e-9):
            raise EstimationError(
                f"paired differences of {row['treatment']}[{row['contrast']}] average {mean:.6g} in "
                f"run {side} but its estimate is {estimate:.6g}; pass the per-unit differences of the "
                "same units, or omit paired for an independent comparison"
            )


def _significant(interval: Interval, p_adjusted: float, alpha: float) -> bool:
    if interval.std_error == 0:
        return interval.estimate != 0
    return bool(p_adjusted < alpha)
