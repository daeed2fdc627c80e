"""Observational effects from a table of real documents: identify, estimate, refute (dowhy).

Each row is one document with its annotated factors (string values) and the model's
outcome on it. Nothing is intervened on, so the effect of a factor is identified from
the declared graph by the backdoor criterion over the annotated factors only (the
others are unobserved), estimated by each requested method (one module each:
g-computation, ipw, aipw, propensity matching, exact matching) and, for the regression
and ipw, checked by dowhy's refuters. The plain difference of means ("naive") is
reported beside them, so the distance between the two shows how much confounding was
removed.

This module orchestrates: it checks the arguments, builds the arrays the estimators
read, decides per method and population whether the data allow an estimate (a row
with a reason where they do not) and turns the warnings the fits raise into lines of
`warnings`. dowhy (slow to import) is imported where it is used: identification here,
refutation in `_refutation`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from numbers import Integral
from statistics import NormalDist
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
from scipy import stats

from causal._adjusted import TARGETS, AdjustedEstimate, Sample, Target
from causal._aipw import aipw
from causal._estimate import _check_level, _check_seed
from causal._exact_matching import exact_matching
from causal._format import format_p_value
from causal._gcomputation import g_computation
from causal._ipw import hajek
from causal._matching import propensity_matching
from causal._propensity import PROPENSITY_BOUNDS, PROPENSITY_MODELS, Propensity, fit_propensity
from causal._refutation import REFUTED, REFUTERS, Refuter, dowhy_estimate, refute
from causal._results import EffectEstimate, EffectTable
from causal.errors import EstimationError
from graphs import CausalGraph

REFUTATION_COLUMNS = ("treatment", "contrast", "method", "refuter", "estimate", "new_effect", "p_value")
OVERLAP_COLUMNS = ("stratum", "n_treated", "n_reference", "propensity_min", "propensity_max", "supported")

ObservationalMethod = Literal["regression", "ipw", "aipw", "matching", "exact_matching"]

_ESTIMATORS: dict[str, Callable[[Sample, tuple[Target, ...]], dict[Target, AdjustedEstimate]]] = {
    "regression": g_computation,
    "ipw": hajek,
    "aipw": aipw,
    "matching": propensity_matching,
    "exact_matching": exact_matching,
}
_WEIGHTED = ("ipw", "aipw")
"""Clip the propensity, and cannot balance a stratum where one arm is missing."""
_MATCHED = ("matching", "exact_matching")
"""Give no estimate for a population with a stratum that lacks the arm its documents are matched to."""
_ON_PROPENSITY = ("ipw", "aipw", "matching")
_DIRECTION = {"att": "treated", "atc": "reference"}

_Result = TypeVar("_Result")


@dataclass(frozen=True)
class ObservationalResult:
    """Identified estimand, effect estimates, refutations and overlap of one contrast.

    `effects` holds analysis "observational" rows: "naive" (difference of means, Welch
    interval), then per requested method its row on all documents (moderator None) and,
    with `directions`, on the documents whose factual value is the treated one and on
    those whose value is the reference one (moderator the treatment, stratum that
    value). A row whose `reason` is set could not be estimated and says why. Intervals
    are normal, from each method's standard error. `refutations` has columns
    `REFUTATION_COLUMNS`: per refuted method and refuter, the estimate, the mean effect
    over the refuter's simulations (near 0 for a placebo treatment, near the estimate
    otherwise) and dowhy's p-value for that comparison (below 100 simulations a
    one-sided normal test; a small p-value is a failed refutation). `overlap` has
    `OVERLAP_COLUMNS` (one row per stratum of the adjustment set, the propensity range of
    the chosen model), `warnings` one line per kind of problem: where the estimates rest
    on extrapolation, on clipping or on the graph's assumptions, and what a fit warned.
    """

    treatment: str
    contrast: str
    adjustment_set: tuple[str, ...]
    estimand: str
    effects: EffectTable
    refutations: pd.DataFrame
    overlap: pd.DataFrame
    warnings: tuple[str, ...]

    def to_frame(self) -> pd.DataFrame:
        """The effect rows, columns exactly `EFFECT_COLUMNS`."""
        return self.effects.to_frame()

    def summary(self) -> str:
        """Plain text: adjustment set, estimates, refutations, unsupported strata and warnings."""
        adjusted = ", ".join(self.adjustment_set) or "nothing (no open backdoor path)"
        lines = [f"observational effect of {self.treatment} ({self.contrast}), adjusting for {adjusted}"]
        lines += [f"  {_row_text(e)}" for e in self.effects.estimates]
        lines += [
            f"  refuter {r.refuter} on {r.method}: new effect {r.new_effect:.4g} "
            f"(estimate {r.estimate:.4g}, {format_p_value(r.p_value, name='p')})"
            for r in self.refutations.itertuples(index=False)
        ]
        unsupported = self.overlap.loc[~self.overlap["supported"], "stratum"].tolist()
        lines.append(f"  strata without both arms: {'; '.join(unsupported) or 'none'}")
        lines += [f"  warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _row_text(row: EffectEstimate) -> str:
    name = row.method if row.moderator is None else f"{row.method} on {row.moderator}={row.stratum}"
    if not row.estimable:
        return f"{name}: not estimable: {row.reason}"
    return (
        f"{name}: {row.estimate:.4g} [{row.ci_low:.4g}, {row.ci_high:.4g}] "
        f"({row.level:.0%} CI, {format_p_value(row.p_value, name='p')}, n={row.n_units})"
    )


@dataclass(frozen=True)
class _Table:
    """The contrast's documents, ready for dowhy: indicator, outcome and one-hot confounders."""

    data: pd.DataFrame  # treatment as 0/1 (1 = treated), the graph's outcome, one column per dummy
    treatment: str
    outcome: str  # the graph's outcome node, the outcome's column in `data`
    dummies: tuple[str, ...]
    strata: pd.Series  # per document, its stratum label of the adjustment set

    @property
    def treated(self) -> np.ndarray:
        return self.data[self.treatment].to_numpy() == 1


