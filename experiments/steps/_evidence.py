"""The evidence step: attention, saliency and probes, linked to the interventional effects.

Stage: steps. May import interventions, causal, the config and run stages.

Attention, gradient x input and integrated gradients are read through an `EvidenceReader`,
in blocks of texts each stored as a shard, so a resumed run reads finished blocks back.
Probes (cross-validated over all texts) and the token view (a few units) are read here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from causal import EvidenceLinks, link_evidence
from experiments.config import Arm, ContrastPlan, Experiment
from experiments.errors import NotEstimable
from experiments.run import EvaluatedUnits, EvidenceReader, Reading, Readout, Report
from interventions import (
    InterventionError,
    ModelAdapter,
    RenderedText,
    probe_factors,
    render_token_view,
    token_view,
)


@dataclass(frozen=True)
class EvidenceResult:
    """Per-unit evidence rows, their links to the effects, probe accuracies and a token view."""

    evidence: pd.DataFrame
    links: EvidenceLinks
    probes: pd.DataFrame | None
    tokens: pd.DataFrame | None
    tokens_html: str | None
    record: dict[str, Any]


def run_evidence(
    experiment: Experiment,
    units: EvaluatedUnits,
    effects: pd.DataFrame,
    adapter: ModelAdapter,
    *,
    reader: EvidenceReader,
    seed: int,
    progress: Report | None = None,
) -> EvidenceResult:
    """Read every configured evidence method on a draw of units and score it against the effects.

    Each factor is represented by its total-effect contrast with the largest |effect|;
    `unit` in the tables is the unit's place in the draw. `reader` takes the per-text
    readings (see the module docstring); `progress` counts the texts of each.
    """
    headline = "exact" if units.exact else "t"
    plans = _representative_plans(experiment, effects, headline)
    if not plans:
        raise NotEstimable(
            "evidence is read on the rendered or rewritten texts of an estimated total effect, and no contrast "
            "has one (see effects.csv)"
        )
    drawn = units.evidence_texts(plans, experiment.config.evidence.units, seed=seed)
    return _read_evidence(
        experiment,
        plans,
        drawn.texts,
        drawn.values,
        _unit_effects(units.outcomes, drawn.ids, plans),
        effects,
        adapter,
        reader,
        effect_method=headline,
        seed=seed,
        record=drawn.record,
        progress=progress,
    )


def _read_evidence(
    experiment: Experiment,
    plans: dict[str, ContrastPlan],
    texts: dict[Arm, list[RenderedText]],
    values: dict[str, list[str]],
    unit_effects: pd.DataFrame,
    effects: pd.DataFrame,
    adapter: ModelAdapter,
    reader: EvidenceReader,
    *,
    effect_method: str,
    seed: int,
    record: dict[str, Any],
    progress: Report | None,
) -> EvidenceResult:
    """Evidence on given texts: attention, saliency and probes, linked to the effects of `plans`.

    `texts` holds, per arm, the chosen units' texts in the same order (the factual arm, and both
    arms of every plan), each with the spans of every factor in `plans`; `values` each chosen
    unit's factual value per factor (for probes); `unit_effects` their per-unit effects.
    """
    config = experiment.config.evidence
    methods = set(config.methods)
    factors = list(plans)
    factual = texts[Arm(None, None)]
    record = {
        **record,
        "methods": sorted(methods),
        "baseline": config.baseline,
        "steps": config.steps,
        "factors": factors,
    }
    frames = []
    if methods & {"attention", "attention_rollout"}:
        attention = reader.read(Reading("attention", tuple(factors)), factual, progress=progress)
        frames.append(attention.spans[attention.spans["method"].isin(methods)])
        first = attention.details[0]
        record.update(attn_implementation=first["attn_implementation"], switched_to_eager=first["switched_to_eager"])
    if "gradient_x_input" in methods:
        reading = Reading("gradient_x_input", tuple(factors), experiment.evidence_outcome.reader)
        frames.append(reader.read(reading, factual, progress=progress).spans)
    if "integrated_gradients" in methods:
        spans, completeness = _integrated_gradients(experiment, reader, texts, plans, progress)
        frames.append(spans)
        record.update(completeness)
    evidence = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    linked, not_linked = _covering(evidence, factors)
    if not_linked:
        record["not_linked"] = not_linked
    links = link_evidence(
        _plan_rows(effects, plans),
        linked,
        unit_effects=unit_effects,
        effect_method=effect_method,
        level=experiment.config.inference.level,
        n_bootstrap=experiment.config.inference.bootstrap,
        seed=seed,
    )
    probes = None
    if "probe" in methods:
        try:
            probes = probe_factors(
                adapter, factual, values, seed=seed, level=experiment.config.inference.level
            ).to_frame()
        except InterventionError as error:  # too few texts per value to cross-validate: say so, keep the rest
            record["probe_not_computed"] = str(error)
    tokens, html = _token_view(experiment, adapter, texts, plans, factors, config.token_view_units)
    return EvidenceResult(evidence, links, probes, tokens, html, record)


def _representative_plans(experiment: Experiment, effects: pd.DataFrame, method: str) -> dict[str, ContrastPlan]:
    """Per factor, the estimated interventional total-effect contrast with the largest |effect|; largest first."""
    ate = effects[(effects["analysis"] == "ate") & (effects["method"] == method) & (effects["estimand"] == "total")]
    chosen: dict[str, tuple[float, ContrastPlan]] = {}
    for plan in experiment.contrasts:
        if plan.estimand != "total" or not plan.interventional:
            continue
        row = ate[(ate["treatment"] == plan.treatment) & (ate["contrast"] == plan.contrast)]
        size = abs(float(row["estimate"].iloc[0]))
        if math.isnan(size):
            continue
        if plan.treatment not in chosen or size > chosen[plan.treatment][0]:
            chosen[plan.treatment] = (size, plan)
    ranked = sorted(chosen.items(), key=lambda item: -item[1][0])
    return {factor: plan for factor, (_, plan) in ranked}


def _plan_rows(effects: pd.DataFrame, plans: dict[str, ContrastPlan]) -> pd.DataFrame:
    """The interventional rows of the plans' contrasts (not a data-mode run's observational or human-pair rows)."""
    keep = effects["analysis"].isin(["ate", "cate", "heterogeneity"])
    chosen = pd.Series(False, index=effects.index)
    for plan in plans.values():
        chosen |= (effects["treatment"] == plan.treatment) & (effects["contrast"] == plan.contrast)
    return effects[keep & chosen & (effects["estimand"] == "total")]


def _unit_effects(outcomes: pd.DataFrame, ids: Sequence[Any], plans: dict[str, ContrastPlan]) -> pd.DataFrame:
    """Each chosen unit's effect of each factor's representative contrast; `outcomes` keyed by `unit_id`."""
    by_arm = outcomes.pivot(index="unit_id", columns="arm", values="value").loc[list(ids)]
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "unit": np.arange(len(ids)),
                    "factor": factor,
                    "effect": by_arm[plan.treated.label].to_numpy() - by_arm[plan.reference.label].to_numpy(),
                }
            )
            for factor, plan in plans.items()
        ],
        ignore_index=True,
    )


def _integrated_gradients(
    experiment: Experiment,
    reader: EvidenceReader,
    texts: dict[Arm, list[RenderedText]],
    plans: dict[str, ContrastPlan],
    progress: Report | None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """IG spans from the pad baseline on factual texts, or per factor from its counterfactual arm.

    With the counterfactual baseline each factor's attributions come from its own contrast
    (treated arm against reference arm), so they sum to that unit's effect.
    """
    config = experiment.config.evidence
    reading = Reading("integrated_gradients", tuple(plans), experiment.evidence_outcome.reader, config.steps)
    if config.baseline == "pad":
        readout = reader.read(reading, texts[Arm(None, None)], progress=progress)
        return readout.spans, {"completeness_max_abs_delta": _largest_delta([readout])}
    spans, readouts, skipped = [], [], {}
    for factor, plan in plans.items():
        readout = reader.read(reading, texts[plan.treated], counterfactuals=texts[plan.reference], progress=progress)
        spans.append(readout.spans[readout.spans["factor"] == factor])
        readouts.append(readout)
        skipped[factor] = sum(detail["skipped"] for detail in readout.details)
    return pd.concat(spans, ignore_index=True), {
        "completeness_max_abs_delta": _largest_delta(readouts),
        "skipped_unequal_length_units": skipped,
    }


def _largest_delta(readouts: list[Readout]) -> float:
    """The largest |completeness delta| of any block (nan when no unit has one)."""
    return float(pd.Series([detail["max_abs_delta"] for readout in readouts for detail in readout.details]).max())


def _token_view(
    experiment: Experiment,
    adapter: ModelAdapter,
    texts: dict[Arm, list[RenderedText]],
    plans: dict[str, ContrastPlan],
    factors: list[str],
    count: int,
) -> tuple[pd.DataFrame | None, str | None]:
    """Per-token evidence for the first units, in the two arms of the largest-effect factor's contrast."""
    if count == 0 or not plans:
        return None, None
    plan = next(iter(plans.values()))
    view = token_view(
        adapter,
        texts[plan.treated][:count],
        texts[plan.reference][:count],
        factors,
        experiment.evidence_outcome.reader,
        n_steps=experiment.config.evidence.steps,
    )
    return view, render_token_view(view)


