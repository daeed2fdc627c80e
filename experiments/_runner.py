"""One run: units -> arm texts -> model outcomes -> paired effects -> run folder."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causal import EffectEstimate, EffectTable, MediationTable, SequenceInterval, confidence_sequence, estimate_paired_effects
from graphs import Units, World
from interventions import ModelAdapter, ModelSpec, render_world

from experiments._compile import Arm, Experiment, MediationPlan, stored_config
from experiments._demo_model import resolve_model_path
from experiments._evidence_step import EvidenceResult, run_evidence
from experiments._executor import Executor, LocalExecutor, RayExecutor
from experiments._heatmap import mediation_heatmap
from experiments._mediation_step import run_mediation
from experiments._progress import Progress, counting, stage
from experiments._report import write_report
from experiments._review import run_review
from experiments._shards import SHARD_KEY, ShardStore, discard_shards
from experiments._store import RunStore, base_manifest, utc_now
from experiments._summary import render_summary
from experiments.errors import RunError


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
    resume: bool = False,
) -> RunResult:
    """Carry out an experiment and write its run folder; tables are written as soon as they exist.

    Outcomes are stored in shards as they finish, so a run whose folder holds an unfinished
    run of the same config resumes it (`resume=True` insists that it does), skipping the
    (unit, arm) pairs already evaluated. A complete run's shards are removed: outcomes.parquet
    holds the same rows.
    """
    config = stored_config(experiment)
    store = RunStore(out_dir, config, resume=resume)
    store.write_config(config)
    manifest = base_manifest(config, command=command)
    if store.previous is not None:
        previous = store.previous["manifest"]
        manifest["resumes"] = [*previous.get("resumes", []), {
            "at": manifest["started_at"], "previous_started_at": previous.get("started_at"),
            "previous_status": previous.get("status"), "changed_fields": store.previous["changed"],
        }]
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
    discard_shards(out_dir)
    write_report(out_dir)
    return RunResult(folder=out_dir, effects=effects, manifest=manifest)


def _carry_out(
    experiment: Experiment, store: RunStore, manifest: dict[str, Any], progress: Progress | None
) -> tuple[EffectTable, MediationTable | None, EvidenceResult | None]:
    """Units, model outcomes, effects, then patching and evidence; each table is stored as soon as it exists."""
    config = experiment.config
    adapter = _load_model(experiment.model_spec, progress)
    manifest.update(
        model_id=config.model.id,
        model_path=adapter.spec.path,
        model_fingerprint=adapter.fingerprint(),
        device=str(adapter.device),
        dtype=str(adapter.dtype).removeprefix("torch."),
    )
    store.write_manifest(manifest)

    shards = ShardStore(store.folder)
    reused = len(shards.paths())
    with _executor(experiment, adapter) as executor:
        if config.sampling.target_half_width is None:
            units = draw_units(experiment)
            worlds = realize_arms(experiment, units)
            _evaluate_new_units(experiment, units, worlds, executor, shards, progress)
            intervals = None
        else:
            units, worlds, intervals, manifest["stopping"] = _sample_until_precise(experiment, executor, shards, progress)
        manifest["executor"] = executor.record()
    manifest.update(n_units=len(units), shards={"stored": len(shards.paths()), "reused": reused})
    store.write_manifest(manifest)
    store.write_table("units.parquet", _units_frame(units, worlds[Arm(None, None)]))

    outcomes = stored_outcomes(experiment, units, shards)
    store.write_table("outcomes.parquet", outcomes)

    effects = estimate_effects(experiment, units, worlds[Arm(None, None)], outcomes)
    if intervals is not None:
        effects = _with_sequence_rows(experiment, effects, intervals)
    store.write_table("effects.csv", effects.to_frame())

    mediation = _mediation(experiment, units, adapter, store, manifest, progress)
    evidence = _evidence(experiment, units, worlds, effects, outcomes, adapter, store, manifest, progress)
    return effects, mediation, evidence


def _executor(experiment: Experiment, adapter: ModelAdapter) -> Executor:
    """The executor the config names; Ray actors load the model from the path the driver resolved."""
    settings, batch_size = experiment.config.executor, experiment.config.model.batch_size
    if settings.type == "local":
        return LocalExecutor(adapter, experiment.outcome, batch_size=batch_size)
    return RayExecutor(
        replace(experiment.model_spec, path=adapter.spec.path), experiment.outcome, batch_size=batch_size,
        address=settings.address, num_workers=settings.num_workers, num_gpus_per_worker=settings.num_gpus_per_worker,
    )


def evaluate_texts(
    experiment: Experiment, adapter: ModelAdapter, texts: list[str], progress: Progress | None
) -> np.ndarray:
    """The outcome of every text, through the config's executor in blocks of `executor.shard_units` texts.

    For runs whose units are not drawn from the structural model (documents), so nothing is sharded to disk.
    """
    size = experiment.config.executor.shard_units
    work = [pd.DataFrame({"row": range(start, min(start + size, len(texts))), "text": texts[start:start + size]})
            for start in range(0, len(texts), size)]
    advance = counting(stage(progress, "evaluating the model"), len(texts))
    outcomes = np.full(len(texts), np.nan)

    def store(shard: pd.DataFrame) -> None:
        outcomes[shard["row"].to_numpy()] = shard["outcome"].to_numpy()
        if advance is not None:
            advance(len(shard))

    with _executor(experiment, adapter) as executor:
        executor.evaluate(work, store)
    return outcomes


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
    pending = items.merge(stored[list(SHARD_KEY)], on=list(SHARD_KEY), how="left", indicator=True)
    pending = pending[pending["_merge"] == "left_only"].drop(columns="_merge")
    known = stored.drop_duplicates("text").set_index("text")["outcome"]
    reused = pending["text"].isin(known.index)
    if reused.any():
        shards.append(pending[reused].assign(outcome=known.loc[pending.loc[reused, "text"]].to_numpy()))
    fresh = pending[~reused]
    block_of_text = items.groupby("text")["unit_id"].min() // experiment.config.executor.shard_units
    blocks = block_of_text.loc[fresh["text"]].to_numpy()
    work = [shard.reset_index(drop=True) for _, shard in fresh.groupby(blocks, sort=True)]
    advance = counting(stage(progress, "evaluating the model"), len(fresh))

    def store(shard: pd.DataFrame) -> None:
        shards.append(shard)
        if advance is not None:
            advance(len(shard))

    executor.evaluate(work, store)


def _sample_until_precise(
    experiment: Experiment, executor: Executor, shards: ShardStore, progress: Progress | None
) -> tuple[Units, dict[Arm, World], list[SequenceInterval], dict[str, Any]]:
    """Draw `batch_units` more units of the same seeded draw until every effect is precise enough.

    After each batch, every contrast's anytime-valid confidence sequence is recomputed on all
    units so far; drawing stops when each half width is at most `target_half_width`, or at
    `max_units`. A resumed run replays the same batches from its shards and stops at the same place.
    Returns the units, their worlds, the last intervals (one per contrast) and the manifest's
    `stopping` record, whose half widths are keyed "treated arm - reference arm".
    """
    sampling = experiment.config.sampling
    count, batches = 0, 0
    while True:
        start, count, batches = count, min(count + sampling.batch_units, sampling.max_units), batches + 1
        units = experiment.model.sample_units(count, seed=sampling.seed)
        worlds = realize_arms(experiment, units)
        _evaluate_new_units(experiment, units, worlds, executor, shards, progress, start=start)
        intervals = _sequences(experiment, units, stored_outcomes(experiment, units, shards))
        half_widths = {f"{plan.treated.label} - {plan.reference.label}": interval.half_width
                       for plan, interval in zip(experiment.contrasts, intervals, strict=True)}
        reached = all(width <= sampling.target_half_width for width in half_widths.values())
        if reached or count >= sampling.max_units:
            stopping = {
                "reason": "target_half_width" if reached else "max_units", "n_units": count, "batches": batches,
                "target_half_width": sampling.target_half_width, "design_size": sampling.units,
                "half_widths": half_widths,
            }
            return units, worlds, intervals, stopping


def _sequences(experiment: Experiment, units: Units, outcomes: pd.DataFrame) -> list[SequenceInterval]:
    """Every contrast's confidence sequence over the units so far, in contrast order."""
    by_arm = outcomes.pivot(index="unit_id", columns="arm", values="outcome").loc[units.ids]
    return [
        confidence_sequence(
            by_arm[plan.treated.label].to_numpy() - by_arm[plan.reference.label].to_numpy(),
            level=experiment.config.inference.level, weights=units.weights, design_size=experiment.config.sampling.units,
        )
        for plan in experiment.contrasts
    ]


