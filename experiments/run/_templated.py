"""The templated run front: units drawn from the structural model, every arm evaluated, outcomes stored in shards.

Stage: run. May import graphs, interventions, causal, experiments.errors, the config and demo stages.

A resumed run reuses the shards the run store trusts, and only after the model it loaded
was checked against the stored run's (`load_run_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from causal import SequenceInterval, confidence_sequence
from experiments.config import Arm, ContrastPlan, Experiment, MediationPlan
from experiments.errors import RunError
from experiments.run._evaluated import EvidenceTexts
from experiments.run._executor import Executor, executor_for
from experiments.run._model import load_run_model
from experiments.run._progress import Progress, counting, stage
from experiments.run._shards import GENERATED_COLUMNS, PAIR_KEY, SHARD_COLUMNS, ShardStore
from experiments.run._store import RunStore
from experiments.run._units import arm_texts, draw_units, realize_arms, subsample
from graphs import Units, World
from interventions import AlignedPair, ModelAdapter, RenderedText, align, render_world


@dataclass(frozen=True)
class TemplatedUnits:
    """Units of the structural model, their worlds in every arm, and their stored values of one outcome."""

    experiment: Experiment
    units: Units
    worlds: dict[Arm, World]
    outcomes: pd.DataFrame
    sequences: tuple[SequenceInterval, ...] | None = None
    observed: None = None
    human_pairs: None = None

    @property
    def exact(self) -> bool:
        return self.units.exact

    def paired(self, plan: ContrastPlan) -> pd.DataFrame:
        by_arm = self.outcomes.pivot(index="unit_id", columns="arm", values="value").loc[self.units.ids]
        paired = pd.DataFrame(
            {
                "difference": by_arm[plan.treated.label].to_numpy() - by_arm[plan.reference.label].to_numpy(),
                "weight": self.units.weights,
            }
        )
        factual = self.worlds[Arm(None, None)]
        for moderator in plan.moderators:
            paired[moderator] = factual.values[moderator].astype(str)
        return paired

    def patch_pairs(
        self, plan: MediationPlan, tokenizer: Any, *, seed: int
    ) -> tuple[list[AlignedPair], dict[str, Any]]:
        experiment, units = self.experiment, self.units
        chosen = subsample(units, plan.units, seed=seed)
        treated_world = experiment.model.realize(units, do={plan.treatment: plan.treated.value})
        treated = render_world(experiment.templates, treated_world)
        reference = render_world(
            experiment.templates, experiment.model.realize(units, do={plan.treatment: plan.reference.value})
        )
        destination, source = (reference, treated) if plan.direction == "noise" else (treated, reference)
        # The template variant is drawn from the unit's own noise, so it is the same in every arm.
        pairs = [
            align(
                destination[i],
                source[i],
                experiment.templates[int(treated_world.templates[i])],
                tokenizer,
                treatment=plan.treatment,
            )
            for i in chosen
        ]
        return pairs, {}

    def evidence_texts(self, plans: dict[str, ContrastPlan], count: int, *, seed: int) -> EvidenceTexts:
        chosen = subsample(self.units, count, seed=seed)
        needed = [Arm(None, None), *(arm for plan in plans.values() for arm in (plan.treated, plan.reference))]
        texts = {arm: _texts(self.experiment, self.worlds[arm], chosen) for arm in dict.fromkeys(needed)}
        factual = self.worlds[Arm(None, None)]
        values = {
            name: [str(value) for value in factual.values[name][chosen]] for name in self.experiment.graph.factors
        }
        ids = self.units.ids[chosen]
        record = {"units": len(chosen), "unit_ids": ids.tolist(), "weighted_draw": self.units.exact}
        return EvidenceTexts(texts, values, ids, record)


def _texts(experiment: Experiment, world: World, chosen: np.ndarray) -> list[RenderedText]:
    rendered = render_world(experiment.templates, world)
    return [rendered[i] for i in chosen]


def evaluate_templated_units(
    experiment: Experiment, store: RunStore, manifest: dict[str, Any], progress: Progress | None
) -> tuple[dict[str, TemplatedUnits], ModelAdapter]:
    """Draw the units, evaluate every (unit, arm) into shards (resuming what they hold), store units and outcomes.

    Returns the units once per outcome (by name, in config order), each with that outcome's values.
    """
    config = experiment.config
    adapter = load_run_model(experiment, store, manifest)

    shards = ShardStore(store.folder, record=store.record)
    reused = len(shards.paths())
    with executor_for(experiment, adapter) as executor:
        if config.sampling.target_half_width is None:
            units = draw_units(experiment)
            worlds = realize_arms(experiment, units)
            _evaluate_new_units(experiment, units, worlds, executor, shards, progress)
        else:
            units, worlds, manifest["stopping"] = _sample_until_precise(experiment, executor, shards, progress)
        manifest["executor"] = executor.record()
    manifest.update(n_units=len(units), shards={"stored": len(shards.paths()), "reused": reused})
    store.write_manifest(manifest)
    store.write_table("units.parquet", _units_frame(units, worlds[Arm(None, None)]))

    outcomes = stored_outcomes(experiment, units, shards)
    store.write_table("outcomes.parquet", outcomes)
    sequential = config.sampling.target_half_width is not None
    evaluated = {}
    for name in experiment.readers:
        rows = outcomes[outcomes["outcome"] == name].reset_index(drop=True)
        sequences = tuple(_sequences(experiment, units, rows)) if sequential else None
        evaluated[name] = TemplatedUnits(experiment, units, worlds, rows, sequences)
    return evaluated, adapter


def _evaluate_new_units(
    experiment: Experiment,
    units: Units,
    worlds: dict[Arm, World],
    executor: Executor,
    shards: ShardStore,
    progress: Progress | None,
    *,
    start: int = 0,
) -> None:
    """Store the outcome of every (unit, arm) pair of units[start:] that no shard holds yet.

    A pair whose text already has a stored outcome (from earlier units) reuses it; every other
    text is evaluated once, in the shard of the `shard_units` block of the first unit that shows
    it. Blocks depend on the units only, not on what is stored, so a resumed run cuts the same
    shards (and so the same model batches) as an uninterrupted one.
    """
    items = arm_texts(experiment, units, worlds, start=start)
    stored = shards.read()
    pairs = list(PAIR_KEY)
    pending = items.merge(stored[pairs].drop_duplicates(), on=pairs, how="left", indicator=True)
    pending = pending[pending["_merge"] == "left_only"].drop(columns="_merge")
    carried = ["outcome", "value", *(column for column in GENERATED_COLUMNS if column in stored.columns)]
    known = stored.drop_duplicates(["text", "outcome"])[["text", *carried]]
    reused = pending["text"].isin(known["text"])
    if reused.any():
        shards.append(pending[reused].merge(known, on="text", how="left", sort=False))
    fresh = pending[~reused]
    block_of_text = items.groupby("text")["unit_id"].min() // experiment.config.executor.shard_units
    blocks = block_of_text.loc[fresh["text"]].to_numpy()
    work = [shard.reset_index(drop=True) for _, shard in fresh.groupby(blocks, sort=True)]
    advance = counting(stage(progress, "evaluating the model"), len(fresh))

    def store(shard: pd.DataFrame) -> None:
        shards.append(shard)
        if advance is not None:
            advance(len(shard[pairs].drop_duplicates()))

    executor.evaluate(work, store)


def _sample_until_precise(
    experiment: Experiment, executor: Executor, shards: ShardStore, progress: Progress | None
) -> tuple[Units, dict[Arm, World], dict[str, Any]]:
    """Draw `batch_units` more units of the same seeded draw until every effect is precise enough.

    After each batch, every contrast's anytime-valid confidence sequence is recomputed on all
    units so far; drawing stops when each half width is at most `target_half_width`, or at
    `max_units`. Precision is judged on the first outcome (the sequences of the others stay valid at
    any stopping time, this one included). A resumed run replays the same batches from its shards
    and stops at the same place. Returns the units, their worlds and the manifest's `stopping`
    record, whose half widths are keyed "treated arm - reference arm".
    """
    sampling = experiment.config.sampling
    count, batches = 0, 0
    while True:
        start, count, batches = count, min(count + sampling.batch_units, sampling.max_units), batches + 1
        units = experiment.model.sample_units(count, seed=sampling.seed)
        worlds = realize_arms(experiment, units)
        _evaluate_new_units(experiment, units, worlds, executor, shards, progress, start=start)
        stored = stored_outcomes(experiment, units, shards)
        intervals = _sequences(experiment, units, stored[stored["outcome"] == experiment.outcomes[0].name])
        half_widths = {
            f"{plan.treated.label} - {plan.reference.label}": interval.half_width
            for plan, interval in zip(experiment.contrasts, intervals, strict=True)
        }
        reached = all(width <= sampling.target_half_width for width in half_widths.values())
        if reached or count >= sampling.max_units:
            stopping = {
                "reason": "target_half_width" if reached else "max_units",
                "n_units": count,
                "batches": batches,
                "target_half_width": sampling.target_half_width,
                "design_size": sampling.units,
                "half_widths": half_widths,
            }
            return units, worlds, stopping


def _sequences(experiment: Experiment, units: Units, outcomes: pd.DataFrame) -> list[SequenceInterval]:
    """Every contrast's confidence sequence over the units so far, in contrast order."""
    by_arm = outcomes.pivot(index="unit_id", columns="arm", values="value").loc[units.ids]
    return [
        confidence_sequence(
            by_arm[plan.treated.label].to_numpy() - by_arm[plan.reference.label].to_numpy(),
            level=experiment.config.inference.level,
            weights=units.weights,
            design_size=experiment.config.sampling.units,
        )
        for plan in experiment.contrasts
    ]


