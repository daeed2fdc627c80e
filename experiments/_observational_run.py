"""The data-mode run: real documents, their rewritten counterfactuals, and three estimates side by side.

For each contrast the model is read on every kept document and on its rewrites
(do(treatment=value) by the rules; a document already at the value is its own
counterfactual). Three estimates of one effect follow:
- interventional ("ate"): paired differences over the rewritten documents;
- observational ("observational"): dowhy backdoor adjustment over the annotated
  factors, from the documents' factual outcomes, with refuters and overlap checks;
- human pairs ("human_pairs"): outcome on a person's edit minus on its original;
and the confounding gap: observational regression minus the interventional t estimate
on the same documents (those annotated with one of the contrast's two values). Its
interval treats the two estimates as independent (standard error the root of the
sum of squared standard errors); they come from the same documents, so it is an
approximation, and a gap whose interval excludes zero says the annotated adjustment
does not recover what the model does when only the treatment's words change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from causal import (
    EffectEstimate,
    EffectTable,
    MediationTable,
    estimate_human_pairs,
    estimate_mediation,
    estimate_observational,
    estimate_paired_effects,
)
from interventions import (
    AlignedPair,
    InterventionError,
    ModelAdapter,
    RenderedText,
    Rewrite,
    RewriteError,
    Template,
    align,
    model_sites,
    patch_effects,
)

from experiments._compile import Arm, ContrastPlan, Experiment, MediationPlan
from experiments._dataset import DROP_COLUMNS, load_documents, load_pairs
from experiments._evidence_step import EvidenceResult, unit_effects, read_evidence, representative_plans
from experiments._mediation_step import _exact_per_unit
from experiments._progress import Progress, counting, stage
from experiments._runner import _load_model, evaluate_texts, store_evidence, store_mediation, sweep_heatmap
from experiments._store import RunStore
from experiments.errors import ConfigError

REWRITE_COLUMNS = ("doc_id", "factor", "source", "target", "status", "reason", "original_spans", "rewritten_spans")


@dataclass(frozen=True)
class Counterfactuals:
    """Every document's text in each arm, and how each rewrite went.

    `texts[(factor, target)]` holds one text per document (None where the rewrite was
    excluded); `rewrites` keeps the Rewrite objects for patching and evidence through their
    spans (for a document already at the target, the identity rewrite holding its located
    forms; None where the forms could not be located).
    """

    texts: dict[tuple[str, str], list[str | None]]
    rewrites: dict[tuple[str, str], list[Rewrite | None]]
    table: pd.DataFrame


def carry_out_documents(
    experiment: Experiment, store: RunStore, manifest: dict[str, Any], progress: Progress | None
) -> tuple[EffectTable, MediationTable | None, EvidenceResult | None]:
    """Documents, rewrites, model outcomes, then paired, observational and human-pair estimates; tables as they exist."""
    plan = experiment.data
    config = experiment.config
    values = {name: tuple(factor.values) for name, factor in config.factors.items()}
    documents = load_documents(plan.config, plan.path, values)
    pairs = None if plan.pairs is None else load_pairs(plan.pairs, documents.frame, values)
    store.write_table("documents.parquet", documents.frame)
    store.write_table("dropped.csv", pd.concat([documents.dropped, *([pairs.dropped] if pairs else [])],
                                               ignore_index=True).reindex(columns=list(DROP_COLUMNS)))
    manifest["data"] = {"path": str(plan.path), "documents": documents.record(),
                        **({"pairs": {"path": str(plan.pairs), **pairs.record()}} if pairs else {})}
    store.write_manifest(manifest)

    counterfactuals = rewrite_documents(experiment, documents.frame)
    store.write_table("rewrites.parquet", counterfactuals.table)
    manifest["data"]["rewrites"] = _rewrite_counts(counterfactuals.table)

    adapter = _load_model(experiment.model_spec, progress)
    manifest.update(model_id=config.model.id, model_path=adapter.spec.path, model_fingerprint=adapter.fingerprint(),
                    device=str(adapter.device), dtype=str(adapter.dtype).removeprefix("torch."),
                    n_units=len(documents.frame))
    store.write_manifest(manifest)

    outcomes = _arm_frame(experiment, documents.frame, counterfactuals)
    human = None if pairs is None else pairs.frame.rename(columns={"from": "source", "to": "target"})
    texts = outcomes["text"].tolist() + ([] if human is None else human["text"].tolist())
    scores = evaluate_texts(experiment, adapter, [text + plan.config.suffix for text in texts], progress)
    outcomes["outcome"] = scores[: len(outcomes)]
    store.write_table("outcomes.parquet", outcomes)

    factual = outcomes[outcomes["arm"] == "factual"].set_index("doc_id")["outcome"]
    estimates = _contrast_estimates(experiment, documents.frame, outcomes, factual, progress)
    tables = list(estimates.tables)
    if human is not None:
        difference = scores[len(outcomes):] - factual.loc[human["original_id"]].to_numpy()
        tables.append(estimate_human_pairs(
            human.assign(difference=difference)[["factor", "source", "target", "difference"]],
            level=config.inference.level, n_bootstrap=config.inference.bootstrap,
            seed=_seed(config.sampling.seed, 4_000)))
    effects = EffectTable.concat(tables).corrected(config.inference.correction)
    store.write_table("effects.csv", effects.to_frame())
    if estimates.refutations is not None:
        store.write_table("refutations.csv", estimates.refutations)
        store.write_table("overlap.csv", estimates.overlap)
    refutations = [] if estimates.refutations is None else estimates.refutations.to_dict("records")
    manifest["data"].update(warnings=list(estimates.warnings), refutations=[
        {key: (None if isinstance(value, float) and math.isnan(value) else value) for key, value in record.items()}
        for record in refutations])
    store.write_manifest(manifest)
    mediation = _mediation(experiment, documents.frame, counterfactuals, adapter, store, manifest, progress)
    evidence = _evidence(experiment, documents.frame, counterfactuals, effects, outcomes, adapter, store, manifest,
                         progress)
    return effects, mediation, evidence


@dataclass(frozen=True)
class _Estimates:
    """Interventional, observational and gap rows of every contrast, with dowhy's refutations and overlap."""

    tables: tuple[EffectTable, ...]
    refutations: pd.DataFrame | None
    overlap: pd.DataFrame | None
    warnings: tuple[str, ...]