def _with_sequence_rows(
    experiment: Experiment, effects: EffectTable, intervals: list[SequenceInterval]
) -> EffectTable:
    """`effects` followed by one anytime-valid row per contrast (`intervals` in contrast order), method "asymptotic_cs".

    Those rows' p-values are adjusted as their own family, leaving the fixed-n family as it was.
    """
    rows = [
        EffectEstimate(
            analysis="ate", estimand=plan.estimand, treatment=plan.treatment, contrast=plan.contrast,
            moderator=None, stratum=None, estimate=interval.estimate, ci_low=interval.ci_low, ci_high=interval.ci_high,
            std_error=interval.std_error, p_value=interval.p_value, n_units=interval.n_units,
            method=interval.method, level=interval.level,
        )
        for plan, interval in zip(experiment.contrasts, intervals, strict=True)
    ]
    correction = experiment.config.inference.correction
    return EffectTable(effects.estimates + EffectTable(tuple(rows)).corrected(correction).estimates, correction=correction)


def stored_outcomes(experiment: Experiment, units: Units, shards: ShardStore) -> pd.DataFrame:
    """The stored outcome of every (unit, arm) pair of `units`, ordered by arm then unit; RunError when one is missing."""
    labels = [arm.label for arm in experiment.arms]
    outcomes = shards.read()
    outcomes = outcomes[outcomes["unit_id"].isin(units.ids) & outcomes["arm"].isin(labels)]
    expected = len(units) * len(labels)
    if len(outcomes) != expected:
        raise RunError(
            f"the shards in {shards.folder} hold {len(outcomes)} of the {expected} (unit, arm) outcomes; "
            "resume the run to evaluate the rest"
        )
    order = pd.Categorical(outcomes["arm"], categories=labels, ordered=True)
    return (outcomes.assign(_arm=order).sort_values(["_arm", "unit_id"]).drop(columns="_arm")
            .reset_index(drop=True).loc[:, ["unit_id", "arm", "template", "text", "outcome"]])


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
        tables.append(outcome.table)
        records.append({**outcome.record, "heatmap": sweep_heatmap(store, index, plan, outcome.table).name})
    return store_mediation(store, manifest, tables, records)


