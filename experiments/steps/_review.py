"""The review step of a run: hypotheses, fairness and surrogates, computed from the run's stored tables.

Stage: steps. May import causal and the config stage.

Runs after the model work is done, on the tables the run folder holds (`effects.csv`,
`outcomes.parquet` and the population table: `units.parquet`, or `documents.parquet`
in data mode, whose ground-truth labels give equal opportunity), read back by the
caller, so everything it says is reproducible from the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from causal import (
    EstimationError,
    FairnessTable,
    SurrogateResult,
    VerdictTable,
    counterfactual_flip_rates,
    fit_surrogates,
    group_fairness,
    judge_hypotheses,
)
from experiments.config import ContrastPlan, Experiment
from experiments.steps._seeds import OBSERVATIONAL, analysis_seed


@dataclass(frozen=True)
class ReviewResult:
    """What the review found: verdicts, fairness figures and surrogates (None when not configured).

    `surrogate_skipped` says why no surrogate was fitted when fairness is configured but the
    decisions cannot be described (for instance, the model makes one decision for every unit).
    `decision_outcome` names the outcome the decisions were read from (None: the first).
    """

    verdicts: VerdictTable | None
    fairness: FairnessTable | None
    surrogate: SurrogateResult | None
    surrogate_skipped: str | None
    decision_threshold: float | None
    decision_outcome: str | None = None

    @property
    def record(self) -> dict[str, Any]:
        """The manifest's account of the review."""
        return {
            "hypotheses": 0 if self.verdicts is None else len(self.verdicts.verdicts),
            "contradicted": [] if self.verdicts is None else list(self.verdicts.contradicted),
            "decision_threshold": self.decision_threshold,
            "decision_outcome": self.decision_outcome,
            "four_fifths_violations": [] if self.fairness is None else list(self.fairness.four_fifths_violations),
            "surrogate_skipped": self.surrogate_skipped,
        }


def review_tables(
    experiment: Experiment, effects: pd.DataFrame | None, outcomes: pd.DataFrame, population: pd.DataFrame
) -> ReviewResult:
    """Judge the hypotheses and measure fairness and surrogates of a run's stored tables.

    `effects` is needed only to judge hypotheses (each on its own outcome's rows); `outcomes`
    (every outcome, long) and `population` are keyed by `unit_id` (a data-mode run's units
    are its documents). Fairness and surrogates read the decisions of fairness.outcome.
    """
    config = experiment.config
    level = config.inference.level
    verdicts = None
    if experiment.hypotheses:
        verdicts = judge_hypotheses(experiment.hypotheses, effects, level=level)
    if config.fairness is None or experiment.decision_threshold is None:
        return ReviewResult(verdicts, None, None, None, None)

    factors, label = _factors_and_label(experiment, population)
    read = experiment.named(config.fairness.outcome).name
    decisions = _decisions(outcomes[outcomes["outcome"] == read], experiment.decision_threshold)
    factual = population.assign(decision=decisions["factual"].loc[population["unit_id"]].to_numpy())
    fairness = _fairness(experiment, factual, decisions, label)
    try:
        surrogate = fit_surrogates(
            factual,
            factors=factors,
            seed=analysis_seed(config.sampling.seed, OBSERVATIONAL),
            max_depth=config.fairness.surrogate_depth,
            level=level,
        )
    except EstimationError as error:
        return ReviewResult(verdicts, fairness, None, str(error), experiment.decision_threshold, read)
    return ReviewResult(verdicts, fairness, surrogate, None, experiment.decision_threshold, read)


def _factors_and_label(experiment: Experiment, population: pd.DataFrame) -> tuple[list[str], str | None]:
    """The factors the units are described by, and the ground-truth label column.

    A data-mode run's units are its kept documents; only their annotated factors are known,
    and their ground-truth label (when the dataset has one) gives equal opportunity.
    """
    if experiment.data is None:
        return list(experiment.config.factors), None
    return list(experiment.data.config.factors), "label" if "label" in population else None


def _decisions(outcomes: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """0/1 decisions (outcome above `threshold`), one row per unit and one column per arm label."""
    return (
        (outcomes["value"] > threshold)
        .astype(int)
        .to_frame("decision")
        .assign(unit_id=outcomes["unit_id"], arm=outcomes["arm"])
        .pivot(index="unit_id", columns="arm", values="decision")
    )


def _fairness(
    experiment: Experiment, factual: pd.DataFrame, decisions: pd.DataFrame, label: str | None
) -> FairnessTable:
    """Flip rates of every contrast on a protected factor, then group figures of each protected factor.

    `factual` holds each unit's factor values and factual decision; `decisions` has a column per
    arm (missing where a document could not be rewritten to that arm: such units leave the flip rate).
    """
    config = experiment.config
    level = config.inference.level
    weight = "weight" if config.sampling.mode == "exact" else None
    protected = config.fairness.protected
    plans: dict[tuple[str, str], ContrastPlan] = {}
    for plan in experiment.contrasts:
        if plan.treatment in protected and plan.estimand == "total":
            plans.setdefault((plan.treatment, plan.contrast), plan)
    tables = []
    if plans:
        rows = [
            pd.DataFrame(
                {
                    "treatment": plan.treatment,
                    "contrast": plan.contrast,
                    "decision_treated": decisions[plan.treated.label].loc[factual["unit_id"]].to_numpy(),
                    "decision_reference": decisions[plan.reference.label].loc[factual["unit_id"]].to_numpy(),
                    "weight": factual["weight"].to_numpy() if weight else 1.0,
                }
            ).dropna()
            for plan in plans.values()
        ]
        tables.append(counterfactual_flip_rates(pd.concat(rows, ignore_index=True), weight=weight, level=level))
    for factor in protected:
        values = pd.Categorical(factual[factor], categories=list(config.factors[factor].values))
        tables.append(
            group_fairness(factual.assign(**{factor: values}), factor=factor, label=label, weight=weight, level=level)
        )
    return FairnessTable.concat(tables)
