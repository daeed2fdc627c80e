"""Pre-registered hypotheses about effects, judged against an effects table.

A directional claim ("no insurance lowers referral by at least 0.05") is a one-sided test
against the smallest effect of interest; an equivalence claim ("the weekday does not
matter") is a two one-sided test (TOST), because a large p-value is not evidence of no
effect. Holm's correction runs across the hypotheses of one call.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from causal._format import format_p_value, frame_text
from causal._hypothesis import Hypothesis, TestKind
from causal._linking import _records
from causal._multiple_testing import adjust_p_values
from causal.errors import EstimationError

VERDICT_COLUMNS = (
    "id",
    "claim",
    "effect",
    "outcome",
    "verdict",
    "test",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "n_contrasts",
    "reason",
)

VerdictLabel = Literal["supported", "contradicted", "inconclusive"]
_REQUIRED_COLUMNS = ("analysis", "estimand", "treatment", "contrast", "estimate", "std_error", "n_units", "method")
_JUDGED_METHODS = ("t", "exact")


@dataclass(frozen=True)
class Verdict:
    """One judged hypothesis: a row of hypotheses.csv (`VERDICT_COLUMNS`).

    For a claim over several contrasts, `estimate` and the CI are those of the contrast that
    decided the verdict (the contradicting one, else the one with the largest p-value), and
    `p_value` is the intersection-union p-value (the largest over the contrasts). `p_value`
    and `p_adjusted` are nan when every contrast is exact (no sampling error: the verdict
    comes from the point values) or untestable.
    """

    id: str
    claim: str
    effect: str
    outcome: str | None
    verdict: VerdictLabel
    test: TestKind
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    n_contrasts: int
    reason: str

    def summary(self) -> str:
        """One line: id, verdict and the reason."""
        subject = self.effect if self.outcome is None else f"{self.effect} on {self.outcome}"
        return f"{self.id} ({subject}): {self.verdict}. {self.reason}"

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True)
class VerdictTable:
    """The verdicts of one family of hypotheses, Holm-corrected together at `level`."""

    verdicts: tuple[Verdict, ...]
    level: float
    correction: Literal["holm"] = "holm"

    @property
    def contradicted(self) -> tuple[str, ...]:
        """Ids of the contradicted hypotheses, in order."""
        return tuple(v.id for v in self.verdicts if v.verdict == "contradicted")

    def to_frame(self) -> pd.DataFrame:
        """One row per hypothesis, columns exactly `VERDICT_COLUMNS`."""
        return _records(self.verdicts, VERDICT_COLUMNS)

    def summary(self) -> str:
        """Plain text: a count per verdict, then one line per hypothesis."""
        counts = {
            label: sum(v.verdict == label for v in self.verdicts)
            for label in ("supported", "contradicted", "inconclusive")
        }
        header = f"{len(self.verdicts)} hypotheses at level {self.level:g} ({self.correction}-corrected): " + ", ".join(
            f"{n} {label}" for label, n in counts.items()
        )
        return "\n".join([header, *(v.summary() for v in self.verdicts)])

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return frame_text(self.to_frame(), html=True)


def judge_hypotheses(
    hypotheses: Sequence[Hypothesis],
    effects: pd.DataFrame,
    *,
    level: float = 0.95,
    correction: Literal["holm"] = "holm",
) -> VerdictTable:
    """Give each hypothesis a verdict from the effects table's ATE rows (methods t and exact).

    Directional "negative, min_effect m": one-sided t-test of H0: effect >= -m, supported when
    its Holm-adjusted p < 1 - level, contradicted when the `level` CI lies entirely above -m
    (mirrored for "positive"). Equivalence with margin e: TOST (p = the larger one-sided
    p-value), supported when the adjusted p < 1 - level, contradicted when the CI lies entirely
    outside [-e, e]. A claim over several contrasts holds only if it holds for each
    (intersection-union: p is the largest) and is contradicted if any contrast contradicts it.
    Exact rows have no sampling error: the claim is supported or contradicted by the point value.
    """
    if not 0 < level < 1:
        raise EstimationError(f"level must lie strictly between 0 and 1; got {level!r}")
    if correction != "holm":
        raise EstimationError(f"correction must be 'holm'; got {correction!r}")
    repeated = sorted(i for i, n in Counter(h.id for h in hypotheses).items() if n > 1)
    if repeated:
        raise EstimationError(f"hypothesis ids must be unique; repeated: {repeated}")
    judged = [
        [_judge_contrast(h, row, level) for row in _matching(h, _judged_rows(_of_outcome(effects, h)))]
        for h in hypotheses
    ]
    p_values = [_family_p(contrasts) for contrasts in judged]
    adjusted = adjust_p_values(p_values, method=correction)
    verdicts = tuple(
        _verdict(h, contrasts, p, float(p_adj), level)
        for h, contrasts, p, p_adj in zip(hypotheses, judged, p_values, adjusted, strict=True)
    )
    return VerdictTable(verdicts, level=level, correction=correction)


@dataclass(frozen=True)
class _Contrast:
    """One contrast judged against a claim, before the family correction."""

    contrast: str
    exact: bool
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    holds: bool
    contradicts: bool


def _of_outcome(effects: pd.DataFrame, hypothesis: Hypothesis) -> pd.DataFrame:
    """The rows of the hypothesis's outcome; a claim with no outcome, or a table whose rows name none, reads them all."""
    if hypothesis.outcome is None or "outcome" not in effects.columns or effects["outcome"].isna().all():
        return effects
    return effects.loc[effects["outcome"] == hypothesis.outcome]


