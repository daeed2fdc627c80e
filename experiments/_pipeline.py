"""One run, start to finish: config -> units (templated or documents) -> steps -> run folder -> report.

Stage: pipeline. May import every stage: it composes them, in the order the data flows.

Each stage hands its result to the next; this module stores what the steps return,
keeps the manifest, and marks the run failed (keeping what was written) when a stage raises.
The run folder's lock is held from the start and released when the run ends, either way.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from causal import EffectTable, MediationTable
from experiments.config import Experiment, ExperimentConfig, stored_config
from experiments.errors import NotEstimable
from experiments.report import edge_graph, mediation_heatmap, render_summary, write_report
from experiments.run import (
    BlockRunner,
    BlockShards,
    EvaluatedUnits,
    EvidenceReader,
    Executor,
    LockHolder,
    PatchRunner,
    Progress,
    RunStore,
    base_manifest,
    evaluate_documents,
    evaluate_templated_units,
    executor_for,
    read_outcomes,
    read_table,
    stage,
    utc_now,
)
from experiments.steps import (
    EVIDENCE,
    MEDIATION,
    Estimates,
    EvidenceResult,
    ReviewResult,
    analysis_seed,
    estimate_effects,
    review_tables,
    run_evidence,
    run_mediation,
)
from interventions import ModelAdapter


@dataclass(frozen=True)
class RunResult:
    """What a finished run produced and where it lies.

    `lock_taken_over` is the dead process whose stale lock on the folder the run took over, if any.
    """

    folder: Path
    effects: EffectTable
    manifest: dict[str, Any]
    lock_taken_over: LockHolder | None = None


def run_experiment(
    experiment: Experiment,
    *,
    out_dir: Path,
    progress: Progress | None = None,
    command: list[str] | None = None,
    resume: bool = False,
) -> RunResult:
    """Carry out an experiment and write its run folder; tables are written as soon as they exist.

    Outcomes, patching blocks and evidence blocks are stored in shards as they finish, so a
    run whose folder holds an unfinished run of the same config resumes it (`resume=True`
    insists that it does), skipping the work already stored, once its model, Paribus version
    and outcome definitions are found equal to the stored run's. A complete run's shards
    are removed: outcomes.parquet, mediation.parquet and the evidence tables hold the same rows.
    The folder is locked while the run writes it (RunFolderError when another run holds it),
    and manifest.json lists every file with its sha256.
    """
    config = stored_config(experiment)
    store = RunStore(out_dir, config, resume=resume)
    try:
        return _run(experiment, config, store, progress, command)
    finally:
        store.close()


def _run(
    experiment: Experiment,
    config: ExperimentConfig,
    store: RunStore,
    progress: Progress | None,
    command: list[str] | None,
) -> RunResult:
    """The run inside its locked folder: a resumed run keeps the stored provenance until its model is checked."""
    store.write_config(config)
    manifest = base_manifest(config, command=command)
    if store.previous is not None:
        manifest.update(store.previous.provenance())
        manifest["resumes"] = [
            *store.previous.manifest.get("resumes", []),
            store.previous.record(manifest["started_at"]),
        ]
    if store.lock_taken_over is not None:
        manifest["lock_taken_over"] = asdict(store.lock_taken_over)
    store.write_manifest(manifest)
    clock = time.perf_counter()

    try:
        evaluate = evaluate_templated_units if experiment.data is None else evaluate_documents
        units, adapter = evaluate(experiment, store, manifest, progress)
        generated = [outcome.name for outcome in experiment.outcomes if outcome.generated]
        if generated:
            manifest["generation"] = _generation_record({name: units[name].outcomes for name in generated})
            store.write_manifest(manifest)
        estimates = estimate_effects(experiment, units, progress=progress)
        _store_estimates(experiment, store, manifest, estimates)
        effects = estimates.effects
        first = units[experiment.outcomes[0].name]
        read = experiment.evidence_outcome.name
        inside = bool(experiment.mediation) or experiment.config.evidence is not None
        with executor_for(experiment, adapter) if inside else nullcontext() as executor:
            mediation = _mediation(experiment, first, adapter, executor, store, manifest, progress)
            evidence = _evidence(
                experiment, units[read], effects.only(read), adapter, executor, store, manifest, progress
            )
        review = run_review(experiment, store)
    except BaseException as error:
        manifest.update(status="failed", error=f"{type(error).__name__}: {error}", finished_at=utc_now())
        store.write_manifest(manifest)
        raise
    manifest.update(
        status="complete",
        finished_at=utc_now(),
        seconds=round(time.perf_counter() - clock, 3),
        review=review.record,
    )
    store.write_text("summary.md", render_summary(experiment, effects, manifest, mediation, evidence, review))
    store.discard_shards()
    write_report(store.folder)
    manifest = {**manifest, "checksums": dict(sorted(store.checksums.items()))}
    return RunResult(folder=store.folder, effects=effects, manifest=manifest, lock_taken_over=store.lock_taken_over)


def _store_estimates(experiment: Experiment, store: RunStore, manifest: dict[str, Any], estimates: Estimates) -> None:
    """effects.csv; with documents also refutations.csv, overlap.csv and the data record's warnings."""
    store.write_table("effects.csv", estimates.effects.to_frame())
    if estimates.refutations is not None:
        store.write_table("refutations.csv", estimates.refutations)
        store.write_table("overlap.csv", estimates.overlap)
    if experiment.data is None:
        if estimates.warnings:
            manifest["notes"] = list(estimates.warnings)
            store.write_manifest(manifest)
        return
    refutations = [] if estimates.refutations is None else estimates.refutations.to_dict("records")
    manifest["data"].update(
        warnings=list(estimates.warnings),
        positivity=_positivity(estimates.overlap),
        refutations=[
            {key: (None if isinstance(value, float) and math.isnan(value) else value) for key, value in record.items()}
            for record in refutations
        ],
    )
    store.write_manifest(manifest)