@dataclass(frozen=True)
class _Rows:
    """Makes the effect rows of one contrast, which share everything but method, population and numbers."""

    treatment: str
    contrast: str
    values: tuple[str, str]  # treated, reference
    counts: tuple[int, int]  # documents with each value
    level: float

    def _where(self, target: Target) -> dict[str, Any]:
        if target == "ate":
            return dict(moderator=None, stratum=None, n_units=sum(self.counts))
        arm = 0 if target == "att" else 1
        return dict(moderator=self.treatment, stratum=self.values[arm], n_units=self.counts[arm])

    def interval(
        self, method: str, target: Target, estimate: float, std_error: float, low: float, high: float, p: float
    ) -> EffectEstimate:
        return EffectEstimate(
            analysis="observational",
            estimand="total",
            treatment=self.treatment,
            contrast=self.contrast,
            estimate=estimate,
            ci_low=low,
            ci_high=high,
            std_error=std_error,
            p_value=p,
            method=method,
            level=self.level,
            **self._where(target),
        )

    def normal(self, method: str, target: Target, result: AdjustedEstimate) -> EffectEstimate:
        """The row of an estimate with a normal interval and test; not estimable when not finite."""
        estimate, std_error = result.estimate, result.std_error
        if not (math.isfinite(estimate) and math.isfinite(std_error)):
            return self.not_estimable(
                method, target, f"{method} gave a non-finite estimate ({estimate}) or standard error ({std_error})"
            )
        half = NormalDist().inv_cdf(0.5 + self.level / 2) * std_error
        p = math.erfc(abs(estimate) / std_error / math.sqrt(2)) if std_error > 0 else math.nan  # two-sided
        return self.interval(method, target, estimate, std_error, estimate - half, estimate + half, p)

    def not_estimable(self, method: str, target: Target, reason: str) -> EffectEstimate:
        return EffectEstimate.not_estimable(
            reason,
            analysis="observational",
            estimand="total",
            treatment=self.treatment,
            contrast=self.contrast,
            method=method,
            level=self.level,
            **self._where(target),
        )