def _contrast_estimates(
    experiment: Experiment, documents: pd.DataFrame, outcomes: pd.DataFrame, factual: pd.Series,
    progress: Progress | None,
) -> _Estimates:
    """For each contrast: paired effects of the rewrites; for total effects also dowhy's and the confounding gap."""
    config = experiment.config
    observed = documents[list(experiment.data.config.factors)].assign(
        outcome=factual.loc[documents["doc_id"]].to_numpy())
    tables, refutations, overlap, warnings = [], [], [], []
    report = counting(stage(progress, "observational estimates (dowhy)"), len(experiment.contrasts))
    for index, contrast in enumerate(experiment.contrasts):
        paired = _paired(contrast, documents, outcomes)
        tables.append(_interventional(experiment, contrast, paired, index, contrast.moderators))
        name = f"{contrast.treatment} ({contrast.contrast})"
        if contrast.estimand != "total":
            warnings.append(f"{name}: the rewrite gives the direct effect; dowhy's backdoor estimate is a total "
                            "effect, so no observational estimate is made")
        else:
            result = estimate_observational(
                observed, graph=experiment.graph, treatment=contrast.treatment,
                contrast=(contrast.treated.value, contrast.reference.value), level=config.inference.level,
                seed=_seed(config.sampling.seed, 3_000 + index))
            in_groups = paired[paired["source"].isin([contrast.treated.value, contrast.reference.value])]
            same = _interventional(experiment, contrast, in_groups, index, ())
            tables += [result.effects, EffectTable((confounding_gap(result.effects, same),))]
            refutations.append(result.refutations)
            overlap.append(result.overlap.assign(treatment=contrast.treatment, contrast=contrast.contrast))
            warnings += [f"{name}: {warning}" for warning in result.warnings]
        if report is not None:
            report(1)
    if not refutations:
        return _Estimates(tuple(tables), None, None, tuple(warnings))
    frame = pd.concat(overlap, ignore_index=True)
    return _Estimates(tuple(tables), pd.concat(refutations, ignore_index=True),
                      frame[["treatment", "contrast", *frame.columns[:-2]]], tuple(warnings))


