"""One run: units -> arm texts -> model outcomes -> paired effects -> run folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causal import EffectTable, MediationTable, estimate_paired_effects
from graphs import Units, World
from interventions import ModelAdapter, ModelSpec, evaluate_outcomes, render_world

from experiments._compile import Arm, Experiment, stored_config
from experiments._demo_model import resolve_model_path
from experiments._evidence_step import EvidenceResult, run_evidence
from experiments._heatmap import mediation_heatmap
from experiments._mediation_step import run_mediation
from experiments._progress import Progress, counting, stage
from experiments._report import write_report
from experiments._review import run_review
from experiments._store import RunStore, base_manifest, utc_now
from experiments._summary import render_summary



@dataclass(frozen=True)
class RunResult:
    """What a finished run produced and where it lies."""

    folder: Path
    effects: EffectTable
    manifest: dict[str, Any]


def run_experiment(
    experiment: Experiment,
    *,
    out_dir: Path,
    progress: Progress | None = None,
    command: list[str] | None = None,
) -> RunResult:
    """Carry out an experiment and write its run folder; tables are written as soon as they exist."""
    config = stored_config(experiment)
    store = RunStore(out_dir)
    store.write_config(config)
    manifest = base_manifest(config, command=command)
    store.write_manifest(manifest)
    clock = time.perf_counter()

    try:
        if experiment.data is None:
            effects, mediation, evidence = _carry_out(experiment, store, manifest, progress)
        else:
            from experiments._observational_run import carry_out_documents  # it builds on this module's helpers

            effects, mediation, evidence = carry_out_documents(experiment, store, manifest, progress)
        review = run_review(experiment, store)
    except BaseException as error:
        manifest.update(status="failed", error=f"{type(error).__name__}: {error}", finished_at=utc_now())
        store.write_manifest(manifest)
        raise
    manifest.update(status="complete", finished_at=utc_now(), seconds=round(time.perf_counter() - clock, 3),
                    review=review.record)
    store.write_text("summary.md", render_summary(experiment, effects, manifest, mediation, evidence, review))
    store.write_manifest(manifest)
    write_report(out_dir)
    return RunResult(folder=out_dir, effects=effects, manifest=manifest)


def _carry_out(
    experiment: Experiment, store: RunStore, manifest: dict[str, Any], progress: Progress | None
) -> tuple[EffectTable, MediationTable | None, EvidenceResult | None]:
    """Units, model outcomes, effects, then patching and evidence; each table is stored as soon as it exists."""
    config = experiment.config
    units = draw_units(experiment)
    worlds = realize_arms(experiment, units)
    store.write_table("units.parquet", _units_frame(units, worlds[Arm(None, None)]))

    adapter = _load_model(experiment.model_spec, progress)
    manifest.update(
        model_id=config.model.id,
        model_path=adapter.spec.path,
        model_fingerprint=adapter.fingerprint(),
        device=str(adapter.device),
        dtype=str(adapter.dtype).removeprefix("torch."),
        n_units=len(units),
    )
    store.write_manifest(manifest)

    outcomes = arm_texts(experiment, units, worlds)
    outcomes["outcome"] = _model_evaluator(experiment, adapter, progress)(outcomes["text"].tolist())
    store.write_table("outcomes.parquet", outcomes)

    effects = estimate_effects(experiment, units, worlds[Arm(None, None)], outcomes)
    store.write_table("effects.csv", effects.to_frame())

    mediation = _mediation(experiment, units, adapter, store, manifest, progress)
    evidence = _evidence(experiment, units, worlds, effects, outcomes, adapter, store, manifest, progress)
    return effects, mediation, evidence


def _mediation(
    experiment: Experiment,
    units: Units,
    adapter: ModelAdapter,
    store: RunStore,
    manifest: dict[str, Any],
    progress: Progress | None,
) -> MediationTable | None:
    """Every patching sweep of the config: mediation.parquet, one heatmap per sweep, manifest records."""
    if not experiment.mediation:
        return None
    tables, records = [], []
    for index, plan in enumerate(experiment.mediation):
        seed = int(np.random.SeedSequence([experiment.config.sampling.seed, 1_000 + index]).generate_state(1)[0])
        report = stage(progress, f"patching {plan.treatment} ({plan.contrast})")
        outcome = run_mediation(experiment, plan, units, adapter, seed=seed, progress=report)
        figure = mediation_heatmap(outcome.table.to_frame(), store.folder / f"mediation_{index}_{plan.treatment}.png",
                                   title=f"indirect effect of {plan.treatment} ({plan.contrast}), {plan.direction}")
        tables.append(outcome.table)
        records.append({**outcome.record, "heatmap": figure.name})
    mediation = MediationTable.concat(tables)
    store.write_table("mediation.parquet", mediation.to_frame())
    manifest["mediation"] = records
    store.write_manifest(manifest)
    return mediation


def _evidence(
    experiment: Experiment,
    units: Units,
    worlds: dict[Arm, World],
    effects: EffectTable,
    outcomes: pd.DataFrame,
    adapter: ModelAdapter,
    store: RunStore,
    manifest: dict[str, Any],
    progress: Progress | None,
) -> EvidenceResult | None:
    """Attention, saliency and probe evidence beside the effects: evidence.parquet and friends."""
    if experiment.config.evidence is None:
        return None
    report = stage(progress, "reading attention, saliency and probes")
    if report is not None:
        report(0, 1)
    seed = int(np.random.SeedSequence([experiment.config.sampling.seed, 2_000]).generate_state(1)[0])
    result = run_evidence(experiment, units, worlds, effects.to_frame(), outcomes, adapter, seed=seed)
    store.write_table("evidence.parquet", result.evidence)
    store.write_table("evidence_links.csv", result.links.to_frame())
    store.write_table("evidence_agreement.csv", result.links.agreement_frame())
    if result.probes is not None:
        store.write_table("probes.csv", result.probes)
    if result.tokens is not None:
        store.write_table("token_view.parquet", result.tokens)
        store.write_text("token_view.html", result.tokens_html)
    manifest["evidence"] = result.record
    store.write_manifest(manifest)
    if report is not None:
        report(1, 1)
    return result


def draw_units(experiment: Experiment) -> Units:
    """The run's units: sampled with the config's seed, or every unit of the space in exact mode."""
    sampling = experiment.config.sampling
    if sampling.mode == "exact":
        return experiment.model.enumerate_units(max_units=sampling.max_exact_units)
    return experiment.model.sample_units(sampling.units, seed=sampling.seed)


def realize_arms(experiment: Experiment, units: Units) -> dict[Arm, World]:
    """The world of every arm, from the same units' noise."""
    return {
        arm: experiment.model.realize(units)
        if arm.treatment is None
        else experiment.model.realize(units, do={arm.treatment: arm.value}, hold=arm.hold)
        for arm in experiment.arms
    }