def _judged_rows(effects: pd.DataFrame) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The ATE rows of methods t and exact, grouped by (treatment, estimand), one per contrast."""
    missing = [c for c in _REQUIRED_COLUMNS if c not in effects.columns]
    if missing:
        raise EstimationError(
            f"the effects table lacks columns {missing}; pass an effects.csv frame (causal.EFFECT_COLUMNS)"
        )
    rows = effects.loc[(effects["analysis"] == "ate") & effects["method"].isin(_JUDGED_METHODS)]
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows.drop_duplicates(subset=["estimand", "treatment", "contrast", "method"]).to_dict("records"):
        grouped.setdefault((row["treatment"], row["estimand"]), []).append(row)
    return grouped


def _matching(hypothesis: Hypothesis, rows: dict[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    selected = [
        row
        for row in rows.get((hypothesis.treatment, hypothesis.estimand), [])
        if hypothesis.contrast is None or row["contrast"] == hypothesis.contrast
    ]
    if not selected:
        available = sorted(
            f"{r['treatment']}[{r['contrast']}] ({r['estimand']})" for group in rows.values() for r in group
        )
        raise EstimationError(
            f"hypothesis {hypothesis.id!r}: effect {hypothesis.effect} ({hypothesis.estimand})"
            + ("" if hypothesis.outcome is None else f" on the outcome {hypothesis.outcome!r}")
            + " has "
            f"no ATE row of method t or exact in the effects table; it has: "
            f"{', '.join(available) or 'none'}"
        )
    return selected


def _judge_contrast(hypothesis: Hypothesis, row: dict[str, Any], level: float) -> _Contrast:
    estimate, exact = float(row["estimate"]), row["method"] == "exact"
    std_error, df = float(row["std_error"]), int(row["n_units"]) - 1
    testable = math.isfinite(std_error) and df >= 1
    if exact or std_error == 0:
        ci_low = ci_high = estimate
    elif testable:
        half_width = float(stats.t.ppf((1 + level) / 2, df)) * std_error
        ci_low, ci_high = estimate - half_width, estimate + half_width
    else:
        ci_low = ci_high = math.nan
    low, high = _claimed_region(hypothesis)
    holds = low < estimate < high
    contradicts = bool(ci_low >= high or ci_high <= low)
    if exact:
        p_value = math.nan
    elif std_error == 0:
        p_value = 0.0 if holds else 1.0
    elif testable:
        p_value = _p_value(estimate, std_error, df, low, high)
    else:
        p_value = math.nan
    return _Contrast(str(row["contrast"]), exact, estimate, ci_low, ci_high, p_value, holds, contradicts)


def _claimed_region(hypothesis: Hypothesis) -> tuple[float, float]:
    """The open interval the effect must lie in for the claim to hold."""
    if hypothesis.equivalence is not None:
        return -hypothesis.equivalence, hypothesis.equivalence
    if hypothesis.direction == "negative":
        return -math.inf, -hypothesis.min_effect
    return hypothesis.min_effect, math.inf


def _p_value(estimate: float, std_error: float, df: int, low: float, high: float) -> float:
    """Largest of the one-sided t-test p-values against the region's finite bounds."""
    p_above_low = stats.t.sf((estimate - low) / std_error, df) if math.isfinite(low) else 0.0
    p_below_high = stats.t.cdf((estimate - high) / std_error, df) if math.isfinite(high) else 0.0
    return float(max(p_above_low, p_below_high))