def rewrite_documents(experiment: Experiment, documents: pd.DataFrame) -> Counterfactuals:
    """Each document in every arm the contrasts and patching sweeps need; exclusions kept with their reason."""
    plan = experiment.data
    needed = dict.fromkeys(
        (two.treatment, arm.value)
        for two in (*experiment.contrasts, *experiment.mediation) for arm in (two.treated, two.reference)
    )
    texts, rewrites, rows = {}, {}, []
    for factor, target in needed:
        rules = plan.rules[factor]
        arm_texts: list[str | None] = []
        arm_rewrites: list[Rewrite | None] = []
        for doc_id, text, source in zip(documents["doc_id"], documents["text"], documents[factor]):
            row = {"doc_id": doc_id, "factor": factor, "source": source, "target": target, "status": "unchanged",
                   "reason": None, "original_spans": [], "rewritten_spans": []}
            try:
                rewrite = rules.rewrite(text, source=source, target=target)
            except RewriteError as error:
                rewrite = None
                if source != target:        # a document already at the target is its own text there
                    row.update(status="excluded", reason=error.reason)
            else:
                if source != target:
                    row.update(status="rewritten", original_spans=_spans(rewrite.original, factor),
                               rewritten_spans=_spans(rewrite.rewritten, factor))
            arm_rewrites.append(rewrite)
            arm_texts.append(text if source == target else (None if rewrite is None else rewrite.rewritten.text))
            rows.append(row)
        texts[(factor, target)] = arm_texts
        rewrites[(factor, target)] = arm_rewrites
    return Counterfactuals(texts, rewrites, pd.DataFrame(rows, columns=list(REWRITE_COLUMNS)))


def confounding_gap(observational: EffectTable, interventional: EffectTable) -> EffectEstimate:
    """Observational regression minus the interventional t estimate, with a normal interval (see module docstring)."""
    regression = next(e for e in observational.estimates if e.method == "regression" and e.moderator is None)
    paired = next(e for e in interventional.estimates if e.method == "t" and e.analysis == "ate")
    estimate = regression.estimate - paired.estimate
    std_error = math.hypot(regression.std_error, paired.std_error)
    half = stats.norm.ppf(0.5 + regression.level / 2) * std_error
    p_value = float(2 * stats.norm.sf(abs(estimate) / std_error)) if std_error > 0 else math.nan
    return EffectEstimate(
        analysis="confounding_gap", estimand=paired.estimand, treatment=paired.treatment, contrast=paired.contrast,
        moderator=None, stratum=None, estimate=estimate, ci_low=estimate - half, ci_high=estimate + half,
        std_error=std_error, p_value=p_value, n_units=paired.n_units, method="regression_minus_t",
        level=regression.level,
    )


def rewritten_pair(
    treated: RenderedText, reference: RenderedText, factor: str, suffix: str = ""
) -> tuple[RenderedText, RenderedText, Template]:
    """Two texts of one document that differ only inside `factor`'s spans, as renders of one template.

    The template's literals are the text between the spans (equal in both texts, as
    every rewrite is verified), so `interventions.align` pairs their token positions;
    `suffix` is appended to both, as the model reads them.
    """
    spans = treated.spans[factor]
    cuts = [0, *(edge for span in spans for edge in span), len(treated.text)]
    literals = [treated.text[cuts[i]:cuts[i + 1]] for i in range(0, len(cuts), 2)]
    literals[-1] += suffix
    escaped = [literal.replace("{", "{{").replace("}", "}}") for literal in literals]
    template = Template.parse(("{" + factor + "}").join(escaped))
    return (RenderedText(treated.text + suffix, {factor: spans}),
            RenderedText(reference.text + suffix, {factor: reference.spans[factor]}), template)


def _spans(text: RenderedText, factor: str) -> list[list[int]]:
    return [list(span) for span in text.spans.get(factor, ())]