def estimate_observational(
    frame: pd.DataFrame,
    *,
    graph: CausalGraph,
    treatment: str,
    contrast: tuple[str, str],
    outcome: str = "outcome",
    level: float = 0.95,
    seed: int = 0,
    methods: Sequence[ObservationalMethod] = ("regression", "ipw", "aipw", "matching"),
    propensity: Propensity = "logistic",
    directions: bool = False,
    refuters: Sequence[Refuter] = ("placebo_treatment", "random_common_cause", "data_subset"),
    n_refutation_simulations: int = 20,
) -> ObservationalResult:
    """Backdoor-adjusted effect of `treatment` (treated vs reference) on the outcome, from documents.

    `frame` has one row per document: one column per annotated factor and `outcome`
    (float); it is not modified. Graph factors without a column are unobserved. Rows
    whose treatment is neither contrast value are left out. dowhy identifies the
    backdoor estimand from `graph` (EstimationError when no adjustment set of annotated
    factors exists, naming the missing factors); each of `methods` estimates the average
    effect over the documents: "regression" (g-computation: OLS with treatment x
    dummy interactions), "ipw" (Hajek), "aipw" (doubly robust), "matching" (nearest
    propensity, Abadie-Imbens variance), "exact_matching" (within strata). `propensity`
    is the model of ipw, aipw, matching and `overlap`. `directions` adds each method's
    effect on the treated and on the reference documents. What the data cannot support
    (a value with under 2 documents, a stratum without the arm matching needs, a failing
    fit) gives rows with a reason, not an error. Refuters re-run regression and ipw
    `n_refutation_simulations` times each. Same seed, same numbers.
    """
    settings = _check_options(methods, refuters, n_refutation_simulations, propensity, directions)
    level, seed = _check_level(level), _check_seed(seed)
    treated, reference = _check_contrast(frame, graph, treatment, contrast, outcome)
    annotated = tuple(f for f in graph.factors if f in frame.columns)
    notes: list[str] = []
    with _caught(notes, "identification"):
        estimand, adjustment = _identify(graph, treatment, annotated, notes)
    table = _table(frame, graph.outcome, treatment, treated, reference, outcome, adjustment)
    estimand_text = estimand.__str__(only_target_estimand=True)
    estimand.set_backdoor_variables(list(table.dummies))
    counts = (int(table.treated.sum()), int((~table.treated).sum()))
    rows = _Rows(treatment, f"{treated} vs {reference}", (treated, reference), counts, level)
    targets = TARGETS if settings.directions else TARGETS[:1]
    scarce = _scarcity(treatment, (treated, reference), counts)
    if scarce is not None:
        overlap = _overlap(table, None)
        effects = [rows.not_estimable(method, target, scarce) for method in settings.methods for target in targets]
        effects.insert(0, rows.not_estimable("naive", "ate", scarce))
        refutations: list[dict[str, Any]] = []
    else:
        sample, failure = _sample(table, settings.propensity, seed, notes)
        overlap = _overlap(table, sample.propensity)
        notes += _overlap_warnings(overlap, settings.methods)
        lacking = _lacking(overlap)
        effects = [_naive(table, rows, notes)]
        for method in settings.methods:
            effects += _method_rows(method, sample, targets, lacking, rows, failure, notes)
        refutations = _refutations(table, estimand, effects, rows, settings, seed, notes)
    return ObservationalResult(
        treatment=treatment,
        contrast=rows.contrast,
        adjustment_set=adjustment,
        estimand=estimand_text,
        effects=EffectTable(tuple(effects)),
        refutations=pd.DataFrame(refutations, columns=list(REFUTATION_COLUMNS)),
        overlap=overlap,
        warnings=tuple(dict.fromkeys(notes)),
    )