def _family_p(contrasts: list[_Contrast]) -> float:
    """Intersection-union p-value; nan when all contrasts are exact or any is untestable."""
    if all(c.exact for c in contrasts):
        return math.nan
    p = np.array([c.p_value for c in contrasts if not c.exact])
    return math.nan if np.isnan(p).any() else float(p.max())


def _verdict(
    hypothesis: Hypothesis, contrasts: list[_Contrast], p_value: float, p_adjusted: float, level: float
) -> Verdict:
    alpha = 1 - level
    exact = all(c.exact for c in contrasts)
    contradicting = [c for c in contrasts if c.contradicts]
    if contradicting:
        label: VerdictLabel = "contradicted"
        decider = max(contradicting, key=_badness)
    else:
        label = "supported" if exact or p_adjusted < alpha else "inconclusive"
        decider = max(contrasts, key=_badness)
    return Verdict(
        id=hypothesis.id,
        claim=hypothesis.claim,
        effect=hypothesis.effect,
        outcome=hypothesis.outcome,
        verdict=label,
        test=hypothesis.test,
        estimate=decider.estimate,
        ci_low=decider.ci_low,
        ci_high=decider.ci_high,
        p_value=p_value,
        p_adjusted=p_adjusted,
        n_contrasts=len(contrasts),
        reason=_reason(hypothesis, label, decider, len(contrasts), p_adjusted, level),
    )


def _badness(contrast: _Contrast) -> float:
    """Order contrasts by how far they are from supporting the claim (nan p is worst)."""
    if contrast.exact:
        return 0.0 if contrast.holds else 1.0
    return math.inf if math.isnan(contrast.p_value) else contrast.p_value


def _reason(
    hypothesis: Hypothesis, label: VerdictLabel, decider: _Contrast, n_contrasts: int, p_adjusted: float, level: float
) -> str:
    """One plain-language sentence saying why the verdict was reached."""
    subject = f"{hypothesis.treatment}[{decider.contrast}]"
    if hypothesis.estimand != "total":
        subject += f" ({hypothesis.estimand} effect)"
    if n_contrasts > 1:
        subject += f", the deciding one of {n_contrasts} contrasts,"
    region, opposite = _region_text(hypothesis)
    interval = f"[{decider.ci_low:.4g}, {decider.ci_high:.4g}]"
    if decider.exact:
        where = region if label == "supported" else opposite
        return (
            f"The exact effect of {subject} is {decider.estimate:.4g}, {where} (enumerated units: no sampling error)."
        )
    if label == "contradicted":
        return (
            f"The {level:.0%} CI of {subject} {interval} lies entirely {opposite}: "
            "the effect is confidently not as claimed."
        )
    if label == "supported":
        test = "TOST" if hypothesis.equivalence is not None else "one-sided"
        return (
            f"The effect of {subject} ({decider.estimate:.4g}, {level:.0%} CI {interval}) lies "
            f"{region}: {test} {format_p_value(p_adjusted, '.3g', name='Holm-adjusted p')} < {1 - level:.3g}."
        )
    if math.isnan(p_adjusted):
        return (
            f"The effect of {subject} could not be tested (fewer than two units or an "
            "undefined standard error); more units are needed."
        )
    return (
        f"The {level:.0%} CI of {subject} {interval} does not settle whether the effect lies "
        f"{region} ({format_p_value(p_adjusted, '.3g', name='Holm-adjusted p')} >= {1 - level:.3g}): more units are "
        "needed to decide."
    )


def _region_text(hypothesis: Hypothesis) -> tuple[str, str]:
    """Where the claim puts the effect, and where a contradicting effect lies."""
    if hypothesis.equivalence is not None:
        margin = f"the equivalence margin ±{hypothesis.equivalence:g}"
        return f"within {margin}", f"outside {margin}"
    if hypothesis.direction == "negative":
        bound = -hypothesis.min_effect if hypothesis.min_effect else 0.0
        return f"below {bound:g}", f"at or above {bound:g}"
    return f"above {hypothesis.min_effect:g}", f"at or below {hypothesis.min_effect:g}"
