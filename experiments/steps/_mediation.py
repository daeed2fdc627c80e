"""The mediation step: activation-patching sweeps turned into mediation estimates.

Stage: steps. May import interventions, causal, experiments.errors, the config and run stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from causal import SITE_KEYS, MediationTable, estimate_mediation
from experiments.config import Experiment, MediationPlan
from experiments.errors import ConfigError
from experiments.run import EvaluatedUnits, Report, counting
from interventions import (
    InterventionError,
    ModelAdapter,
    PatchResult,
    attribution_effects,
    evaluate_outcomes,
    model_sites,
    patch_effects,
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
    seed: int,
    progress: Report | None = None,
) -> MediationOutcome:
    """Patch every site of the plan on a draw of units and estimate indirect effects with intervals."""
    pairs, drawn = units.patch_pairs(plan, adapter.tokenizer, seed=seed)
    try:
        sites = model_sites(adapter, plan.components, layers=plan.layers)
    except InterventionError as error:
        raise ConfigError(str(error), path=f"{plan.path}.layers") from None
    inference = experiment.config.inference
    options = dict(
        treatment=plan.treatment,
        contrast=plan.contrast,
        direction=plan.direction,
        level=inference.level,
        n_bootstrap=inference.bootstrap,
        bootstrap_method=inference.bootstrap_method,
        seed=seed,
    )
    record: dict[str, Any] = {
        "treatment": plan.treatment,
        "contrast": plan.contrast,
        "direction": plan.direction,
        "method": plan.method,
        "units": len(pairs),
        "sites": len(sites),
        "positions": list(plan.positions),
        **drawn,
    }
    if plan.method == "exact":
        advance = counting(progress, len(pairs) * len(sites) * len(plan.positions))
        result = patch_effects(adapter, experiment.outcome, pairs, sites, plan.positions, progress=advance)
        record["work"] = dict(result.work)
        return MediationOutcome(estimate_mediation(_exact_per_unit(plan, result), **options), record)

    screen = attribution_effects(adapter, experiment.outcome, pairs, sites, plan.positions)
    destination = evaluate_outcomes(adapter, [pair.destination.text for pair in pairs], experiment.outcome)
    source = evaluate_outcomes(adapter, [pair.source.text for pair in pairs], experiment.outcome)
    per_unit = _per_unit(plan, screen, screen["estimate"].to_numpy(), destination, source)
    approximate = estimate_mediation(per_unit, source="attribution", **options)
    top = _top_sites(approximate, plan.verify_top)
    verified_sites = [site for site in sites if site.name in set(top["site"])]
    verified_positions = tuple(dict.fromkeys(top["position"]))
    advance = counting(progress, len(pairs) * len(verified_sites) * len(verified_positions))
    result = patch_effects(adapter, experiment.outcome, pairs, verified_sites, verified_positions, progress=advance)
    exact = estimate_mediation(_exact_per_unit(plan, result), **options)
    record.update(work=dict(result.work), verified=len(top), rank_agreement=_rank_agreement(exact, top))
    return MediationOutcome(MediationTable.concat([approximate, exact]), record)


def _per_unit(
    plan: MediationPlan, rows: pd.DataFrame, change: np.ndarray, destination: np.ndarray, source: np.ndarray
) -> pd.DataFrame:
    """Total and indirect effect of each (unit, site, position), on the treated-minus-reference scale.

    `change` is the patched minus the unpatched outcome of the receiving run, exact or approximated.
    """
    units = rows["unit"].to_numpy()
    if plan.direction == "noise":
        total, indirect = source[units] - destination[units], change
    else:
        total, indirect = destination[units] - source[units], -change
    return rows[["unit", *SITE_KEYS]].assign(total=total, indirect=indirect)


def _exact_per_unit(plan: MediationPlan, result: PatchResult) -> pd.DataFrame:
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