def sweep_heatmap(store: RunStore, index: int, plan: MediationPlan, table: MediationTable) -> Path:
    """The layer x position heatmap of one patching sweep, `mediation_INDEX_TREATMENT.png` in the run folder."""
    return mediation_heatmap(table.to_frame(), store.folder / f"mediation_{index}_{plan.treatment}.png",
                             title=f"indirect effect of {plan.treatment} ({plan.contrast}), {plan.direction}")


def store_mediation(
    store: RunStore, manifest: dict[str, Any], tables: list[MediationTable], records: list[dict[str, Any]]
) -> MediationTable:
    """mediation.parquet from every sweep's table, and the sweeps' records in the manifest."""
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
    store_evidence(store, manifest, result)
    if report is not None:
        report(1, 1)
    return result


def store_evidence(store: RunStore, manifest: dict[str, Any], result: EvidenceResult) -> None:
    """evidence.parquet, its links and agreement, probes and the token view; the evidence record in the manifest."""
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


def arm_texts(experiment: Experiment, units: Units, worlds: dict[Arm, World], *, start: int = 0) -> pd.DataFrame:
    """One row per (unit, arm) of units[start:]: the unit's prompt in that arm's world."""
    frames = []
    for arm, world in worlds.items():
        rows = range(start, len(units))
        texts = [rendered.text for rendered in render_world(experiment.templates, _world_rows(world, rows))]
        frames.append(pd.DataFrame({"unit_id": units.ids[start:], "arm": arm.label,
                                    "template": world.templates[start:], "text": texts}))
    return pd.concat(frames, ignore_index=True)


def _world_rows(world: World, rows: range) -> World:
    """The world of the units in `rows` only."""
    part = slice(rows.start, rows.stop)
    return World(values={name: values[part] for name, values in world.values.items()},
                 forms={name: forms[part] for name, forms in world.forms.items()}, templates=world.templates[part])


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
