"""The mediation step: activation-patching sweeps turned into mediation estimates.

Stage: steps. May import interventions, causal, experiments.errors, the config and run stages.

Patching runs through a `PatchRunner`, in blocks of units each stored as a shard, so a
resumed run reads finished blocks back. What is sharded: exact site sweeps and exact path
patching whole; for attribution over sites, the attribution of every block and then the
exact patching of the verified sites per block, while choosing those sites from all units'
estimates stays here; for edge screening (attribution over paths) likewise, the edge
attribution of every block, the ranking of the edges here, then the exact path patching of
the strongest per block.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from causal import RECEIVER, SITE_KEYS, MediationTable, estimate_mediation
from experiments.config import Experiment, MediationPlan
from experiments.errors import ConfigError
from experiments.run import EvaluatedUnits, PatchRunner, PatchWork, Report, SweepResult
from interventions import (
    SENDERS,
    AlignedPair,
    InterventionError,
    ModelAdapter,
    Outcome,
    Site,
    edge_list,
    model_receivers,
    model_sites,
    strongest_edges,
    verified_edges,
)


@dataclass(frozen=True)
class MediationOutcome:
    """One sweep's estimates and what the manifest should record about it."""

    table: MediationTable
    record: dict[str, Any]


def run_mediation(
    experiment: Experiment,
    plan: MediationPlan,
    units: EvaluatedUnits,
    adapter: ModelAdapter,
    *,
    patcher: PatchRunner,
    seed: int,
    progress: Report | None = None,
) -> MediationOutcome:
    """Patch every site (or edge) of the plan on a draw of units and estimate indirect effects with intervals.

    `patcher` runs the sharded patching work of this sweep (see the module docstring).
    """
    outcome = experiment.named(plan.outcome).reader
    pairs, drawn = units.patch_pairs(plan, adapter.tokenizer, seed=seed)
    if plan.edges:
        return _run_paths(experiment, plan, outcome, pairs, drawn, adapter, patcher, seed=seed, progress=progress)
    try:
        sites = model_sites(adapter, plan.components, layers=plan.layers)
    except InterventionError as error:
        raise ConfigError(str(error), path=f"{plan.path}.layers") from None
    options = _options(experiment, plan, seed)
    record = _record(plan, pairs, drawn, sites=len(sites))
    if plan.method == "exact":
        result = patcher.run(PatchWork("sites", outcome, tuple(sites), plan.positions), pairs, progress)
        record["work"] = dict(result.work)
        return MediationOutcome(estimate_mediation(_exact_per_unit(plan, result), **options), record)

    screen = patcher.run(PatchWork("attribution", outcome, tuple(sites), plan.positions), pairs, progress)
    rows = screen.patched
    per_unit = _per_unit(plan, rows, rows["estimate"].to_numpy(), screen.destination, screen.source)
    approximate = estimate_mediation(per_unit, source="attribution", **options)
    top = _top_sites(approximate, plan.verify_top)
    verified_sites = tuple(site for site in sites if site.name in set(top["site"]))
    verified_positions = tuple(dict.fromkeys(top["position"]))
    result = patcher.run(PatchWork("sites", outcome, verified_sites, verified_positions), pairs, progress)
    exact = estimate_mediation(_exact_per_unit(plan, result), **options)
    record.update(work=dict(result.work), verified=len(top), rank_agreement=_rank_agreement(exact, top))
    return MediationOutcome(MediationTable.concat([approximate, exact]), record)


def _run_paths(
    experiment: Experiment,
    plan: MediationPlan,
    outcome: Outcome,
    pairs: list[AlignedPair],
    drawn: dict[str, Any],
    adapter: ModelAdapter,
    patcher: PatchRunner,
    *,
    seed: int,
    progress: Report | None,
) -> MediationOutcome:
    """Path patching of every sender -> receiver edge (exact, sharded), or edge attribution verified on the strongest."""
    senders = _senders(adapter, plan)
    receivers = _receivers(adapter, plan)
    options = _options(experiment, plan, seed)
    record = _record(plan, pairs, drawn, senders=[site.name for site in senders], receivers=list(receivers))
    try:
        if plan.method == "exact":
            result = patcher.run(PatchWork("paths", outcome, senders, plan.positions, receivers), pairs, progress)
            record["work"] = dict(result.work)
            return MediationOutcome(estimate_mediation(_path_per_unit(plan, result), **options), record)
        screening = PatchWork("edge_attribution", outcome, senders, plan.positions, receivers)
        estimates = patcher.run(screening, pairs, progress).patched
        ranked = strongest_edges(adapter, estimates, senders, receivers)
        chosen = tuple(edge_list(ranked.head(plan.verify_top), senders))
        exact = patcher.run(PatchWork("edges", outcome, senders, plan.positions, edges=chosen), pairs, progress)
    except InterventionError as error:
        raise ConfigError(str(error), path=f"{plan.path}.paths") from None
    edges, spearman = verified_edges(ranked, exact.patched, exact.destination)
    verified = int(edges["effect"].notna().sum())
    record.update(work=dict(exact.work), verified=verified, rank_agreement={"spearman": spearman, "edges": verified})
    return MediationOutcome(
        MediationTable.concat(
            [
                estimate_mediation(
                    _edge_per_unit(plan, exact, estimates, estimates["estimate"].to_numpy()),
                    source="attribution",
                    **options,
                ),
                estimate_mediation(_path_per_unit(plan, exact), **options),
            ]
        ),
        record,
    )


