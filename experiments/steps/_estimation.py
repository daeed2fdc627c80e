"""The estimation step: every contrast's effects from the evaluated units, from each source they support.

Stage: steps. May import causal, experiments.errors, the config and run stages.

Every run gives interventional estimates ("ate", "cate", "heterogeneity") from paired
differences. Documents add, for total effects, dowhy's backdoor estimate from the
annotations ("observational") and the confounding gap: the observational regression
minus the interventional t estimate on the same documents (those annotated with one of
the contrast's two values). Its interval treats the two estimates as independent
(standard error the root of the sum of squared standard errors); they come from the same
documents, so it is an approximation, and a gap whose interval excludes zero says the
annotated adjustment does not recover what the model does when only the treatment's
words change. Human-edited pairs give "human_pairs" rows. All fixed-sample tests are
corrected as one family; confidence sequences (a run sampled to a precision) as their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy import stats

from causal import (
    EffectEstimate,
    EffectTable,
    SequenceInterval,
    estimate_human_pairs,
    estimate_observational,
    estimate_paired_effects,
)
from experiments.config import ContrastPlan, Experiment
from experiments.errors import ConfigError
from experiments.run import EvaluatedUnits, Progress, counting, stage
from experiments.steps._seeds import ESTIMATION, HUMAN_PAIRS, OBSERVATIONAL, analysis_seed


@dataclass(frozen=True)
class Estimates:
    """The run's effects, with dowhy's refutations and overlap and the warnings of the observational estimates.

    `refutations` and `overlap` are None when no observational estimate was made.
    """

    effects: EffectTable
    refutations: pd.DataFrame | None
    overlap: pd.DataFrame | None
    warnings: tuple[str, ...]


def estimate_effects(experiment: Experiment, units: EvaluatedUnits, *, progress: Progress | None = None) -> Estimates:
    """Effects of every contrast from each source the units support, corrected for multiple testing across the run."""
    config = experiment.config
    tables, refutations, overlap, warnings = [], [], [], []
    report = None
    if units.observed is not None:
        report = counting(stage(progress, "observational estimates (dowhy)"), len(experiment.contrasts))
    for index, plan in enumerate(experiment.contrasts):
        paired = units.paired(plan)
        tables.append(_interventional(experiment, plan, paired, index, plan.moderators, exact=units.exact))
        if units.observed is None:
            continue
        name = f"{plan.treatment} ({plan.contrast})"
        if plan.estimand != "total":
            warnings.append(
                f"{name}: the rewrite gives the direct effect; dowhy's backdoor estimate is a total "
                "effect, so no observational estimate is made"
            )
        else:
            result = estimate_observational(
                units.observed,
                graph=experiment.graph,
                treatment=plan.treatment,
                contrast=(plan.treated.value, plan.reference.value),
                level=config.inference.level,
                seed=analysis_seed(config.sampling.seed, OBSERVATIONAL + index),
            )
            in_groups = paired[paired["source"].isin([plan.treated.value, plan.reference.value])]
            same = _interventional(experiment, plan, in_groups, index, (), exact=units.exact)
            tables += [result.effects, EffectTable((confounding_gap(result.effects, same),))]
            refutations.append(result.refutations)
            overlap.append(result.overlap.assign(treatment=plan.treatment, contrast=plan.contrast))
            warnings += [f"{name}: {warning}" for warning in result.warnings]
        if report is not None:
            report(1)
    if units.human_pairs is not None:
        tables.append(
            estimate_human_pairs(
                units.human_pairs,
                level=config.inference.level,
                n_bootstrap=config.inference.bootstrap,
                seed=analysis_seed(config.sampling.seed, HUMAN_PAIRS),
            )
        )
    effects = EffectTable.concat(tables).corrected(config.inference.correction)
    if units.sequences is not None:
        effects = _with_sequence_rows(experiment, effects, units.sequences)
    if not refutations:
        return Estimates(effects, None, None, tuple(warnings))
    frame = pd.concat(overlap, ignore_index=True)
    return Estimates(
        effects,
        pd.concat(refutations, ignore_index=True),
        frame[["treatment", "contrast", *frame.columns[:-2]]],
        tuple(warnings),
    )


def _interventional(
    experiment: Experiment,
    plan: ContrastPlan,
    paired: pd.DataFrame,
    index: int,
    moderators: tuple[str, ...],
    *,
    exact: bool,
) -> EffectTable:
    """Paired effects of one contrast over the given units; an error when no unit has both arms.

    Only documents can lack an arm (a rewrite that was excluded), hence the wording.
    """
    config = experiment.config
    if paired.empty:
        raise ConfigError(
            f"no document could be rewritten to both {plan.treated.value} and "
            f"{plan.reference.value}; rewrites.parquet in the run folder says why for each",
            path=f"rewrite.{plan.treatment}",
        )
    return estimate_paired_effects(
        paired,
        treatment=plan.treatment,
        contrast=plan.contrast,
        estimand=plan.estimand,
        moderators=moderators,
        exact=exact,
        level=config.inference.level,
        n_bootstrap=config.inference.bootstrap,
        seed=analysis_seed(config.sampling.seed, ESTIMATION + index),
    )


def confounding_gap(observational: EffectTable, interventional: EffectTable) -> EffectEstimate:
    """Observational regression minus the interventional t estimate, with a normal interval (see module docstring)."""
    regression = next(e for e in observational.estimates if e.method == "regression" and e.moderator is None)
    paired = next(e for e in interventional.estimates if e.method == "t" and e.analysis == "ate")
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


def _with_sequence_rows(
    experiment: Experiment, effects: EffectTable, intervals: tuple[SequenceInterval, ...]
) -> EffectTable:
    """`effects` followed by one anytime-valid row per contrast (`intervals` in contrast order), method "asymptotic_cs".

    Those rows' p-values are adjusted as their own family, leaving the fixed-n family as it was.
    """
    rows = [
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
    ]
    correction = experiment.config.inference.correction
    return EffectTable(
        effects.estimates + EffectTable(tuple(rows)).corrected(correction).estimates, correction=correction
    )
