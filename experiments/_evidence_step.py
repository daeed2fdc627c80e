"""The evidence step of a run: attention, saliency and probes, linked to the interventional effects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from causal import EvidenceLinks, link_evidence
from graphs import Units, World
from interventions import (
    ModelAdapter,
    RenderedText,
    attention_evidence,
    gradient_x_input,
    integrated_gradients,
    probe_factors,
    render_token_view,
    render_world,
    token_view,
)

from experiments._compile import Arm, ContrastPlan, Experiment
from experiments._units import subsample


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
    units: Units,
    worlds: dict[Arm, World],
    effects: pd.DataFrame,
    outcomes: pd.DataFrame,
    adapter: ModelAdapter,
    *,
    seed: int,
) -> EvidenceResult:
    """Read every configured evidence method on a subsample of units and score it against the effects.

    Each factor is represented by its total-effect contrast with the largest |effect|;
    `unit` in the tables is the unit's place in the evidence subsample.
    """
    config = experiment.config.evidence
    methods = set(config.methods)
    chosen = subsample(units, config.units, seed=seed)
    headline = "exact" if units.exact else "t"
    plans = _representative_plans(experiment, effects, headline)
    factors = list(plans)
    needed = [Arm(None, None), *(arm for plan in plans.values() for arm in (plan.treated, plan.reference))]
    texts = {arm: _texts(experiment, worlds[arm], chosen) for arm in dict.fromkeys(needed)}
    factual = texts[Arm(None, None)]
    positions = list(range(len(chosen)))
    record: dict[str, Any] = {"units": len(chosen), "unit_ids": units.ids[chosen].tolist(), "weighted_draw": units.exact,
                              "methods": sorted(methods), "baseline": config.baseline, "steps": config.steps,
                              "factors": factors}
    frames = []
    if methods & {"attention", "attention_rollout"}:
        attention = attention_evidence(adapter, factual, factors, units=positions)
        frames.append(attention.spans[attention.spans["method"].isin(methods)])
        record.update(attn_implementation=attention.attn_implementation, switched_to_eager=attention.switched_to_eager)
    if "gradient_x_input" in methods:
        frames.append(gradient_x_input(adapter, factual, factors, experiment.outcome, units=positions).spans)
    if "integrated_gradients" in methods:
        spans, completeness = _integrated_gradients(experiment, adapter, factual, texts, plans, positions)
        frames.append(spans)
        record.update(completeness)
    evidence = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    per_unit = _unit_effects(outcomes, units, chosen, plans)
    links = link_evidence(
        _plan_rows(effects, plans), evidence, unit_effects=per_unit, effect_method=headline,
        level=experiment.config.inference.level, n_bootstrap=experiment.config.inference.bootstrap, seed=seed,
    )
    probes = None
    if "probe" in methods:
        values = {name: [str(value) for value in worlds[Arm(None, None)].values[name][chosen]] for name in experiment.graph.factors}
        probes = probe_factors(adapter, factual, values, seed=seed, level=experiment.config.inference.level).to_frame()
    tokens, html = _token_view(experiment, adapter, texts, plans, factors, config.token_view_units)
    return EvidenceResult(evidence, links, probes, tokens, html, record)


def _texts(experiment: Experiment, world: World, chosen: np.ndarray) -> list[RenderedText]:
    rendered = render_world(experiment.templates, world)
    return [rendered[i] for i in chosen]


def _representative_plans(experiment: Experiment, effects: pd.DataFrame, method: str) -> dict[str, ContrastPlan]:
    """Per factor, the total-effect contrast with the largest |effect|; largest effects first."""
    ate = effects[(effects["analysis"] == "ate") & (effects["method"] == method) & (effects["estimand"] == "total")]
    chosen: dict[str, tuple[float, ContrastPlan]] = {}
    for plan in experiment.contrasts:
        if plan.estimand != "total":
            continue
        row = ate[(ate["treatment"] == plan.treatment) & (ate["contrast"] == plan.contrast)]
        size = abs(float(row["estimate"].iloc[0]))
        if plan.treatment not in chosen or size > chosen[plan.treatment][0]:
            chosen[plan.treatment] = (size, plan)
    ranked = sorted(chosen.items(), key=lambda item: -item[1][0])
    return {factor: plan for factor, (_, plan) in ranked}


def _plan_rows(effects: pd.DataFrame, plans: dict[str, ContrastPlan]) -> pd.DataFrame:
    keep = pd.Series(False, index=effects.index)
    for plan in plans.values():
        keep |= (effects["treatment"] == plan.treatment) & (effects["contrast"] == plan.contrast)
    return effects[keep & (effects["estimand"] == "total")]


def _unit_effects(outcomes: pd.DataFrame, units: Units, chosen: np.ndarray, plans: dict[str, ContrastPlan]) -> pd.DataFrame:
    """Each subsampled unit's effect of each factor's representative contrast."""
    by_arm = outcomes.pivot(index="unit_id", columns="arm", values="outcome").loc[units.ids[chosen]]
    return pd.concat(
        [
            pd.DataFrame({
                "unit": np.arange(len(chosen)),
                "factor": factor,
                "effect": by_arm[plan.treated.label].to_numpy() - by_arm[plan.reference.label].to_numpy(),
            })
            for factor, plan in plans.items()
        ],
        ignore_index=True,
    )


def _integrated_gradients(
    experiment: Experiment,
    adapter: ModelAdapter,
    factual: list[RenderedText],
    texts: dict[Arm, list[RenderedText]],
    plans: dict[str, ContrastPlan],
    positions: list[int],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """IG spans from the pad baseline on factual texts, or per factor from its counterfactual arm.

    With the counterfactual baseline each factor's attributions come from its own contrast
    (treated arm against reference arm), so they sum to that unit's effect.
    """
    config = experiment.config.evidence
    factors = list(plans)
    if config.baseline == "pad":
        result = integrated_gradients(adapter, factual, factors, experiment.outcome, n_steps=config.steps, units=positions)
        return result.spans, {"completeness_max_abs_delta": float(result.completeness["delta"].abs().max())}
    spans, deltas, skipped = [], [], {}
    for factor, plan in plans.items():
        result = integrated_gradients(
            adapter, texts[plan.treated], factors, experiment.outcome, baseline="counterfactual",
            counterfactuals=texts[plan.reference], n_steps=config.steps, on_length_mismatch="skip", units=positions,
        )
        spans.append(result.spans[result.spans["factor"] == factor])
        deltas.append(result.completeness["delta"].abs().max())
        skipped[factor] = len(result.skipped_units)
    return pd.concat(spans, ignore_index=True), {
        "completeness_max_abs_delta": float(np.nanmax(deltas)), "skipped_unequal_length_units": skipped,
    }


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
        adapter, texts[plan.treated][:count], texts[plan.reference][:count], factors, experiment.outcome,
        n_steps=experiment.config.evidence.steps,
    )
    return view, render_token_view(view)
