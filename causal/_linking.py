"""Linking evidence (attention, saliency) to interventional effects and scoring its faithfulness.

An evidence method is faithful when it ranks factors, and units within a factor, the way the
interventions do, and when the factors it points at are the ones whose effects are real.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from causal.errors import EstimationError

LINK_COLUMNS = (
    "method",
    "baseline",
    "factor",
    "contrast",
    "effect",
    "ci_low",
    "ci_high",
    "effect_share",
    "evidence",
    "evidence_share",
    "n_units",
    "flag",
)
AGREEMENT_COLUMNS = (
    "method",
    "baseline",
    "scope",
    "factor",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "n",
)

Flag = Literal["evidence_without_effect", "effect_without_evidence"]
EffectMethod = Literal["t", "bootstrap", "exact"]


@dataclass(frozen=True)
class FactorLink:
    """One factor's effect beside one evidence method's summary of it.

    `effect_share` is |effect| over the sum of |effect| across the linked factors.
    `evidence` is the mean over units of the absolute evidence mass on the factor's tokens
    (saliency is signed; its magnitude is what counts as evidence); `evidence_share` is that
    mean over the sum of the method's means across factors. `flag` marks a disagreement:
    "evidence_without_effect" when the evidence share is large but the effect's CI covers
    zero; "effect_without_evidence" when the CI excludes zero and the effect share is large
    but the evidence share is small (cut-offs in `EvidenceLinks`).
    """

    method: str
    baseline: str | None
    factor: str
    contrast: str | None
    effect: float
    ci_low: float
    ci_high: float
    effect_share: float
    evidence: float
    evidence_share: float
    n_units: int
    flag: Flag | None


@dataclass(frozen=True)
class RankAgreement:
    """How well one evidence method ranks like the interventions, with a bootstrap CI.

    scope "factors": Kendall's tau-b between |effect| and mean evidence across factors.
    scope "units": Spearman's rho between |per-unit effect| and evidence across the units
    of `factor`. nan when either side is constant or too few items are compared.
    """

    method: str
    baseline: str | None
    scope: Literal["factors", "units"]
    factor: str | None
    statistic: Literal["kendall_tau", "spearman"]
    estimate: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class EvidenceLinks:
    """Effects beside evidence, rank agreement and disagreement flags, as `link_evidence` found.

    A share (of evidence, or of |effect|) is large when it is at least `large_share`
    (default 1 / number of factors: an even split or more) and small when it is below
    `small_share` (default half of that), so a moderate share is never flagged, nor is a
    factor whose effect is real but small next to the others.
    """

    links: tuple[FactorLink, ...]
    agreement: tuple[RankAgreement, ...]
    large_share: float
    small_share: float
    level: float
    n_bootstrap: int
    seed: int

    @property
    def flagged(self) -> tuple[FactorLink, ...]:
        """The links whose evidence and effect disagree."""
        return tuple(link for link in self.links if link.flag is not None)

    def to_frame(self) -> pd.DataFrame:
        """One row per method and factor, columns exactly `LINK_COLUMNS`."""
        return _records(self.links, LINK_COLUMNS)

    def agreement_frame(self) -> pd.DataFrame:
        """One row per rank-agreement score, columns exactly `AGREEMENT_COLUMNS`."""
        return _records(self.agreement, AGREEMENT_COLUMNS)

    def summary(self) -> str:
        """Plain text: the linked table, each rank-agreement verdict, then every disagreement."""
        lines = [
            f"Evidence linked to interventional effects ({self.level:.0%} CIs; evidence is large "
            f"from a share of {self.large_share:.3g}, small below {self.small_share:.3g})",
            self.to_frame().to_string(index=False, float_format="{:.4g}".format),
            *(_agreement_line(score) for score in self.agreement),
        ]
        if not self.flagged:
            lines.append(
                "No flagged factor: no factor with large evidence has an effect whose CI covers "
                "zero, and no factor with a large, nonzero effect has small evidence."
            )
        lines += [_flag_line(link) for link in self.flagged]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(index=False, float_format="{:.4g}".format)


def link_evidence(
    effects: pd.DataFrame,
    evidence: pd.DataFrame,
    *,
    unit_effects: pd.DataFrame | None = None,
    effect_method: EffectMethod = "t",
    estimand: str = "total",
    large_share: float | None = None,
    small_share: float | None = None,
    level: float = 0.95,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> EvidenceLinks:
    """Put each factor's interventional effect beside each evidence method and score agreement.

    `effects` is either an effects table (`EFFECT_COLUMNS`: its "ate" rows of `estimand`
    and `effect_method` are used, `treatment` naming the factor) or a plain table with
    columns factor, estimate, ci_low, ci_high (optionally contrast). A factor with several
    contrasts is represented by the one with the largest |estimate|.
    `evidence` has columns unit, factor, method, value and optionally baseline, layer, head;
    a method is identified by (method, baseline), rows with a layer or head (per-layer
    readings) are left out, and one row per method, unit and factor must remain. Every
    evidence factor needs an effect. `unit_effects` (columns unit, factor, effect: the
    per-unit effect of the same contrast) enables the across-unit Spearman scores.
    `large_share` defaults to 1 / number of factors, `small_share` to half of it (see
    `EvidenceLinks`). Bootstrap CIs resample units with `seed`: evidence means, and factor
    effects when `unit_effects` are given, are recomputed from each resample.
    """
    if not 0 < level < 1:
        raise EstimationError(f"level must be between 0 and 1, got {level!r}")
    if not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise EstimationError(f"n_bootstrap must be an int >= 1, got {n_bootstrap!r}")
    table = _factor_effects(effects, effect_method, estimand)
    masses = _evidence_masses(evidence)
    factors = list(masses.columns.get_level_values("factor").unique())
    missing = [factor for factor in factors if factor not in table.index]
    if missing:
        raise EstimationError(
            f"evidence factors {missing} have no effect row; effects cover "
            f"{sorted(table.index)}; estimate their effects or leave them out of the evidence"
        )
    large = 1 / len(factors) if large_share is None else large_share
    small = large / 2 if small_share is None else small_share
    if not 0 < small <= large <= 1:
        raise EstimationError(
            f"evidence shares must satisfy 0 < small_share <= large_share <= 1, got "
            f"small_share {small!r} and large_share {large!r}"
        )
    # Largest effect first (ties by name): the order the evidence should reproduce.
    factors.sort(key=lambda factor: (-abs(table.loc[factor, "estimate"]), factor))
    per_unit = None if unit_effects is None else _unit_effects(unit_effects, factors)
    table = table.loc[factors]
    effect_shares = table["estimate"].abs() / table["estimate"].abs().sum()
    rng = np.random.default_rng(seed)
    links: list[FactorLink] = []
    agreement: list[RankAgreement] = []
    for method, baseline in dict.fromkeys(key[:2] for key in masses.columns):
        matrix = masses[(method, baseline)]
        key = (method, baseline or None)
        uncovered = [factor for factor in factors if factor not in matrix.columns]
        if uncovered:
            raise EstimationError(
                f"evidence method {_label(*key)!r} has no rows for factors {uncovered}; every "
                f"method must cover every evidence factor {factors}"
            )
        matrix = matrix[factors].dropna(how="all")
        means = _column_means(matrix.to_numpy())
        shares = means / means.sum()
        for factor, mean, share, count in zip(factors, means, shares, matrix.notna().sum()):
            row = table.loc[factor]
            links.append(
                FactorLink(
                    method=key[0],
                    baseline=key[1],
                    factor=factor,
                    contrast=None if pd.isna(row["contrast"]) else str(row["contrast"]),
                    effect=float(row["estimate"]),
                    ci_low=float(row["ci_low"]),
                    ci_high=float(row["ci_high"]),
                    effect_share=float(effect_shares[factor]),
                    evidence=float(mean),
                    evidence_share=float(share),
                    n_units=int(count),
                    flag=_flag(row, effect_shares[factor], share, large, small),
                )
            )
        signed = None if per_unit is None else per_unit.reindex(index=matrix.index).to_numpy()
        agreement.append(
            _factor_agreement(key, table["estimate"].to_numpy(), matrix.to_numpy(), signed, level, n_bootstrap, rng)
        )
        if signed is not None:
            agreement += [
                _unit_agreement(
                    key,
                    factor,
                    signed[:, column],
                    matrix[factor].to_numpy(),
                    level,
                    n_bootstrap,
                    rng,
                )
                for column, factor in enumerate(factors)
            ]
    return EvidenceLinks(
        links=tuple(links),
        agreement=tuple(agreement),
        large_share=large,
        small_share=small,
        level=level,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )


def _factor_effects(effects: pd.DataFrame, method: str, estimand: str) -> pd.DataFrame:
    """One effect row per factor (index), columns contrast, estimate, ci_low, ci_high."""
    frame = effects
    if "treatment" in frame.columns:
        keep = pd.Series(True, index=frame.index)
        for column, wanted in (("analysis", "ate"), ("method", method), ("estimand", estimand)):
            if column in frame.columns:
                keep &= frame[column] == wanted
        frame = frame[keep].rename(columns={"treatment": "factor"})
    _require_columns(frame, ("factor", "estimate", "ci_low", "ci_high"), "effects")
    if frame.empty:
        raise EstimationError(
            f"effects has no rows to link (after keeping analysis 'ate', method {method!r}, "
            f"estimand {estimand!r}); pass the effects table of the run"
        )
    frame = frame.reset_index(drop=True)
    if "contrast" not in frame.columns:
        frame = frame.assign(contrast=None)
    largest = frame["estimate"].abs().groupby(frame["factor"]).idxmax()
    return frame.loc[largest.to_numpy()].set_index("factor")[["contrast", "estimate", "ci_low", "ci_high"]]


def _evidence_masses(evidence: pd.DataFrame) -> pd.DataFrame:
    """|evidence| as a unit x (method, baseline, factor) frame, "" for no baseline; NaN where a
    unit lacks a value."""
    _require_columns(evidence, ("unit", "factor", "method", "value"), "evidence")
    frame = evidence
    for column in ("layer", "head"):
        if column in frame.columns:
            frame = frame[frame[column].isna()]
    baseline = frame["baseline"] if "baseline" in frame.columns else None
    frame = pd.DataFrame(
        {
            "unit": frame["unit"].to_numpy(),
            "method": frame["method"].astype(str).to_numpy(),
            "baseline": "" if baseline is None else baseline.fillna("").astype(str).to_numpy(),
            "factor": frame["factor"].astype(str).to_numpy(),
            "value": frame["value"].astype(float).abs().to_numpy(),
        }
    )
    if frame.empty:
        raise EstimationError("evidence has no rows without a layer or head; nothing to link")
    keys = ["method", "baseline", "unit", "factor"]
    duplicated = frame.duplicated(keys)
    if duplicated.any():
        first = frame.loc[duplicated, keys].iloc[0].to_dict()
        raise EstimationError(
            f"evidence has several rows for {first}; give one value per method, baseline, unit "
            "and factor (per-layer readings need a layer or head column)"
        )
    masses = frame.pivot(index="unit", columns=["method", "baseline", "factor"], values="value")
    return masses.sort_index(axis=1)


def _unit_effects(unit_effects: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """Signed per-unit effects as a unit x factor frame."""
    _require_columns(unit_effects, ("unit", "factor", "effect"), "unit_effects")
    duplicated = unit_effects.duplicated(["unit", "factor"])
    if duplicated.any():
        first = unit_effects.loc[duplicated, ["unit", "factor"]].iloc[0].to_dict()
        raise EstimationError(f"unit_effects has several rows for {first}; give one effect per unit and factor")
    wide = unit_effects.pivot(index="unit", columns="factor", values="effect").astype(float)
    missing = [factor for factor in factors if factor not in wide.columns]
    if missing:
        raise EstimationError(
            f"unit_effects has no rows for factors {missing}; give per-unit effects of every "
            f"evidence factor {list(factors)}, or none"
        )
    return wide[list(factors)]


def _flag(row: pd.Series, effect_share: float, share: float, large: float, small: float) -> Flag | None:
    """The disagreement between an effect (its CI and share) and its evidence share, if any."""
    low, high = row["ci_low"], row["ci_high"]
    if not all(map(math.isfinite, (low, high, effect_share, share))):
        return None
    covers_zero = low <= 0 <= high
    if covers_zero and share >= large:
        return "evidence_without_effect"
    if not covers_zero and effect_share >= large and share < small:
        return "effect_without_evidence"
    return None


def _factor_agreement(
    key: tuple[str, str | None],
    effects: np.ndarray,
    masses: np.ndarray,
    unit_effects: np.ndarray | None,
    level: float,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> RankAgreement:
    """Kendall's tau-b of |effect| and mean evidence across factors, CI from resampling units.

    `masses` and `unit_effects` are unit x factor; without unit effects the factor effects
    stay at their estimates in every resample.
    """
    draws = rng.integers(0, masses.shape[0], size=(n_bootstrap, masses.shape[0]))
    resampled = effects if unit_effects is None else _column_means(unit_effects[draws])
    estimate = kendall_tau_b(np.abs(effects), _column_means(masses))
    low, high = _percentile(kendall_tau_b(np.abs(resampled), _column_means(masses[draws])), level)
    return RankAgreement(
        method=key[0],
        baseline=key[1],
        scope="factors",
        factor=None,
        statistic="kendall_tau",
        estimate=float(estimate),
        ci_low=low,
        ci_high=high,
        n=masses.shape[1],
    )


def _unit_agreement(
    key: tuple[str, str | None],
    factor: str,
    effects: np.ndarray,
    masses: np.ndarray,
    level: float,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> RankAgreement:
    """Spearman's rho of |unit effect| and evidence across one factor's units, CI by resampling
    the units that have both (nan below 3 units)."""
    both = np.isfinite(effects) & np.isfinite(masses)
    effects, masses = np.abs(effects[both]), masses[both]
    low = high = math.nan
    if effects.size >= 3:
        draws = rng.integers(0, effects.size, size=(n_bootstrap, effects.size))
        low, high = _percentile(spearman(effects[draws], masses[draws]), level)
    return RankAgreement(
        method=key[0],
        baseline=key[1],
        scope="units",
        factor=factor,
        statistic="spearman",
        estimate=float(spearman(effects, masses)) if effects.size >= 3 else math.nan,
        ci_low=low,
        ci_high=high,
        n=int(effects.size),
    )


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b along the last axis (ties handled as scipy does); nan when undefined."""
    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    first, second = np.triu_indices(x.shape[-1], k=1)
    dx = np.sign(x[..., first] - x[..., second])
    dy = np.sign(y[..., first] - y[..., second])
    scale = np.sqrt((dx**2).sum(axis=-1) * (dy**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (dx * dy).sum(axis=-1) / scale, np.nan)


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho along the last axis (average ranks for ties); nan when undefined."""
    ranks_x = stats.rankdata(x, axis=-1)
    ranks_y = stats.rankdata(y, axis=-1)
    ranks_x -= ranks_x.mean(axis=-1, keepdims=True)
    ranks_y -= ranks_y.mean(axis=-1, keepdims=True)
    scale = np.sqrt((ranks_x**2).sum(axis=-1) * (ranks_y**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (ranks_x * ranks_y).sum(axis=-1) / scale, np.nan)


def _column_means(values: np.ndarray) -> np.ndarray:
    """Means over axis -2 ignoring NaN (nan for a column with no finite value)."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, values, 0.0).sum(axis=-2) / np.where(counts > 0, counts, np.nan)


def _percentile(draws: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of the finite draws (nan when none is finite)."""
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise EstimationError(f"{name} lacks columns {missing}; it has {list(frame.columns)}")


def _agreement_line(score: RankAgreement) -> str:
    """One sentence: does the method rank like the interventions, with the statistic's CI."""
    if score.ci_low > 0:
        verdict = "like"
    elif score.ci_high < 0:
        verdict = "opposite to"
    else:
        verdict = "neither clearly like nor opposite to"
    subject = "the factors" if score.scope == "factors" else f"the units of {score.factor!r}"
    statistic = "Kendall's tau" if score.statistic == "kendall_tau" else "Spearman's rho"
    return (
        f"{_label(score.method, score.baseline)} ranks {subject} {verdict} the interventions: "
        f"{statistic} {score.estimate:.3g} [{score.ci_low:.3g}, {score.ci_high:.3g}], n={score.n}."
    )


def _flag_line(link: FactorLink) -> str:
    """One sentence stating a flagged disagreement."""
    name = _label(link.method, link.baseline)
    effect = f"effect {link.effect:.4g} [{link.ci_low:.4g}, {link.ci_high:.4g}]"
    if link.flag == "evidence_without_effect":
        return (
            f"Disagreement: {name} puts {link.evidence_share:.0%} of its evidence on "
            f"{link.factor!r}, but its {effect} covers zero."
        )
    return (
        f"Disagreement: {link.factor!r} has an {effect} that excludes zero "
        f"({link.effect_share:.0%} of all |effect|), but {name} puts only "
        f"{link.evidence_share:.0%} of its evidence on it."
    )


def _label(method: str, baseline: str | None) -> str:
    return method if baseline is None else f"{method} ({baseline} baseline)"


def _records(items: Sequence[object], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame([[getattr(item, column) for column in columns] for item in items], columns=list(columns))