@dataclass(frozen=True)
class _Options:
    methods: tuple[str, ...]
    refuters: tuple[str, ...]
    n_refutation_simulations: int
    propensity: Propensity
    directions: bool


def _check_options(
    methods: Sequence[str],
    refuters: Sequence[str],
    n_refutation_simulations: int,
    propensity: Propensity,
    directions: bool,
) -> _Options:
    chosen = []
    for name, given, known in (("methods", methods, tuple(_ESTIMATORS)), ("refuters", refuters, REFUTERS)):
        if isinstance(given, str):
            raise EstimationError(f"{name} must be a sequence of names; got {given!r} (write [{given!r}])")
        unknown = [item for item in given if item not in known]
        if unknown or len(set(given)) != len(given):
            raise EstimationError(f"{name} must be distinct names out of {list(known)}; got {list(given)}")
        chosen.append(tuple(given))
    value = n_refutation_simulations
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 2:
        raise EstimationError(f"n_refutation_simulations must be an integer >= 2; got {value!r}")
    if propensity not in PROPENSITY_MODELS:
        raise EstimationError(f"propensity must be one of {list(PROPENSITY_MODELS)}; got {propensity!r}")
    if not isinstance(directions, bool):
        raise EstimationError(f"directions must be True or False; got {directions!r}")
    return _Options(chosen[0], chosen[1], int(value), propensity, directions)


def _check_contrast(
    frame: pd.DataFrame, graph: CausalGraph, treatment: str, contrast: tuple[str, str], outcome: str
) -> tuple[str, str]:
    if not isinstance(frame, pd.DataFrame):
        raise EstimationError(f"frame must be a pandas DataFrame; got {type(frame).__name__}")
    if not isinstance(graph, CausalGraph):
        raise EstimationError(f"graph must be a graphs.CausalGraph; got {type(graph).__name__}")
    if treatment not in graph.factors:
        raise EstimationError(
            f"treatment {treatment!r} is not a factor of the graph; its factors are {list(graph.factors)}"
        )
    missing = [column for column in (treatment, outcome) if column not in frame.columns]
    if missing:
        raise EstimationError(
            f"frame must have column(s) {missing} (the treatment's annotation and the outcome); "
            f"it has {list(frame.columns)}"
        )
    if outcome in graph.factors:
        raise EstimationError(
            f"outcome column {outcome!r} is also a factor of the graph; pass the outcome's column name"
        )
    if (
        not isinstance(contrast, (tuple, list))
        or len(contrast) != 2
        or not all(isinstance(value, str) for value in contrast)
        or contrast[0] == contrast[1]
    ):
        raise EstimationError(
            f"contrast must be two different values (treated, reference) of {treatment!r}; got {contrast!r}"
        )
    return contrast[0], contrast[1]


def _identify(
    graph: CausalGraph, treatment: str, annotated: tuple[str, ...], notes: list[str]
) -> tuple[Any, tuple[str, ...]]:
    """dowhy's backdoor estimand over the annotated factors, and its adjustment set."""
    from dowhy.causal_identifier import EstimandType, identify_effect_auto

    dag = graph.to_networkx()
    if graph.outcome not in graph.descendants(treatment):
        # dowhy answers "zero by assumption" here; adding the edge tests the graph's claim instead,
        # and leaves every backdoor path (which enters the treatment) as it was.
        dag.add_edge(treatment, graph.outcome)
        notes.append(
            f"the graph declares no directed path from {treatment} to {graph.outcome}; it is "
            f"estimated as if the edge {treatment} -> {graph.outcome} existed, so an effect "
            "whose interval excludes 0 contradicts the graph"
        )
    estimand = identify_effect_auto(
        dag, [treatment], [graph.outcome], [*annotated, graph.outcome], EstimandType.NONPARAMETRIC_ATE
    )
    if estimand.estimands.get("backdoor") is None:
        needed = [f for f in graph.backdoor_adjustment_set(treatment) if f not in annotated]
        raise EstimationError(
            f"the backdoor criterion for {treatment} -> {graph.outcome} cannot be met with the annotated "
            f"factors {list(annotated)}: adjusting needs {needed}, which the frame does not annotate; "
            "add those columns, or declare a graph in which they do not confound the treatment"
        )
    estimand.set_identifier_method("backdoor")
    order = {factor: index for index, factor in enumerate(graph.factors)}
    return estimand, tuple(sorted(estimand.get_backdoor_variables(), key=order.__getitem__))


