"""The documents run front: real documents, their rewritten counterfactuals and human edits, evaluated by the model.

Stage: run. May import interventions, experiments.errors, the config and demo stages.

For each contrast the model reads every kept document and its rewrites
(do(treatment=value) by the rules; a document already at the value is its own
counterfactual), and each human edit. The steps then make up to three estimates of
one effect from them: paired differences over the rewrites, dowhy's observational
estimate from the annotations, and the human pairs. Nothing is sharded: a resumed run
evaluates every text again (after the same model check as the templated front).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from experiments.config import DROP_COLUMNS, Arm, ContrastPlan, Experiment, MediationPlan, load_documents, load_pairs
from experiments.errors import NotEstimable
from experiments.run._evaluated import EvidenceTexts
from experiments.run._executor import evaluate_texts
from experiments.run._model import load_run_model
from experiments.run._progress import Progress
from experiments.run._rewriting import (
    Counterfactuals,
    arm_frame,
    rewritable_to_both,
    rewrite_counts,
    rewrite_documents,
    rewritten_pair,
)
from experiments.run._store import RunStore
from interventions import AlignedPair, ModelAdapter, RenderedText, align


@dataclass(frozen=True)
class DocumentUnits:
    """Kept documents (the units, keyed by `doc_id`), their counterfactuals, and one outcome's values on every text.

    `paired` rows also carry each document's annotations and `source`, its factual value of the treatment.
    """

    experiment: Experiment
    documents: pd.DataFrame
    counterfactuals: Counterfactuals
    outcomes: pd.DataFrame
    observed: pd.DataFrame
    human_pairs: pd.DataFrame | None
    exact: bool = False
    sequences: None = None

    def paired(self, plan: ContrastPlan) -> pd.DataFrame:
        by_arm = self.outcomes.pivot(index="unit_id", columns="arm", values="value")
        # A rewrite is the same whichever mediators a direct effect names: its arm is labelled without them.
        treated, reference = (
            by_arm.get(Arm(plan.treatment, arm.value).label) for arm in (plan.treated, plan.reference)
        )
        frame = self.documents.set_index("doc_id")
        difference = (
            (treated - reference).reindex(frame.index) if treated is not None and reference is not None else None
        )
        frame = frame.assign(difference=difference, source=frame[plan.treatment]).dropna(subset=["difference"])
        return frame.reset_index()

    def patch_pairs(
        self, plan: MediationPlan, tokenizer: Any, *, seed: int
    ) -> tuple[list[AlignedPair], dict[str, Any]]:
        counterfactuals = self.counterfactuals
        treated = counterfactuals.rewrites[(plan.treatment, plan.treated.value)]
        reference = counterfactuals.rewrites[(plan.treatment, plan.reference.value)]
        usable = np.flatnonzero(
            rewritable_to_both(counterfactuals, plan.treatment, plan.treated.value, plan.reference.value)
        ).tolist()
        if not usable:
            raise NotEstimable(
                f"no document could be rewritten to both {plan.treated.value} and {plan.reference.value}, "
                "so there is nothing to patch (rewrites.parquet says why for each)"
            )
        rng = np.random.default_rng(seed)
        chosen = sorted(rng.choice(usable, size=min(plan.units, len(usable)), replace=False).tolist())
        suffix = self.experiment.data.config.suffix
        pairs = []
        for row in chosen:
            texts = [
                rewrite.rewritten if rewrite is not None else other.original
                for rewrite, other in ((treated[row], reference[row]), (reference[row], treated[row]))
            ]
            treated_text, reference_text, template = rewritten_pair(*texts, plan.treatment, suffix)
            destination, source = (
                (reference_text, treated_text) if plan.direction == "noise" else (treated_text, reference_text)
            )
            pairs.append(align(destination, source, template, tokenizer, treatment=plan.treatment))
        return pairs, {"documents": self.documents["doc_id"].iloc[chosen].tolist()}

    def evidence_texts(self, plans: dict[str, ContrastPlan], count: int, *, seed: int) -> EvidenceTexts:
        """A document is drawn when it can be rewritten to both arms of every factor's plan.

        Its factual text carries each factor's located spans, and each rewritten text
        carries them moved past the rewrite (`Rewrite.carry`).
        """
        documents, rewrites = self.documents, self.counterfactuals.rewrites
        arms = {arm: (plan.treatment, arm.value) for plan in plans.values() for arm in (plan.treated, plan.reference)}
        usable = [row for row in range(len(documents)) if all(rewrites[key][row] is not None for key in arms.values())]
        if not usable:
            raise NotEstimable(
                "no document can be rewritten to both arms of every factor's contrast, so evidence has "
                "no texts; rewrites.parquet in the run folder says why for each"
            )
        chosen = sorted(
            np.random.default_rng(seed).choice(usable, size=min(count, len(usable)), replace=False).tolist()
        )
        suffix = self.experiment.data.config.suffix
        texts: dict[Arm, list[RenderedText]] = {Arm(None, None): [], **{arm: [] for arm in arms}}
        for row in chosen:
            located = {
                factor: rewrites[(factor, plan.treated.value)][row].original.spans[factor]
                for factor, plan in plans.items()
            }
            texts[Arm(None, None)].append(RenderedText(documents["text"].iloc[row] + suffix, located))
            for arm, key in arms.items():
                rewrite = rewrites[key][row]
                texts[arm].append(RenderedText(rewrite.rewritten.text + suffix, rewrite.carry(located)))
        ids = documents["doc_id"].iloc[chosen].tolist()
        values = {name: documents[name].iloc[chosen].astype(str).tolist() for name in plans}
        return EvidenceTexts(texts, values, ids, {"units": len(chosen), "unit_ids": ids, "weighted_draw": False})


def evaluate_documents(
    experiment: Experiment, store: RunStore, manifest: dict[str, Any], progress: Progress | None
) -> tuple[dict[str, DocumentUnits], ModelAdapter]:
    """Load documents and pairs, rewrite, evaluate every text; documents, dropped, rewrites and outcomes stored.

    Returns the documents once per outcome (by name, in config order), each with that outcome's values.
    """
    plan = experiment.data
    values = {name: tuple(factor.values) for name, factor in experiment.config.factors.items()}
    documents = load_documents(plan.config, plan.path, values)
    pairs = None if plan.pairs is None else load_pairs(plan.pairs, documents.frame, values, left_out=documents.left_out)
    store.write_table("documents.parquet", documents.frame)
    dropped = [documents.dropped, *([pairs.dropped] if pairs else [])]
    store.write_table("dropped.csv", pd.concat(dropped, ignore_index=True).reindex(columns=list(DROP_COLUMNS)))
    manifest["data"] = {
        "path": str(plan.path),
        "documents": documents.record(),
        **({"pairs": {"path": str(plan.pairs), **pairs.record()}} if pairs else {}),
    }
    store.write_manifest(manifest)

    counterfactuals = rewrite_documents(experiment, documents.frame)
    store.write_table("rewrites.parquet", counterfactuals.table)
    manifest["data"]["rewrites"] = rewrite_counts(counterfactuals.table)

    adapter = load_run_model(experiment, store, manifest)
    manifest["n_units"] = len(documents.frame)
    store.write_manifest(manifest)

    rows = arm_frame(documents.frame, counterfactuals)
    human = None if pairs is None else pairs.frame.rename(columns={"from": "source", "to": "target"})
    texts = rows["text"].tolist() + ([] if human is None else human["text"].tolist())
    evaluated = evaluate_texts(experiment, adapter, [text + plan.config.suffix for text in texts], progress)
    on_arms = evaluated[evaluated["row"] < len(rows)]
    outcomes = (
        rows.iloc[on_arms["row"].to_numpy()]
        .reset_index(drop=True)
        .assign(**{column: on_arms[column].tolist() for column in on_arms.columns if column != "row"})
    )
    store.write_table("outcomes.parquet", outcomes)
    on_edits = evaluated[evaluated["row"] >= len(rows)]
    units = {
        name: _outcome_units(experiment, documents.frame, counterfactuals, outcomes, human, on_edits, name)
        for name in experiment.readers
    }
    return units, adapter


def _outcome_units(
    experiment: Experiment,
    documents: pd.DataFrame,
    counterfactuals: Counterfactuals,
    outcomes: pd.DataFrame,
    human: pd.DataFrame | None,
    on_edits: pd.DataFrame,
    name: str,
) -> DocumentUnits:
    """The documents with the values of outcome `name`: on every arm, as observed, and on people's edits."""
    mine = outcomes[outcomes["outcome"] == name].reset_index(drop=True)
    factual = mine[mine["arm"] == "factual"].set_index("doc_id")["value"]
    observed = documents[list(experiment.data.config.factors)].assign(
        outcome=factual.loc[documents["doc_id"]].to_numpy()
    )
    human_pairs = None
    if human is not None:
        edited = on_edits.loc[on_edits["outcome"] == name, "value"].to_numpy()
        difference = edited - factual.loc[human["original_id"]].to_numpy()
        human_pairs = human.assign(difference=difference)[["factor", "source", "target", "difference"]]
    return DocumentUnits(
        experiment, documents, counterfactuals, mine.rename(columns={"doc_id": "unit_id"}), observed, human_pairs
    )