def _rewrite_counts(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Per factor and target: documents rewritten, already at the target, and excluded by reason."""
    records = []
    for (factor, target), group in table.groupby(["factor", "target"], sort=False):
        status = group["status"].value_counts()
        records.append({"factor": factor, "target": target, "rewritten": int(status.get("rewritten", 0)),
                        "unchanged": int(status.get("unchanged", 0)),
                        "excluded": {str(k): int(v) for k, v in group["reason"].value_counts(sort=False).items()}})
    return records


def _arm_frame(experiment: Experiment, documents: pd.DataFrame, counterfactuals: Counterfactuals) -> pd.DataFrame:
    """One row per (document, arm) with a text: the factual document, then each available counterfactual."""
    frames = [pd.DataFrame({"doc_id": documents["doc_id"], "arm": "factual", "text": documents["text"]})]
    for (factor, target), texts in counterfactuals.texts.items():
        frame = pd.DataFrame({"doc_id": documents["doc_id"], "arm": Arm(factor, target).label, "text": texts})
        frames.append(frame[frame["text"].notna()])
    return pd.concat(frames, ignore_index=True)


def _paired(contrast: ContrastPlan, documents: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """One row per document with both arms: difference treated minus reference, source value and annotations."""
    by_arm = outcomes.pivot(index="doc_id", columns="arm", values="outcome")
    # A rewrite is the same whichever mediators a direct effect names: its arm is labelled without them.
    treated, reference = (by_arm.get(Arm(contrast.treatment, arm.value).label)
                          for arm in (contrast.treated, contrast.reference))
    frame = documents.set_index("doc_id")
    difference = (treated - reference).reindex(frame.index) if treated is not None and reference is not None else None
    frame = frame.assign(difference=difference, source=frame[contrast.treatment]).dropna(subset=["difference"])
    return frame.reset_index()


def _interventional(
    experiment: Experiment, contrast: ContrastPlan, paired: pd.DataFrame, index: int, moderators: tuple[str, ...]
) -> EffectTable:
    """Paired effects of one contrast over the given documents; an error when none has both rewrites."""
    config = experiment.config
    if paired.empty:
        raise ConfigError(f"no document could be rewritten to both {contrast.treated.value} and "
                          f"{contrast.reference.value}; rewrites.parquet in the run folder says why for each",
                          path=f"rewrite.{contrast.treatment}")
    return estimate_paired_effects(
        paired, treatment=contrast.treatment, contrast=contrast.contrast, estimand=contrast.estimand,
        moderators=moderators, level=config.inference.level, n_bootstrap=config.inference.bootstrap,
        seed=_seed(config.sampling.seed, index),
    )


def _seed(seed: int, stream: int) -> int:
    """An independent seed per analysis, derived from the config's seed (as templated runs derive theirs)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def _mediation(
    experiment: Experiment, documents: pd.DataFrame, counterfactuals: Counterfactuals, adapter: ModelAdapter,
    store: RunStore, manifest: dict[str, Any], progress: Progress | None,
) -> MediationTable | None:
    """Each patching sweep on rewritten documents, aligned through the rewrites' recorded spans."""
    if not experiment.mediation:
        return None
    tables, records = [], []
    for index, plan in enumerate(experiment.mediation):
        seed = _seed(experiment.config.sampling.seed, 1_000 + index)
        pairs, chosen = _patch_pairs(experiment, plan, documents, counterfactuals, adapter, seed)
        try:
            sites = model_sites(adapter, plan.components, layers=plan.layers)
        except InterventionError as error:
            raise ConfigError(str(error), path=f"{plan.path}.layers") from None
        advance = counting(stage(progress, f"patching {plan.treatment} ({plan.contrast})"),
                           len(pairs) * len(sites) * len(plan.positions))
        result = patch_effects(adapter, experiment.outcome, pairs, sites, plan.positions, progress=advance)
        inference = experiment.config.inference
        table = estimate_mediation(_exact_per_unit(plan, result), treatment=plan.treatment, contrast=plan.contrast,
                                   direction=plan.direction, level=inference.level, n_bootstrap=inference.bootstrap,
                                   seed=seed)
        tables.append(table)
        records.append({"treatment": plan.treatment, "contrast": plan.contrast, "direction": plan.direction,
                        "method": plan.method, "units": len(pairs), "sites": len(sites),
                        "positions": list(plan.positions), "documents": chosen, "work": dict(result.work),
                        "heatmap": sweep_heatmap(store, index, plan, table).name})
    return store_mediation(store, manifest, tables, records)