def _table(
    frame: pd.DataFrame,
    outcome_node: str,
    treatment: str,
    treated: str,
    reference: str,
    outcome: str,
    adjustment: tuple[str, ...],
) -> _Table:
    kept = frame[frame[treatment].astype(str).isin([treated, reference])]
    for column in adjustment:
        if kept[column].isna().any():
            raise EstimationError(
                f"frame[{column!r}] must annotate every document of the contrast (it is in the "
                f"adjustment set); {int(kept[column].isna().sum())} are missing, first at index "
                f"{kept.index[kept[column].isna()].tolist()[0]!r}"
            )
    try:
        values = kept[outcome].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise EstimationError(f"frame[{outcome!r}] must be numeric; got dtype {kept[outcome].dtype}") from error
    if not np.all(np.isfinite(values)):
        bad = kept.index[~np.isfinite(values)]
        raise EstimationError(
            f"frame[{outcome!r}] must be finite; {len(bad)} document(s) are not, first at index {bad.tolist()[0]!r}"
        )
    factors = kept[list(adjustment)].astype(str).reset_index(drop=True)
    dummies = (
        pd.get_dummies(factors, prefix_sep="=", drop_first=True, dtype=np.float64)
        if adjustment
        else pd.DataFrame(index=factors.index)
    )
    data = pd.concat(
        [
            pd.DataFrame(
                {treatment: (kept[treatment].astype(str) == treated).to_numpy(dtype=np.int64), outcome_node: values}
            ),
            dummies,
        ],
        axis=1,
    )
    labels = [f"{factor}=" + factors[factor] for factor in adjustment]
    strata = labels[0].str.cat(labels[1:], sep=", ") if labels else pd.Series("all", index=factors.index)
    return _Table(data, treatment, outcome_node, tuple(dummies.columns), strata)


def _scarcity(treatment: str, values: tuple[str, str], counts: tuple[int, int]) -> str | None:
    """Why no method can run when a contrast value has fewer than 2 documents, else None."""
    problems = [
        f"no document has {treatment}={value}" if count == 0 else f"only 1 document has {treatment}={value}"
        for value, count in zip(values, counts)
        if count < 2
    ]
    if not problems:
        return None
    return f"{' and '.join(problems)}; each contrast value needs at least 2 documents"


def _sample(table: _Table, propensity: Propensity, seed: int, notes: list[str]) -> tuple[Sample, str | None]:
    """The estimators' arrays, and why the propensity model failed (None when it did not)."""
    features = table.data[list(table.dummies)].to_numpy(dtype=np.float64)
    treated = table.treated
    with _caught(notes, f"the {propensity} propensity model"):
        scores = _attempt(fit_propensity, features, treated, propensity, seed)
    failure = None if isinstance(scores, np.ndarray) else f"the {propensity} propensity model failed: {scores}"
    sample = Sample(
        outcome=table.data[table.outcome].to_numpy(dtype=np.float64),
        treated=treated,
        features=features,
        strata=pd.factorize(table.strata, sort=True)[0],
        propensity=scores if failure is None else np.full(treated.size, np.nan),
        propensity_model=propensity,
    )
    return sample, failure


