"""The review step of a run: hypotheses, fairness and surrogates, computed from the run's stored tables.

Runs after the model work is done, on `effects.csv`, `outcomes.parquet` and the
population table (`units.parquet`, or `documents.parquet` in data mode, whose
ground-truth labels give equal opportunity), so everything it says is
reproducible from the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
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

from experiments._compile import ContrastPlan, Experiment
from experiments._store import RunStore, read_outcomes

@dataclass(frozen=True)
class ReviewResult:
    """What the review found: verdicts, fairness figures and surrogates (None when not configured).

    `surrogate_skipped` says why no surrogate was fitted when fairness is configured but the
    decisions cannot be described (for instance, the model makes one decision for every unit).
    """

    verdicts: VerdictTable | None
    fairness: FairnessTable | None
    surrogate: SurrogateResult | None
    surrogate_skipped: str | None
    decision_threshold: float | None

    @property
    def record(self) -> dict[str, Any]:
        """The manifest's account of the review."""
        return {
            "hypotheses": 0 if self.verdicts is None else len(self.verdicts.verdicts),
            "contradicted": [] if self.verdicts is None else list(self.verdicts.contradicted),
            "decision_threshold": self.decision_threshold,
            "four_fifths_violations": [] if self.fairness is None else list(self.fairness.four_fifths_violations),
            "surrogate_skipped": self.surrogate_skipped,
        }


def run_review(experiment: Experiment, store: RunStore) -> ReviewResult:
    """Judge the hypotheses and measure fairness and surrogates; write hypotheses.csv, fairness.csv, surrogate files."""
    config = experiment.config
    level = config.inference.level
    verdicts = None
    if experiment.hypotheses:
        verdicts = judge_hypotheses(experiment.hypotheses, pd.read_csv(store.folder / "effects.csv"), level=level)
        store.write_table("hypotheses.csv", verdicts.to_frame())
    if config.fairness is None or experiment.decision_threshold is None:
        return ReviewResult(verdicts, None, None, None, None)

    units, factors, label = _population(experiment, store)
    decisions = _decisions(read_outcomes(store.folder), experiment.decision_threshold)
    factual = units.assign(decision=decisions["factual"].loc[units["unit_id"]].to_numpy())
    fairness = _fairness(experiment, factual, decisions, label)
    store.write_table("fairness.csv", fairness.to_frame())
    seed = int(np.random.SeedSequence([config.sampling.seed, 3_000]).generate_state(1)[0])
    try:
        surrogate = fit_surrogates(factual, factors=factors, seed=seed,
                                   max_depth=config.fairness.surrogate_depth, level=level)
    except EstimationError as error:
        return ReviewResult(verdicts, fairness, None, str(error), experiment.decision_threshold)
    store.write_table("surrogate.csv", surrogate.to_frame())
    store.write_table("surrogate_coefficients.csv", surrogate.coefficient_frame())
    store.write_text("surrogate_rules.txt", surrogate.rules)
    return ReviewResult(verdicts, fairness, surrogate, None, experiment.decision_threshold)


def _population(experiment: Experiment, store: RunStore) -> tuple[pd.DataFrame, list[str], str | None]:
    """The units fairness is measured over (id column `unit_id`), their annotated factors, and the label column.

    A data-mode run's units are its kept documents; only their annotated factors are known,
    and their ground-truth label (when the dataset has one) gives equal opportunity.
    """
    if experiment.data is None:
        return pd.read_parquet(store.folder / "units.parquet"), list(experiment.config.factors), None
    documents = pd.read_parquet(store.folder / "documents.parquet").rename(columns={"doc_id": "unit_id"})
    return documents, list(experiment.data.config.factors), "label" if "label" in documents else None


def _decisions(outcomes: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """0/1 decisions (outcome above `threshold`), one row per unit and one column per arm label."""
    return (outcomes["outcome"] > threshold).astype(int).to_frame("decision").assign(
        unit_id=outcomes["unit_id"], arm=outcomes["arm"]
    ).pivot(index="unit_id", columns="arm", values="decision")


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
            pd.DataFrame({
                "treatment": plan.treatment,
                "contrast": plan.contrast,
                "decision_treated": decisions[plan.treated.label].loc[factual["unit_id"]].to_numpy(),
                "decision_reference": decisions[plan.reference.label].loc[factual["unit_id"]].to_numpy(),
                "weight": factual["weight"].to_numpy() if weight else 1.0,
            }).dropna()
            for plan in plans.values()
        ]
        tables.append(counterfactual_flip_rates(pd.concat(rows, ignore_index=True), weight=weight, level=level))
    for factor in protected:
        values = pd.Categorical(factual[factor], categories=list(config.factors[factor].values))
        tables.append(group_fairness(factual.assign(**{factor: values}), factor=factor, label=label, weight=weight,
                                     level=level))
    return FairnessTable.concat(tables)
