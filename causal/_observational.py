"""Observational effects from a table of real documents: identify, estimate, refute (dowhy).

Each row is one document with its annotated factors (string values) and the model's
outcome on it. Nothing is intervened on, so the effect of a factor is identified from
the declared graph by the backdoor criterion over the annotated factors only (the
others are unobserved), then estimated by regression and inverse propensity weighting
and checked by dowhy's refuters. The plain difference of means ("naive") is reported
beside them, so the distance between the two shows how much confounding was removed.

dowhy is imported where it is used (it is slow to import) and is given fresh copies of
the data, because its estimators add columns to the frames they are handed.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from causal._estimate import _check_level, _check_seed
from causal._format import format_p_value
from causal._results import EffectEstimate, EffectTable
from causal.errors import EstimationError
from graphs import CausalGraph

REFUTATION_COLUMNS = ("treatment", "contrast", "method", "refuter", "estimate", "new_effect", "p_value")
OVERLAP_COLUMNS = ("stratum", "n_treated", "n_reference", "propensity_min", "propensity_max", "supported")

ObservationalMethod = Literal["regression", "ipw"]
Refuter = Literal["placebo_treatment", "random_common_cause", "data_subset"]

_ESTIMATORS = {"regression": "LinearRegressionEstimator", "ipw": "PropensityScoreWeightingEstimator"}
_REFUTERS = ("placebo_treatment", "random_common_cause", "data_subset")
_PROPENSITY_BOUNDS = (0.05, 0.95)
"""dowhy's default clipping of propensity scores, passed explicitly so warnings can name it."""


@dataclass(frozen=True)
class ObservationalResult:
    """Identified estimand, effect estimates, refutations and overlap of one contrast.

    `effects` holds analysis "observational" rows: "naive" (difference of means, Welch
    interval), then each requested method ("regression": dowhy's OLS interval; "ipw":
    dowhy's weighted estimate with a conservative sandwich interval). `refutations`
    has columns `REFUTATION_COLUMNS`: per method and refuter, the estimate, the mean
    effect over the refuter's simulations (near 0 for a placebo treatment, near the
    estimate otherwise) and dowhy's p-value for that comparison (below 100 simulations
    a one-sided normal test; a small p-value is a failed refutation). `overlap` has
    `OVERLAP_COLUMNS` (one row per stratum of the adjustment set), `warnings` says where
    the estimates rest on extrapolation or on the graph's assumptions.
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
        lines += [
            f"  {e.method}: {e.estimate:.4g} [{e.ci_low:.4g}, {e.ci_high:.4g}] "
            f"({e.level:.0%} CI, {format_p_value(e.p_value, name='p')}, n={e.n_units})"
            for e in self.effects.estimates
        ]
        lines += [
            f"  refuter {r.refuter} on {r.method}: new effect {r.new_effect:.4g} "
            f"(estimate {r.estimate:.4g}, {format_p_value(r.p_value, name='p')})"
            for r in self.refutations.itertuples(index=False)
        ]
        unsupported = self.overlap.loc[~self.overlap["supported"], "stratum"].tolist()
        lines.append(f"  strata without both arms: {', '.join(unsupported) or 'none'}")
        lines += [f"  warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True)
class _Table:
    """The contrast's documents, ready for dowhy: indicator, outcome and one-hot confounders."""

    data: pd.DataFrame  # treatment as 0/1 (1 = treated), the graph's outcome, one column per dummy
    treatment: str
    dummies: tuple[str, ...]
    strata: pd.Series  # per document, its stratum label of the adjustment set


def estimate_observational(
    frame: pd.DataFrame,
    *,
    graph: CausalGraph,
    treatment: str,
    contrast: tuple[str, str],
    outcome: str = "outcome",
    level: float = 0.95,
    seed: int = 0,
    methods: Sequence[ObservationalMethod] = ("regression", "ipw"),
    refuters: Sequence[Refuter] = ("placebo_treatment", "random_common_cause", "data_subset"),
    n_refutation_simulations: int = 20,
) -> ObservationalResult:
    """Backdoor-adjusted effect of `treatment` (treated vs reference) on the outcome, from documents.

    `frame` has one row per document: one column per annotated factor and `outcome`
    (float); it is not modified. Graph factors without a column are unobserved. Rows
    whose treatment is neither contrast value are left out. dowhy identifies the
    backdoor estimand from `graph` (EstimationError when no adjustment set of annotated
    factors exists, naming the missing factors), estimates it with each of `methods`
    (categorical confounders one-hot, first sorted value as reference) and runs each
    refuter `n_refutation_simulations` times. "regression" assumes the effect is the
    same in every stratum; "ipw" does not, but needs treated and reference documents in
    every stratum (see `overlap`). Same seed, same numbers.
    """
    settings = _check_options(methods, refuters, n_refutation_simulations)
    level, seed = _check_level(level), _check_seed(seed)
    treated, reference = _check_contrast(frame, graph, treatment, contrast, outcome)
    label = f"{treated} vs {reference}"
    annotated = tuple(f for f in graph.factors if f in frame.columns)
    notes: list[str] = []
    with _quiet_dowhy():
        estimand, adjustment = _identify(graph, treatment, annotated, notes)
        table = _table(frame, graph.outcome, treatment, treated, reference, outcome, adjustment)
        estimand_text = estimand.__str__(only_target_estimand=True)
        estimand.set_backdoor_variables(list(table.dummies))
        overlap = _overlap(table)
        notes += _overlap_warnings(overlap)
        if "ipw" in settings.methods and not table.dummies:
            notes.append(
                "ipw left out: no confounder varies among these documents (the adjustment set "
                "is empty or constant), so there is nothing to weight for"
            )
        rows = [_naive(table, graph.outcome, treatment, label, level)]
        refutations = []
        for method in settings.methods:
            if method == "ipw" and not table.dummies:
                continue
            estimate, row = _estimate(table, estimand, method, treatment, label, level)
            rows.append(row)
            refutations += [
                _refute(
                    table,
                    estimand,
                    estimate,
                    refuter,
                    method,
                    treatment,
                    label,
                    seed,
                    settings.n_refutation_simulations,
                )
                for refuter in settings.refuters
            ]
    return ObservationalResult(
        treatment=treatment,
        contrast=label,
        adjustment_set=adjustment,
        estimand=estimand_text,
        effects=EffectTable(tuple(rows)),
        refutations=pd.DataFrame(refutations, columns=list(REFUTATION_COLUMNS)),
        overlap=overlap,
        warnings=tuple(notes),
    )