def _evidence(
    experiment: Experiment, documents: pd.DataFrame, counterfactuals: Counterfactuals, effects: EffectTable,
    outcomes: pd.DataFrame, adapter: ModelAdapter, store: RunStore, manifest: dict[str, Any], progress: Progress | None,
) -> EvidenceResult | None:
    """Attention, saliency and probes on a draw of documents, through the spans their rewrites recorded.

    A document is drawn when it can be rewritten to both arms of every factor's representative
    contrast; its factual text carries each factor's located spans, and each rewritten text
    carries them moved past the rewrite (`Rewrite.carry`).
    """
    if experiment.config.evidence is None:
        return None
    report = stage(progress, "reading attention, saliency and probes")
    seed = _seed(experiment.config.sampling.seed, 2_000)
    plans = representative_plans(experiment, effects.to_frame(), "t")
    arms = {arm: (plan.treatment, arm.value) for plan in plans.values() for arm in (plan.treated, plan.reference)}
    usable = [row for row in range(len(documents))
              if all(counterfactuals.rewrites[key][row] is not None for key in arms.values())]
    if not usable:
        raise ConfigError("no document can be rewritten to both arms of every factor's contrast, so evidence has "
                          "no texts; rewrites.parquet in the run folder says why for each", path="evidence")
    chosen = sorted(np.random.default_rng(seed).choice(
        usable, size=min(experiment.config.evidence.units, len(usable)), replace=False).tolist())
    suffix = experiment.data.config.suffix
    texts: dict[Arm, list[RenderedText]] = {Arm(None, None): [], **{arm: [] for arm in arms}}
    for row in chosen:
        located = {factor: counterfactuals.rewrites[(factor, plan.treated.value)][row].original.spans[factor]
                   for factor, plan in plans.items()}
        texts[Arm(None, None)].append(RenderedText(documents["text"].iloc[row] + suffix, located))
        for arm, key in arms.items():
            rewrite = counterfactuals.rewrites[key][row]
            texts[arm].append(RenderedText(rewrite.rewritten.text + suffix, rewrite.carry(located)))
    ids = documents["doc_id"].iloc[chosen].tolist()
    result = read_evidence(
        experiment, plans, texts, {name: documents[name].iloc[chosen].astype(str).tolist() for name in plans},
        unit_effects(outcomes.rename(columns={"doc_id": "unit_id"}), ids, plans), effects.to_frame(), adapter,
        effect_method="t", seed=seed, record={"units": len(chosen), "unit_ids": ids, "weighted_draw": False},
    )
    store_evidence(store, manifest, result)
    if report is not None:
        report(1, 1)
    return result


def _patch_pairs(
    experiment: Experiment, plan: MediationPlan, documents: pd.DataFrame, counterfactuals: Counterfactuals,
    adapter: ModelAdapter, seed: int,
) -> tuple[list[AlignedPair], list[str]]:
    """Aligned (destination, source) pairs of a random draw of documents whose two arms differ."""
    treated = counterfactuals.rewrites[(plan.treatment, plan.treated.value)]
    reference = counterfactuals.rewrites[(plan.treatment, plan.reference.value)]
    usable = [row for row in range(len(documents))
              if counterfactuals.texts[(plan.treatment, plan.treated.value)][row] is not None
              and counterfactuals.texts[(plan.treatment, plan.reference.value)][row] is not None]
    if not usable:
        raise ConfigError(f"no document could be rewritten to both {plan.treated.value} and {plan.reference.value}, "
                          "so there is nothing to patch", path=f"{plan.path}.contrast")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(usable, size=min(plan.units, len(usable)), replace=False).tolist())
    suffix = experiment.data.config.suffix
    pairs = []
    for row in chosen:
        texts = [rewrite.rewritten if rewrite is not None else other.original
                 for rewrite, other in ((treated[row], reference[row]), (reference[row], treated[row]))]
        treated_text, reference_text, template = rewritten_pair(*texts, plan.treatment, suffix)
        destination, source = ((reference_text, treated_text) if plan.direction == "noise"
                               else (treated_text, reference_text))
        pairs.append(align(destination, source, template, adapter.tokenizer, treatment=plan.treatment))
    return pairs, documents["doc_id"].iloc[chosen].tolist()