def _covering(evidence: pd.DataFrame, factors: list[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The readings that cover every factor (linking compares factors within a reading), and those that do not.

    Integrated gradients against the counterfactual skips a unit whose arms differ in token
    length, so a factor can be left with no unit: that reading stays in the tables, and the
    record says why it is not linked. NotEstimable when no reading covers every factor.
    `evidence` has the columns of `interventions.EVIDENCE_COLUMNS`.
    """
    if evidence.empty:
        return evidence, []
    baseline = evidence["baseline"].fillna("")
    overall = evidence["layer"].isna() & evidence["head"].isna()
    keep = pd.Series(True, index=evidence.index)
    not_linked = []
    for (method, base), rows in evidence[overall].groupby([evidence["method"], baseline], sort=False):
        missing = [factor for factor in factors if factor not in set(rows["factor"])]
        if missing:
            keep &= ~((evidence["method"] == method) & (baseline == base))
            not_linked.append(
                {
                    "method": method,
                    "baseline": base or None,
                    "factors_without_units": missing,
                    "reason": "no unit has a value for these factors (integrated gradients against the "
                    "counterfactual skips units whose two arms differ in token length)",
                }
            )
    if not keep.any():
        raise NotEstimable(
            "no evidence reading covers every factor, so none can be linked to the effects: "
            + "; ".join(f"{item['method']} lacks {', '.join(item['factors_without_units'])}" for item in not_linked)
        )
    return evidence[keep], not_linked