@dataclass(frozen=True)
class _Options:
    methods: tuple[str, ...]
    refuters: tuple[str, ...]
    n_refutation_simulations: int


def _check_options(methods: Sequence[str], refuters: Sequence[str], n_refutation_simulations: int) -> _Options:
    chosen = []
    for name, given, known in (("methods", methods, tuple(_ESTIMATORS)), ("refuters", refuters, _REFUTERS)):
        if isinstance(given, str):
            raise EstimationError(f"{name} must be a sequence of names; got {given!r} (write [{given!r}])")
        unknown = [item for item in given if item not in known]
        if unknown or len(set(given)) != len(given):
            raise EstimationError(f"{name} must be distinct names out of {list(known)}; got {list(given)}")
        chosen.append(tuple(given))
    value = n_refutation_simulations
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 2:
        raise EstimationError(f"n_refutation_simulations must be an integer >= 2; got {value!r}")
    return _Options(chosen[0], chosen[1], int(value))


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
    counts = frame[treatment].astype(str).value_counts()
    few = {value: int(counts.get(value, 0)) for value in contrast if counts.get(value, 0) < 2}
    if few:
        raise EstimationError(
            f"each contrast value needs at least 2 documents; {treatment!r} has {few} "
            f"(values present: {counts.to_dict()})"
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
    return _Table(data, treatment, tuple(dummies.columns), strata)


def _overlap(table: _Table) -> pd.DataFrame:
    """Per stratum: documents per arm and the range of the propensity model dowhy's ipw fits."""
    from sklearn.linear_model import LogisticRegression

    indicator = table.data[table.treatment].to_numpy()
    if table.dummies:
        features = table.data[list(table.dummies)]
        propensity = LogisticRegression().fit(features, indicator).predict_proba(features)[:, 1]
    else:
        propensity = np.full(indicator.size, indicator.mean())
    grouped = pd.DataFrame({"stratum": table.strata, "treated": indicator, "propensity": propensity}).groupby(
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


def _overlap_warnings(overlap: pd.DataFrame) -> list[str]:
    notes = []
    for arm, column in (("treated", "n_treated"), ("reference", "n_reference")):
        empty = overlap.loc[overlap[column] == 0, "stratum"].tolist()
        if empty:
            notes.append(
                f"no {arm} units in strata {'; '.join(empty)}: positivity fails there, so "
                "regression extrapolates into them and ipw cannot balance them"
            )
    low, high = _PROPENSITY_BOUNDS
    clipped = overlap.loc[
        overlap["supported"] & ((overlap["propensity_min"] < low) | (overlap["propensity_max"] > high)), "stratum"
    ].tolist()
    if clipped:
        notes.append(
            f"propensity outside [{low}, {high}] in strata {'; '.join(clipped)}: ipw clips it "
            "there (dowhy's default), which biases the ipw estimate"
        )
    return notes


def _naive(table: _Table, outcome_node: str, treatment: str, label: str, level: float) -> EffectEstimate:
    """Difference of the arms' mean outcomes with a Welch interval and test."""
    outcomes, indicator = table.data[outcome_node].to_numpy(), table.data[table.treatment].to_numpy() == 1
    test = stats.ttest_ind(outcomes[indicator], outcomes[~indicator], equal_var=False)
    low, high = test.confidence_interval(confidence_level=level)
    std_error = math.sqrt(sum(group.var(ddof=1) / group.size for group in (outcomes[indicator], outcomes[~indicator])))
    difference = float(outcomes[indicator].mean() - outcomes[~indicator].mean())
    return _row(
        treatment, label, "naive", difference, float(low), float(high), std_error, float(test.pvalue), table, level
    )


def _estimate(
    table: _Table, estimand: Any, method: str, treatment: str, label: str, level: float
) -> tuple[Any, EffectEstimate]:
    from dowhy.causal_estimator import estimate_effect

    estimator = _estimator(estimand, method)
    estimate = estimate_effect(
        table.data.copy(),
        [table.treatment],
        [estimand.outcome_variable[0]],
        "backdoor",
        estimator,
        control_value=0,
        treatment_value=1,
        effect_modifiers=[],
        method_params={},
    )
    value = float(estimate.value)
    if method == "regression":
        ((low, high),) = estimate.get_confidence_intervals(confidence_level=level)
        std_error = float(np.ravel(estimate.get_standard_error())[0])
        p_value = float(np.ravel(estimate.test_stat_significance()["p_value"])[0])
    else:
        low, high, std_error, p_value = _weighted_interval(
            estimate._data, table.treatment, estimand.outcome_variable[0], level
        )
    return estimate, _row(treatment, label, method, value, float(low), float(high), std_error, p_value, table, level)


def _estimator(estimand: Any, method: str) -> Any:
    from dowhy.causal_estimators.linear_regression_estimator import LinearRegressionEstimator
    from dowhy.causal_estimators.propensity_score_weighting_estimator import PropensityScoreWeightingEstimator

    if method == "regression":
        return LinearRegressionEstimator(estimand)
    low, high = _PROPENSITY_BOUNDS
    return PropensityScoreWeightingEstimator(estimand, min_ps_score=low, max_ps_score=high)


def _weighted_interval(
    data: pd.DataFrame, treatment: str, outcome: str, level: float
) -> tuple[float, float, float, float]:
    """Interval of the ipw estimate from the sandwich variance of its weighted regression.

    The Hajek estimate is the slope of the outcome on the treatment weighted by dowhy's
    "ips_weight"; its HC0 standard error treats the fitted propensities as known, which
    overstates the variance of the ATE estimate (Lunceford and Davidian, 2004): conservative.
    """
    import statsmodels.api as sm

    design = sm.add_constant(data[treatment].to_numpy(dtype=np.float64))
    fit = sm.WLS(data[outcome].to_numpy(), design, weights=data["ips_weight"].to_numpy()).fit(cov_type="HC0")
    low, high = fit.conf_int(alpha=1 - level)[1]
    return float(low), float(high), float(fit.bse[1]), float(fit.pvalues[1])


def _refute(
    table: _Table,
    estimand: Any,
    estimate: Any,
    refuter: str,
    method: str,
    treatment: str,
    label: str,
    seed: int,
    n_simulations: int,
) -> dict[str, Any]:
    from dowhy.causal_refuters.data_subset_refuter import refute_data_subset
    from dowhy.causal_refuters.placebo_treatment_refuter import PlaceboType, refute_placebo_treatment
    from dowhy.causal_refuters.random_common_cause import refute_random_common_cause

    # A RandomState object, not an int: dowhy reseeds every simulation with an int (same subset
    # each time) and draws unpermuted placebos from numpy's global generator.
    state = np.random.RandomState(_stream(seed, method, refuter).integers(2**32))
    common = dict(num_simulations=n_simulations, random_state=state)
    data = table.data.copy()
    if refuter == "placebo_treatment":
        result = refute_placebo_treatment(
            data, estimand, estimate, [table.treatment], placebo_type=PlaceboType.PERMUTE, **common
        )
    elif refuter == "random_common_cause":
        result = refute_random_common_cause(data, estimand, estimate, **common)
    else:
        result = refute_data_subset(data, estimand, estimate, subset_fraction=0.8, **common)
    return {
        "treatment": treatment,
        "contrast": label,
        "method": method,
        "refuter": refuter,
        "estimate": float(result.estimated_effect),
        "new_effect": float(result.new_effect),
        "p_value": float(result.refutation_result["p_value"]),
    }


def _stream(seed: int, method: str, refuter: str) -> np.random.Generator:
    """Generator keyed by fixed registry positions, so asking for fewer refuters changes no other number."""
    keys = (*_ESTIMATORS, *_REFUTERS)
    return np.random.default_rng([seed, keys.index(method), keys.index(refuter)])


def _row(
    treatment: str,
    label: str,
    method: str,
    estimate: float,
    low: float,
    high: float,
    std_error: float,
    p_value: float,
    table: _Table,
    level: float,
) -> EffectEstimate:
    return EffectEstimate(
        analysis="observational",
        estimand="total",
        treatment=treatment,
        contrast=label,
        moderator=None,
        stratum=None,
        estimate=estimate,
        ci_low=low,
        ci_high=high,
        std_error=float(std_error),
        p_value=p_value,
        n_units=len(table.data),
        method=method,
        level=level,
    )


@contextlib.contextmanager
def _quiet_dowhy() -> Iterator[None]:
    """Hide the deprecation warnings dowhy's own code raises (pandas 3 API changes).

    Warnings raised elsewhere (e.g. sklearn's ConvergenceWarning) still surface. dowhy
    logs through a NullHandler, so its log lines appear only where the caller asks.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"dowhy\.")
        yield