def _overlap(table: _Table, propensity: np.ndarray | None) -> pd.DataFrame:
    """Per stratum: documents per arm and the range of the fitted propensity (nan when not fitted)."""
    indicator = table.treated.astype(np.int64)
    scores = np.full(indicator.size, np.nan) if propensity is None else propensity
    grouped = pd.DataFrame({"stratum": table.strata, "treated": indicator, "propensity": scores}).groupby(
        "stratum", sort=True
    )
    overlap = pd.DataFrame(
        {
            "n_treated": grouped["treated"].sum(),
            "n_reference": grouped["treated"].size() - grouped["treated"].sum(),
            "propensity_min": grouped["propensity"].min(),
            "propensity_max": grouped["propensity"].max(),
        }
    ).reset_index()
    overlap["supported"] = (overlap["n_treated"] > 0) & (overlap["n_reference"] > 0)
    return overlap.astype({"n_treated": np.int64, "n_reference": np.int64})[list(OVERLAP_COLUMNS)]


def _overlap_warnings(overlap: pd.DataFrame, methods: tuple[str, ...]) -> list[str]:
    """One line for strata without both arms, one for propensities that ipw and aipw clip."""
    notes = []
    weighted = [m for m in _WEIGHTED if m in methods]
    unsupported = int((~overlap["supported"]).sum())
    if unsupported:
        consequences = ["regression extrapolates into them"] if "regression" in methods else []
        if weighted:
            consequences.append(f"{_and(weighted)} cannot balance them")
        matched = [m for m in _MATCHED if m in methods]
        if matched:
            verb = "give" if len(matched) > 1 else "gives"
            consequences.append(f"{_and(matched)} {verb} no estimate for a population that needs the missing arm")
        notes.append(
            f"positivity fails in {unsupported} of {len(overlap)} strata (one arm has no document there; "
            f"see overlap){': ' if consequences else ''}{'; '.join(consequences)}"
        )
    low, high = PROPENSITY_BOUNDS
    clipped = int(
        (overlap["supported"] & ((overlap["propensity_min"] < low) | (overlap["propensity_max"] > high))).sum()
    )
    if clipped and weighted:
        clip = "clips it there, which biases it" if len(weighted) == 1 else "clip it there, which biases them"
        notes.append(
            f"propensity outside [{low}, {high}] in {clipped} of {len(overlap)} strata (see overlap): "
            f"{_and(weighted)} {clip}"
        )
    return notes


def _naive(table: _Table, rows: _Rows, notes: list[str]) -> EffectEstimate:
    """Difference of the arms' mean outcomes with a Welch interval and test."""
    outcomes, indicator = table.data[table.outcome].to_numpy(), table.treated
    with _caught(notes, "naive"):
        test = stats.ttest_ind(outcomes[indicator], outcomes[~indicator], equal_var=False)
        low, high = test.confidence_interval(confidence_level=rows.level)
    std_error = math.sqrt(sum(group.var(ddof=1) / group.size for group in (outcomes[indicator], outcomes[~indicator])))
    difference = float(outcomes[indicator].mean() - outcomes[~indicator].mean())
    return rows.interval("naive", "ate", difference, std_error, float(low), float(high), float(test.pvalue))


def _method_rows(
    method: str,
    sample: Sample,
    targets: tuple[Target, ...],
    lacking: dict[str, list[str]],
    rows: _Rows,
    propensity_failure: str | None,
    notes: list[str],
) -> list[EffectEstimate]:
    """One method's rows, one per target: its estimate, or why the data do not allow one."""
    reasons = {target: _unmatched(method, target, lacking) for target in targets}
    if propensity_failure is not None and method in _ON_PROPENSITY:
        reasons = dict.fromkeys(targets, propensity_failure)
    wanted = tuple(target for target in targets if reasons[target] is None)
    with _caught(notes, method):
        estimates = _attempt(_ESTIMATORS[method], sample, wanted) if wanted else {}
    if isinstance(estimates, str):
        reasons = {target: reasons[target] or f"{method} failed: {estimates}" for target in targets}
    return [
        rows.normal(method, target, estimates[target])
        if reasons[target] is None
        else rows.not_estimable(method, target, reasons[target])
        for target in targets
    ]


