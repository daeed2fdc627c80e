"""One run: units -> arm texts -> model outcomes -> paired effects -> run folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causal import EffectTable, estimate_paired_effects
from graphs import Units, World
from interventions import ModelAdapter, ModelSpec, evaluate_outcomes, render_world

from experiments._compile import Arm, Experiment
from experiments._demo_model import resolve_model_path
from experiments._store import RunStore, base_manifest, utc_now
from experiments._summary import render_summary

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called as long work advances."""


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
    config = experiment.config
    store = RunStore(out_dir)
    store.write_config(config)
    manifest = base_manifest(config, command=command)
    store.write_manifest(manifest)
    clock = time.perf_counter()

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
    manifest.update(status="complete", finished_at=utc_now(), seconds=round(time.perf_counter() - clock, 3))
    store.write_text("summary.md", render_summary(experiment, effects, manifest))
    store.write_manifest(manifest)
    return RunResult(folder=out_dir, effects=effects, manifest=manifest)


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
    train_progress = None if progress is None else (lambda done, total: progress("training the demo model", done, total))
    path = resolve_model_path(spec.path, progress=train_progress)
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
        distinct = len(set(texts))
        done = 0

        def advance(finished: int) -> None:
            nonlocal done
            done += finished
            if progress is not None:
                progress("evaluating the model", done, distinct)

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