def _units_frame(units: Units, factual: World) -> pd.DataFrame:
    """One row per unit: weight, template variant, factual value and surface form of each factor."""
    columns: dict[str, Any] = {"unit_id": units.ids, "weight": units.weights, "template": factual.templates}
    for name in factual.values:
        columns[name] = factual.values[name].astype(str)
        columns[f"{name}__form"] = factual.forms[name].astype(str)
    return pd.DataFrame(columns)


def _load_model(spec: ModelSpec, progress: Progress | None) -> ModelAdapter:
    path = resolve_model_path(spec.path, progress=stage(progress, "training the demo model"))
    return ModelAdapter.load(replace(spec, path=path))


def arm_texts(experiment: Experiment, units: Units, worlds: dict[Arm, World]) -> pd.DataFrame:
    """One row per (unit, arm): the unit's prompt in that arm's world."""
    frames = []
    for arm, world in worlds.items():
        texts = [rendered.text for rendered in render_world(experiment.templates, world)]
        frames.append(pd.DataFrame({"unit_id": units.ids, "arm": arm.label, "template": world.templates, "text": texts}))
    return pd.concat(frames, ignore_index=True)


def _model_evaluator(
    experiment: Experiment, adapter: ModelAdapter, progress: Progress | None
) -> Callable[[list[str]], np.ndarray]:
    """Evaluate texts with the model, reporting progress over the distinct texts."""

    def evaluate(texts: list[str]) -> np.ndarray:
        advance = counting(stage(progress, "evaluating the model"), len(set(texts)))
        return evaluate_outcomes(
            adapter, texts, experiment.outcome, batch_size=experiment.config.model.batch_size, progress=advance
        )

    return evaluate


def estimate_effects(experiment: Experiment, units: Units, factual: World, outcomes: pd.DataFrame) -> EffectTable:
    """Paired effects of every contrast, corrected for multiple testing across the whole run."""
    config = experiment.config
    by_arm = outcomes.pivot(index="unit_id", columns="arm", values="outcome").loc[units.ids]
    tables = []
    for index, plan in enumerate(experiment.contrasts):
        paired = pd.DataFrame(
            {
                "difference": by_arm[plan.treated.label].to_numpy() - by_arm[plan.reference.label].to_numpy(),
                "weight": units.weights,
            }
        )
        for moderator in plan.moderators:
            paired[moderator] = factual.values[moderator].astype(str)
        tables.append(
            estimate_paired_effects(
                paired,
                treatment=plan.treatment,
                contrast=plan.contrast,
                estimand=plan.estimand,
                moderators=plan.moderators,
                exact=units.exact,
                level=config.inference.level,
                n_bootstrap=config.inference.bootstrap,
                seed=int(np.random.SeedSequence([config.sampling.seed, index]).generate_state(1)[0]),
            )
        )
    return EffectTable.concat(tables).corrected(config.inference.correction)