def _lacking(overlap: pd.DataFrame) -> dict[str, list[str]]:
    """Per arm, the strata where it has no document but the other arm has some."""
    present = {"treated": overlap["n_treated"] > 0, "reference": overlap["n_reference"] > 0}
    return {
        arm: overlap.loc[present[other] & ~present[arm], "stratum"].tolist()
        for arm, other in (("treated", "reference"), ("reference", "treated"))
    }


def _unmatched(method: str, target: Target, lacking: dict[str, list[str]]) -> str | None:
    """Why a matching method has no estimate for `target`: strata lacking the arm it matches to."""
    if method not in _MATCHED:
        return None
    reasons = [
        f"no {missing} documents in strata {'; '.join(lacking[missing])}; {method} cannot find matches "
        f"for the {present} documents there"
        for missing, present, directed in (("reference", "treated", "att"), ("treated", "reference", "atc"))
        if target in ("ate", directed) and lacking[missing]
    ]
    return ". ".join(reasons) or None


def _refutations(
    table: _Table,
    estimand: Any,
    effects: list[EffectEstimate],
    rows: _Rows,
    settings: _Options,
    seed: int,
    notes: list[str],
) -> list[dict[str, Any]]:
    """dowhy's refuters on the estimated regression and ipw rows; the other methods are noted as not refuted."""
    if not settings.refuters:
        return []
    skipped = [m for m in settings.methods if m not in REFUTED]
    if skipped:
        notes.append(f"refuters run on regression and ipw only: dowhy cannot re-run {_and(skipped)}")
    estimated = {e.method for e in effects if e.moderator is None and e.estimable}
    records = []
    for method in (m for m in settings.methods if m in REFUTED and m in estimated):
        if method == "ipw" and not table.dummies:
            notes.append("ipw is not refuted: dowhy's ipw needs a confounder, and the adjustment set is empty here")
            continue
        with _caught(notes, f"refuting {method}"):
            estimate = _attempt(dowhy_estimate, table.data, estimand, table.dummies, method, settings.propensity, seed)
            if isinstance(estimate, str):
                notes.append(f"{method} is not refuted: dowhy's estimator failed: {estimate}")
                continue
            for refuter in settings.refuters:
                record = _attempt(
                    refute, table.data, estimand, estimate, refuter, method, seed, settings.n_refutation_simulations
                )
                if isinstance(record, str):
                    notes.append(f"refuter {refuter} on {method} failed: {record}")
                else:
                    records.append({"treatment": rows.treatment, "contrast": rows.contrast, **record})
    return records


def _attempt(call: Callable[..., _Result], *args: Any) -> _Result | str:
    """call(*args), or its error as text: one failing fit must not take the other rows with it."""
    try:
        return call(*args)
    except Exception as error:  # any estimator error becomes a row's reason
        return f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def _caught(notes: list[str], source: str) -> Iterator[None]:
    """Record the warnings raised inside as lines of `notes` instead of printing them.

    dowhy's own deprecation warnings (pandas 3 API changes) are dropped; dowhy logs
    through a NullHandler, so its log lines appear only where the caller asks.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", module=r"dowhy\.")
        try:
            yield
        finally:
            notes.extend(_warning_line(source, w) for w in caught)


def _warning_line(source: str, warning: warnings.WarningMessage) -> str:
    """One line per understood kind of warning (the same text wherever it arose), else its source and message."""
    from sklearn.exceptions import ConvergenceWarning
    from statsmodels.tools.sm_exceptions import SingularMatrixWarning

    if issubclass(warning.category, ConvergenceWarning):
        return (
            "the propensity model did not converge: a stratum whose documents all have one value pushes "
            "its fitted propensity toward 0 or 1 (see overlap)"
        )
    if issubclass(warning.category, SingularMatrixWarning):
        return (
            "the outcome regression is rank-deficient (a factor value missing from one arm, or factors that "
            "always go together): regression and aipw predict that arm there from the other strata (see overlap)"
        )
    return f"{source} warned: {warning.category.__name__}: {warning.message}"


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