def _generation_record(outcomes: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Per generation outcome and arm: generated answers, those no pattern matched, texts with no parsed answer."""
    return [
        {
            "outcome": name,
            "arm": str(arm),
            "answers": int(rows["answers"].map(len).sum()),
            "unparsed": int(rows["unparsed"].sum()),
            "texts_without_value": int(rows["value"].isna().sum()),
        }
        for name, frame in outcomes.items()
        for arm, rows in frame.groupby("arm", sort=False)
    ]


def _positivity(overlap: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Per contrast whose adjustment set has a stratum without both arms: how many strata, and which lack one."""
    if overlap is None:
        return []
    records = []
    for (treatment, contrast), strata in overlap.groupby(["treatment", "contrast"], sort=False):
        unsupported = strata.loc[~strata["supported"].astype(bool), "stratum"].astype(str).tolist()
        if unsupported:
            records.append(
                {"treatment": treatment, "contrast": contrast, "strata": len(strata), "unsupported": unsupported}
            )
    return records


def _mediation(
    experiment: Experiment,
    units: EvaluatedUnits,
    adapter: ModelAdapter,
    executor: Executor,
    store: RunStore,
    manifest: dict[str, Any],
    progress: Progress | None,
) -> MediationTable | None:
    """Every patching sweep of the config: mediation.parquet, one heatmap per sweep, manifest records.

    Patching runs through the config's executor in blocks of `executor.shard_units` units,
    each stored as a shard that a resumed run reads back; a sweep's record counts them in `shards`.
    """
    if not experiment.mediation:
        return None
    shards = BlockShards(store.folder, record=store.record)
    tables, records = [], []
    for index, plan in enumerate(experiment.mediation):
        seed = analysis_seed(experiment.config.sampling.seed, MEDIATION + index)
        report = stage(progress, f"patching {plan.treatment} ({plan.contrast})")
        blocks = BlockRunner(executor, shards)
        patcher = PatchRunner(blocks, sweep=index, block_units=experiment.config.executor.shard_units)
        try:
            outcome = run_mediation(experiment, plan, units, adapter, patcher=patcher, seed=seed, progress=report)
        except NotEstimable as error:
            records.append(
                {
                    "treatment": plan.treatment,
                    "contrast": plan.contrast,
                    "direction": plan.direction,
                    "not_estimable": str(error),
                }
            )
            continue
        draw = edge_graph if plan.edges else mediation_heatmap
        numbered = outcome.table.numbered(index, plan.outcome)
        heatmap = draw(
            numbered.to_frame(),
            store.folder / f"mediation_{index}_{plan.treatment}.png",
            title=f"indirect effect of {plan.treatment} ({plan.contrast}) on {plan.outcome}, {plan.direction}",
        )
        store.record(heatmap)
        tables.append(numbered)
        records.append({**outcome.record, "shards": blocks.record(), "heatmap": heatmap.name})
    manifest["mediation"] = records
    store.write_manifest(manifest)
    if not tables:
        return None
    mediation = MediationTable.concat(tables)
    store.write_table("mediation.parquet", mediation.to_frame())
    return mediation


def _evidence(
    experiment: Experiment,
    units: EvaluatedUnits,
    effects: EffectTable,
    adapter: ModelAdapter,
    executor: Executor,
    store: RunStore,
    manifest: dict[str, Any],
    progress: Progress | None,
) -> EvidenceResult | None:
    """Attention, saliency and probe evidence beside the effects: evidence.parquet and friends.

    Saliency reads evidence.outcome, and its tables name it (probes read no outcome).

    Attention and saliency are read through the config's executor in blocks of
    `executor.shard_units` texts, each stored as a shard that a resumed run reads back; the
    record counts them in `shards`.
    """
    if experiment.config.evidence is None:
        return None
    report = stage(progress, "reading attention, saliency and probes")
    if report is not None:
        report(0, 1)
    seed = analysis_seed(experiment.config.sampling.seed, EVIDENCE)
    blocks = BlockRunner(executor, BlockShards(store.folder, record=store.record))
    reader = EvidenceReader(blocks, block_units=experiment.config.executor.shard_units)
    try:
        result = run_evidence(experiment, units, effects.to_frame(), adapter, reader=reader, seed=seed, progress=report)
    except NotEstimable as error:
        manifest["evidence"] = {"not_estimable": str(error)}
        store.write_manifest(manifest)
        return None
    read = experiment.evidence_outcome.name
    store.write_table("evidence.parquet", with_outcome(result.evidence, read))
    store.write_table("evidence_links.csv", with_outcome(result.links.to_frame(), read))
    store.write_table("evidence_agreement.csv", with_outcome(result.links.agreement_frame(), read))
    if result.probes is not None:
        store.write_table("probes.csv", result.probes)
    if result.tokens is not None:
        store.write_table("token_view.parquet", with_outcome(result.tokens, read))
        store.write_text("token_view.html", result.tokens_html)
    manifest["evidence"] = {**result.record, "shards": blocks.record()}
    store.write_manifest(manifest)
    if report is not None:
        report(1, 1)
    return result


def with_outcome(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """`frame` with the outcome its rows measure as its first column."""
    return frame.assign(outcome=name)[["outcome", *frame.columns]]


def run_review(experiment: Experiment, store: RunStore) -> ReviewResult:
    """Review the run from its stored tables: hypotheses.csv, fairness.csv and the surrogate files."""
    folder = store.folder
    population = (
        pd.read_parquet(folder / "units.parquet")
        if experiment.data is None
        else pd.read_parquet(folder / "documents.parquet").rename(columns={"doc_id": "unit_id"})
    )
    effects = read_table(folder, "effects.csv") if experiment.hypotheses else None
    review = review_tables(experiment, effects, read_outcomes(folder), population)
    if review.verdicts is not None:
        store.write_table("hypotheses.csv", review.verdicts.to_frame())
    if review.fairness is None:
        return review
    decided = review.decision_outcome
    store.write_table("fairness.csv", with_outcome(review.fairness.to_frame(), decided))
    if review.surrogate is not None:
        store.write_table("surrogate.csv", with_outcome(review.surrogate.to_frame(), decided))
        store.write_table("surrogate_coefficients.csv", with_outcome(review.surrogate.coefficient_frame(), decided))
        store.write_text("surrogate_rules.txt", review.surrogate.rules)
    return review