def stored_outcomes(experiment: Experiment, units: Units, shards: ShardStore) -> pd.DataFrame:
    """Every stored outcome of every (unit, arm) pair of `units`, ordered by arm, unit, then outcome as configured;
    RunError when one is missing."""
    labels = [arm.label for arm in experiment.arms]
    names = list(experiment.readers)
    outcomes = shards.read()
    outcomes = outcomes[
        outcomes["unit_id"].isin(units.ids) & outcomes["arm"].isin(labels) & outcomes["outcome"].isin(names)
    ]
    expected = len(units) * len(labels) * len(names)
    if len(outcomes) != expected:
        raise RunError(
            f"the shards in {shards.folder} hold {len(outcomes)} of the {expected} (unit, arm, outcome) values; "
            "resume the run to evaluate the rest"
        )
    order = pd.Categorical(outcomes["arm"], categories=labels, ordered=True)
    named = pd.Categorical(outcomes["outcome"], categories=names, ordered=True)
    return (
        outcomes.assign(_arm=order, _outcome=named)
        .sort_values(["_arm", "unit_id", "_outcome"])
        .drop(columns=["_arm", "_outcome"])
        .reset_index(drop=True)
        .loc[:, [*SHARD_COLUMNS, *(column for column in GENERATED_COLUMNS if column in outcomes.columns)]]
    )


def _units_frame(units: Units, factual: World) -> pd.DataFrame:
    """One row per unit: weight, template variant, factual value and surface form of each factor."""
    columns: dict[str, Any] = {"unit_id": units.ids, "weight": units.weights, "template": factual.templates}
    for name in factual.values:
        columns[name] = factual.values[name].astype(str)
        columns[f"{name}__form"] = factual.forms[name].astype(str)
    return pd.DataFrame(columns)
