"""The estimation step: every contrast's effects from the evaluated units, from each source it asks for.

Stage: steps. May import causal, experiments.errors, the config and run stages.

A templated run gives interventional estimates ("ate", "cate", "heterogeneity") from the
paired differences of rendered counterfactuals. With documents each contrast draws on
the sources its config names, in that order: "rewrite" (the same rows, from rewritten
documents), "observational" (backdoor estimates from the annotations, with the
confounding gap when the rewrite is there too) and "human_pairs" (the documents people
edited between the contrast's two values). `directions` adds, for every source, the
effect on the documents at each factual value: the rewrite's and the human pairs' rows
with the treatment as moderator, the observational effect on the treated and on the
reference documents, so rows line up direction by direction.

The confounding gap is the observational regression minus the interventional t estimate
on the same documents (those annotated with one of the contrast's two values). Its
interval treats the two estimates as independent (standard error the root of the sum of
squared standard errors); they come from the same documents, so it is an approximation,
and a gap whose interval excludes zero says the annotated adjustment does not recover
what the model does when only the treatment's words change.

A contrast or direction that cannot be estimated (no rewritable document, no edit, an
estimator's error) is a row whose `reason` says why; the rest of the run goes on.
Warnings raised while estimating are gathered, counted and returned, not printed. All
fixed-sample tests are corrected as one family; confidence sequences (a run sampled to
a precision) as their own.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd
from scipy import stats

from causal import (
    EffectEstimate,
    EffectTable,
    EstimationError,
    SequenceInterval,
    estimate_observational,
    estimate_paired_effects,
)
from experiments.config import ContrastPlan, Experiment, ObservationalConfig
from experiments.run import EvaluatedUnits, Progress, counting, stage
from experiments.steps._seeds import ESTIMATION, HUMAN_PAIRS, OBSERVATIONAL, analysis_seed


@dataclass(frozen=True)
class Estimates:
    """The run's effects, with dowhy's refutations and overlap and the warnings of the estimates.

    `refutations` and `overlap` are None when no observational estimate was made.
    """

    effects: EffectTable
    refutations: pd.DataFrame | None
    overlap: pd.DataFrame | None
    warnings: tuple[str, ...]


@dataclass
class _Collected:
    tables: list[EffectTable]
    refutations: list[pd.DataFrame]
    overlap: list[pd.DataFrame]
    notes: list[str]


def estimate_effects(
    experiment: Experiment, units: Mapping[str, EvaluatedUnits], *, progress: Progress | None = None
) -> Estimates:
    """Effects of every contrast on every outcome (`units` per outcome name, in config order), from each source.

    Every fixed-sample test of the run, whatever its outcome, is corrected as one family.
    Notes name their outcome when the run has several; overlap and unused human edits (about
    the data, not the outcome) are reported once.
    """
    config = experiment.config
    several = len(units) > 1
    collected = _Collected([], [], [], [])
    sequences: list[EffectTable] = []
    observational = len(units) * sum("observational" in plan.sources for plan in experiment.contrasts)
    report = counting(stage(progress, "observational estimates (dowhy)"), observational) if observational else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for position, (name, evaluated) in enumerate(units.items()):
            found = _Collected([], [], [], [])
            _estimate_outcome(experiment, evaluated, found, report)
            collected.tables += [table.of_outcome(name) for table in found.tables]
            collected.refutations += [frame.assign(outcome=name) for frame in found.refutations]
            if position == 0:
                collected.overlap += found.overlap
            collected.notes += [f"{name}: {note}" if several else note for note in found.notes]
            if evaluated.sequences is not None:
                sequences.append(_sequence_rows(experiment, evaluated.sequences).of_outcome(name))
    edited = next(iter(units.values())).human_pairs  # the same edits whichever outcome reads them
    notes = collected.notes + _unused_edits(experiment, edited) + _gathered(caught)
    effects = EffectTable.concat(collected.tables).corrected(config.inference.correction)
    if sequences:
        effects = _with_sequence_rows(experiment, effects, sequences)
    if not collected.refutations:
        return Estimates(effects, None, None, tuple(notes))
    frame = pd.concat(collected.overlap, ignore_index=True)
    refutations = pd.concat(collected.refutations, ignore_index=True)
    return Estimates(
        effects,
        refutations[["outcome", *refutations.columns[:-1]]],
        frame[["treatment", "contrast", *frame.columns[:-2]]],
        tuple(notes),
    )


def _estimate_outcome(
    experiment: Experiment, units: EvaluatedUnits, collected: _Collected, report: Callable[[int], None] | None
) -> None:
    """Every contrast's rows on one outcome's units, from each of its sources, into `collected`."""
    for index, plan in enumerate(experiment.contrasts):
        for source in plan.sources or ("rewrite",):
            if source == "rewrite":
                paired = _with_values(units.paired(plan), plan, "units", collected.notes)
                collected.tables.append(_interventional(experiment, plan, paired, index, exact=units.exact))
            elif source == "observational":
                _observational(experiment, plan, units, index, collected)
                if report is not None:
                    report(1)
            else:
                pairs = units.human_pairs
                if pairs is not None:
                    pairs = _with_values(pairs, plan, "human edits", collected.notes)
                collected.tables.append(_human_pairs(experiment, plan, pairs, index))


def _interventional(
    experiment: Experiment,
    plan: ContrastPlan,
    paired: pd.DataFrame,
    index: int,
    *,
    exact: bool,
    overall_only: bool = False,
) -> EffectTable:
    """Paired effects of one contrast (per moderator stratum and direction too, unless `overall_only`).

    Only documents can lack an arm (a rewrite that was excluded): then the rows say so.
    """
    config = experiment.config
    moderators = () if overall_only else (*plan.moderators, *((plan.treatment,) if plan.directions else ()))
    if paired.empty:
        reason = (
            f"no document could be rewritten to both {plan.treated.value} and {plan.reference.value} "
            "(rewrites.parquet says why for each)"
        )
        return EffectTable(_not_estimable(experiment, plan, reason, analysis="ate", methods=("t", "bootstrap")))
    return estimate_paired_effects(
        paired,
        treatment=plan.treatment,
        contrast=plan.contrast,
        estimand=plan.estimand,
        moderators=moderators,
        exact=exact,
        level=config.inference.level,
        n_bootstrap=config.inference.bootstrap,
        bootstrap_method=config.inference.bootstrap_method,
        seed=analysis_seed(config.sampling.seed, ESTIMATION + index),
    )


def _observational(
    experiment: Experiment, plan: ContrastPlan, units: EvaluatedUnits, index: int, collected: _Collected
) -> None:
    """Backdoor estimates of one contrast, and the confounding gap when the contrast is rewritten too."""
    config = experiment.config
    options = config.observational or ObservationalConfig()
    name = f"{plan.treatment} ({plan.contrast})"
    observed = units.observed.dropna(subset=["outcome"])
    if len(observed) < len(units.observed):
        collected.notes.append(
            f"{name}: {len(units.observed) - len(observed)} document(s) whose generated answers all went unparsed "
            "are left out of the observational estimates"
        )
    try:
        result = estimate_observational(
            observed,
            graph=experiment.graph,
            treatment=plan.treatment,
            contrast=(plan.treated.value, plan.reference.value),
            level=config.inference.level,
            seed=analysis_seed(config.sampling.seed, OBSERVATIONAL + index),
            methods=tuple(options.estimators),
            propensity=options.propensity,
            directions=plan.directions,
        )
    except EstimationError as error:
        methods = ("naive", *options.estimators)
        collected.tables.append(
            EffectTable(_not_estimable(experiment, plan, str(error), analysis="observational", methods=methods))
        )
        if "rewrite" in plan.sources:
            reason = "the observational estimate failed (see its rows)"
            collected.tables.append(EffectTable((_gap_not_estimable(experiment, plan, reason),)))
        return
    collected.tables.append(result.effects)
    collected.refutations.append(result.refutations)
    collected.overlap.append(result.overlap.assign(treatment=plan.treatment, contrast=plan.contrast))
    collected.notes.extend(f"{name}: {warning}" for warning in result.warnings)
    if "rewrite" not in plan.sources:
        return
    paired = units.paired(plan).dropna(subset=["difference"])
    same = paired[paired["source"].isin([plan.treated.value, plan.reference.value])]
    if same.empty:
        others = len(paired)
        reason = (
            f"no document annotated {plan.treated.value} or {plan.reference.value} could be rewritten to both "
            f"values, so there is no interventional estimate on the documents the observational one uses"
            + (f" ({others} documents with other values were, and enter the rewrite rows)" if others else "")
        )
        collected.tables.append(EffectTable((_gap_not_estimable(experiment, plan, reason),)))
        return
    interventional = _interventional(experiment, plan, same, index, exact=units.exact, overall_only=True)
    collected.tables.append(EffectTable((confounding_gap(result.effects, interventional),)))


def confounding_gap(observational: EffectTable, interventional: EffectTable) -> EffectEstimate:
    """Observational regression minus the interventional t estimate, with a normal interval (see module docstring).

    Not estimable (a row saying why) when the regression was not asked for or not estimated.
    """
    regression = next(
        (e for e in observational.estimates if e.method == "regression" and e.moderator is None and e.estimable),
        None,
    )
    paired = next(e for e in interventional.estimates if e.method == "t" and e.analysis == "ate")
    if regression is None:
        return EffectEstimate.not_estimable(
            "the gap needs the observational regression, which was not asked for or not estimated (see its row)",
            analysis="confounding_gap",
            estimand=paired.estimand,
            treatment=paired.treatment,
            contrast=paired.contrast,
            method="regression_minus_t",
            level=paired.level,
        )
    estimate = regression.estimate - paired.estimate
    std_error = math.hypot(regression.std_error, paired.std_error)
    half = stats.norm.ppf(0.5 + regression.level / 2) * std_error
    p_value = float(2 * stats.norm.sf(abs(estimate) / std_error)) if std_error > 0 else math.nan
    return EffectEstimate(
        analysis="confounding_gap",
        estimand=paired.estimand,
        treatment=paired.treatment,
        contrast=paired.contrast,
        moderator=None,
        stratum=None,
        estimate=estimate,
        ci_low=estimate - half,
        ci_high=estimate + half,
        std_error=std_error,
        p_value=p_value,
        n_units=paired.n_units,
        method="regression_minus_t",
        level=regression.level,
    )


def _gap_not_estimable(experiment: Experiment, plan: ContrastPlan, reason: str) -> EffectEstimate:
    return _not_estimable(experiment, plan, reason, analysis="confounding_gap", methods=("regression_minus_t",))[0]


def _human_pairs(experiment: Experiment, plan: ContrastPlan, pairs: pd.DataFrame | None, index: int) -> EffectTable:
    """The edits between the contrast's two values, signed as treated minus reference, per direction if asked.

    An edit from the reference to the treated value gives outcome(edit) - outcome(original);
    one the other way gives its negative, so both read as the contrast reads. No edit of
    the contrast gives a row saying so when the config asked for human pairs, none by default. With
    `directions` the rows split by the original's value (the treatment as moderator), and
    the test of a difference between directions is a "human_pairs" row of method "wald_hc3".
    """
    config = experiment.config
    treated, reference = plan.treated.value, plan.reference.value
    edits = (
        pd.DataFrame(columns=["factor", "source", "target", "difference"])
        if pairs is None
        else pairs[
            (pairs["factor"] == plan.treatment)
            & (
                ((pairs["source"] == reference) & (pairs["target"] == treated))
                | ((pairs["source"] == treated) & (pairs["target"] == reference))
            )
        ]
    )
    if edits.empty and not plan.sources_given:
        return EffectTable(())
    if edits.empty:
        reason = f"no human edit changes {plan.treatment} between {reference} and {treated}"
        return EffectTable(_not_estimable(experiment, plan, reason, analysis="human_pairs", methods=("t", "bootstrap")))
    signed = edits["difference"].where(edits["target"] == treated, -edits["difference"])
    frame = pd.DataFrame({"difference": signed.to_numpy(), plan.treatment: edits["source"].to_numpy()})
    table = estimate_paired_effects(
        frame,
        treatment=plan.treatment,
        contrast=plan.contrast,
        estimand=plan.estimand,
        moderators=(plan.treatment,) if plan.directions else (),
        level=config.inference.level,
        n_bootstrap=config.inference.bootstrap,
        bootstrap_method=config.inference.bootstrap_method,
        seed=analysis_seed(config.sampling.seed, HUMAN_PAIRS + index),
    )
    return EffectTable(tuple(dataclasses.replace(row, analysis="human_pairs") for row in table.estimates))


def _with_values(paired: pd.DataFrame, plan: ContrastPlan, what: str, notes: list[str]) -> pd.DataFrame:
    """The rows whose difference is a number; a note counts the others (a generated answer no pattern parsed)."""
    missing = paired["difference"].isna()
    if not missing.any():
        return paired
    notes.append(
        f"{plan.treatment} ({plan.contrast}): {int(missing.sum())} of {len(paired)} {what} have no parsed "
        "generated answer in an arm and are left out"
    )
    return paired[~missing]


def _unused_edits(experiment: Experiment, pairs: pd.DataFrame | None) -> list[str]:
    """One note naming the human edits no contrast with the human_pairs source asks for, by kind."""
    if pairs is None:
        return []
    asked = {
        (plan.treatment, frozenset((plan.treated.value, plan.reference.value)))
        for plan in experiment.contrasts
        if "human_pairs" in plan.sources
    }
    kinds = Counter(
        (factor, source, target)
        for factor, source, target in zip(pairs["factor"], pairs["source"], pairs["target"], strict=True)
        if (factor, frozenset((source, target))) not in asked
    )
    if not kinds:
        return []
    listed = ", ".join(f"{factor} {source} -> {target} ({count})" for (factor, source, target), count in kinds.items())
    return [
        f"{sum(kinds.values())} human edit(s) enter no estimate, as no effect with source human_pairs "
        f"contrasts their values: {listed}"
    ]


def _gathered(caught: list[warnings.WarningMessage]) -> list[str]:
    """The warnings libraries raised while estimating, one note per distinct message with its count."""
    counts = Counter(f"{item.category.__name__}: {item.message}" for item in caught)
    return [
        f"while estimating, {message}" + (f" (raised {count} times)" if count > 1 else "")
        for message, count in counts.items()
    ]


def _not_estimable(
    experiment: Experiment, plan: ContrastPlan, reason: str, *, analysis: str, methods: tuple[str, ...]
) -> tuple[EffectEstimate, ...]:
    """One row per method that says why this contrast has no estimate from this source."""
    level = experiment.config.inference.level
    return tuple(
        EffectEstimate.not_estimable(
            reason,
            analysis=analysis,
            estimand=plan.estimand,
            treatment=plan.treatment,
            contrast=plan.contrast,
            method=method,
            level=level,
        )
        for method in methods
    )


def _sequence_rows(experiment: Experiment, intervals: tuple[SequenceInterval, ...]) -> EffectTable:
    """One anytime-valid row per contrast (`intervals` in contrast order), method "asymptotic_cs"."""
    return EffectTable(
        tuple(
            EffectEstimate(
                analysis="ate",
                estimand=plan.estimand,
                treatment=plan.treatment,
                contrast=plan.contrast,
                moderator=None,
                stratum=None,
                estimate=interval.estimate,
                ci_low=interval.ci_low,
                ci_high=interval.ci_high,
                std_error=interval.std_error,
                p_value=interval.p_value,
                n_units=interval.n_units,
                method=interval.method,
                level=interval.level,
            )
            for plan, interval in zip(experiment.contrasts, intervals, strict=True)
        )
    )


def _with_sequence_rows(experiment: Experiment, effects: EffectTable, sequences: list[EffectTable]) -> EffectTable:
    """`effects` followed by the anytime-valid rows, whose p-values are adjusted as their own family."""
    correction = experiment.config.inference.correction
    rows = EffectTable.concat(sequences).corrected(correction)
    return EffectTable(effects.estimates + rows.estimates, correction=correction)