def _senders(adapter: ModelAdapter, plan: MediationPlan) -> tuple[Site, ...]:
    """The sites the senders' patterns name (`*` matching any index), in the model's site order."""
    sites = model_sites(adapter, SENDERS)
    chosen = []
    for pattern in plan.senders:
        matched = [site for site in sites if fnmatch.fnmatchcase(site.name, pattern)]
        if not matched:
            raise ConfigError(
                f"sender {pattern!r} names no site of this model; senders are {', '.join(SENDERS)} sites such as "
                f"{sites[0].name} or {sites[-1].name}, '*' matching any index",
                path=f"{plan.path}.paths.senders",
            )
        chosen += matched
    return tuple(dict.fromkeys(chosen))


def _receivers(adapter: ModelAdapter, plan: MediationPlan) -> tuple[str, ...]:
    """Each receiving unit the receivers' patterns name, one edge each (`head_q.1.*` is every query head of layer 1)."""
    units = model_receivers(adapter)
    chosen = []
    for pattern in plan.receivers:
        matched = [name for name in units if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise ConfigError(
                f"receiver {pattern!r} names no receiving unit of this model; receivers are head_q.L.H, "
                f"head_k.L.H, head_v.L.H, mlp_in.L or resid_post.last, '*' matching any index",
                path=f"{plan.path}.paths.receivers",
            )
        chosen += matched
    return tuple(dict.fromkeys(chosen))


def _path_per_unit(plan: MediationPlan, result: SweepResult) -> pd.DataFrame:
    """Each (unit, edge)'s exact path effect on the treated-minus-reference scale."""
    rows = result.patched
    change = rows["outcome"].to_numpy() - result.destination[rows["unit"].to_numpy()]
    return _edge_per_unit(plan, result, rows, change)


def _edge_per_unit(plan: MediationPlan, result: SweepResult, rows: pd.DataFrame, change: np.ndarray) -> pd.DataFrame:
    """Each (unit, edge) of `rows` with its change of the receiving run's outcome (exact or estimated)."""
    return _per_unit(plan, rows, change, result.destination, result.source, keys=(*SITE_KEYS, RECEIVER))


def _record(plan: MediationPlan, pairs: list[AlignedPair], drawn: dict[str, Any], **swept: Any) -> dict[str, Any]:
    """The manifest's record of a sweep: its contrast and method, the units drawn, and what it swept."""
    return {
        "treatment": plan.treatment,
        "contrast": plan.contrast,
        "direction": plan.direction,
        "method": plan.method,
        "units": len(pairs),
        **swept,
        "positions": list(plan.positions),
        **drawn,
    }


def _options(experiment: Experiment, plan: MediationPlan, seed: int) -> dict[str, Any]:
    inference = experiment.config.inference
    return dict(
        treatment=plan.treatment,
        contrast=plan.contrast,
        direction=plan.direction,
        level=inference.level,
        n_bootstrap=inference.bootstrap,
        bootstrap_method=inference.bootstrap_method,
        seed=seed,
    )


def _per_unit(
    plan: MediationPlan,
    rows: pd.DataFrame,
    change: np.ndarray,
    destination: np.ndarray,
    source: np.ndarray,
    *,
    keys: tuple[str, ...] = SITE_KEYS,
) -> pd.DataFrame:
    """Total and indirect effect of each (unit, site, position), on the treated-minus-reference scale.

    `change` is the patched minus the unpatched outcome of the receiving run, exact or approximated.
    """
    units = rows["unit"].to_numpy()
    if plan.direction == "noise":
        total, indirect = source[units] - destination[units], change
    else:
        total, indirect = destination[units] - source[units], -change
    return rows[["unit", *keys]].assign(total=total, indirect=indirect)


def _exact_per_unit(plan: MediationPlan, result: SweepResult) -> pd.DataFrame:
    change = result.patched["outcome"].to_numpy() - result.destination[result.patched["unit"].to_numpy()]
    return _per_unit(plan, result.patched, change, result.destination, result.source)


def _indirect(table: MediationTable, method: str) -> pd.DataFrame:
    """The indirect-effect rows of one interval method."""
    frame = table.to_frame()
    return frame[(frame["effect"] == "indirect") & (frame["method"] == method)]


def _top_sites(table: MediationTable, k: int) -> pd.DataFrame:
    """The k approximate indirect effects largest in size."""
    indirect = _indirect(table, "attribution_t")
    order = indirect["estimate"].abs().sort_values(ascending=False).index
    return indirect.loc[order].head(k)


def _rank_agreement(exact: MediationTable, top: pd.DataFrame) -> dict[str, float]:
    """Spearman correlation between approximate (`top`) and exact mean indirect effects over the verified sites."""
    keys = ["site", "position"]
    merged = top[[*keys, "estimate"]].merge(
        _indirect(exact, "t")[[*keys, "estimate"]], on=keys, suffixes=("_approximate", "_exact")
    )
    if len(merged) < 3:
        return {"spearman": float("nan"), "sites": len(merged)}
    rho = stats.spearmanr(merged["estimate_approximate"], merged["estimate_exact"]).statistic
    return {"spearman": float(rho), "sites": len(merged)}
