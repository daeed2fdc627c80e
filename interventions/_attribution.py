"""Attribution patching: a first-order estimate of every patch from one backward pass."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from interventions._adapter import ModelAdapter
from interventions._alignment import AlignedPair
from interventions._backoff import halving
from interventions._capture import Trace, capture
from interventions._outcomes import Outcome
from interventions._sites import Point, Site
from interventions._sweep import (
    PairValues,
    Plan,
    Sweep,
    as_index,
    configurations,
    prepare,
    token_budget,
)


def attribution_effects(
    adapter: ModelAdapter,
    outcome: Outcome,
    pairs: Sequence[AlignedPair],
    sites: Sequence[Site],
    positions: Sequence[str],
    *,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Estimated patched minus destination outcome for every (unit, site, position).

    The estimate is the patch's first-order term (attribution patching, AtP): the sum over
    the position's aligned tokens of (source activation - destination activation) . the
    gradient of the destination's outcome at that activation. It costs one forward and
    backward pass per destination text and one forward per source text, whatever the
    number of sites; verify the largest estimates exactly with `patch_effects`. Columns
    as `PatchResult.patched`, with the value in "estimate".
    """
    sweep = prepare(adapter, outcome, pairs, configurations(sites, positions), batch_size=batch_size)
    estimates = np.full(len(sweep.pairs) * len(sweep.configurations), np.nan)
    for units in sweep.unit_chunks(_bytes_per_unit(sweep)):
        _estimate_chunk(sweep, units, estimates)
    return sweep.frame("estimate", estimates)


def _bytes_per_unit(sweep: Sweep) -> int:
    """Memory of one unit's activations and gradients (three copies of each point)."""
    return 3 * sweep.max_length * sweep.position_bytes(sweep.site_points)


def traced_plan(
    sweep: Sweep, units: np.ndarray, destination_points: Sequence[Point], source_points: Sequence[Point]
) -> tuple[Trace, Trace, Plan]:
    """Both runs of `units`' pairs captured (the destination with gradients) and the plan that indexes them.

    Each distinct text runs once; backward passes keep every block's activations, so a batch
    gets a quarter of the forward token budget, halved on out-of-memory.
    """
    fitting = token_budget(sweep, factor=0.25) // sweep.max_length
    batch = sweep.batch_size or max(1, min(16, fitting))
    destination_ids = list(dict.fromkeys(sweep.destination_ids[unit] for unit in units))
    source_ids = list(dict.fromkeys(sweep.source_ids[unit] for unit in units))
    destination, fitted = halving(
        min(batch, len(destination_ids)),
        lambda size: capture(
            sweep.adapter,
            sweep.architecture,
            sweep.reader,
            destination_ids,
            destination_points,
            batch_size=size,
            gradients=True,
        ),
        what="texts",
    )
    source, _ = halving(
        min(batch, fitted, len(source_ids)),
        lambda size: capture(
            sweep.adapter, sweep.architecture, sweep.reader, source_ids, source_points, batch_size=size
        ),
        what="texts",
    )
    dest_row = {ids: row for row, ids in enumerate(destination_ids)}
    src_row = {ids: row for row, ids in enumerate(source_ids)}
    plan = sweep.plan(
        units,
        np.array([dest_row[sweep.destination_ids[unit]] for unit in units], dtype=np.int64),
        np.array([src_row[sweep.source_ids[unit]] for unit in units], dtype=np.int64),
    )
    return destination, source, plan


def _estimate_chunk(sweep: Sweep, units: np.ndarray, estimates: np.ndarray) -> None:
    """Fill the estimates of `units`: traces of both runs, then one dot product per pair."""
    points = sweep.site_points
    destination, source, plan = traced_plan(sweep, units, points, points)
    targets = None
    if any(kind == "pattern" for kind, _ in points):
        targets = as_index(sweep.key_targets(units, int(source.lengths.max())), sweep.adapter.device)
    values = PairValues(sweep.architecture, destination.activations, source.activations, targets)
    gradients = PairValues(sweep.architecture, destination.gradients, destination.gradients)
    with torch.inference_mode():
        for number, point in enumerate(points):
            for rows in plan.pieces(np.flatnonzero(plan.point == number)):
                estimates[plan.result[rows]] = _first_order(plan, rows, point, values, gradients)


def _first_order(plan: Plan, rows: np.ndarray, point: Point, values: PairValues, gradients: PairValues) -> np.ndarray:
    """Sum over each row's pairs of (source - destination activation) . gradient."""
    owner, pair = plan.pairs_of(rows)
    change = values.read(plan, rows, owner, pair, point, "source").double()
    change -= values.read(plan, rows, owner, pair, point, "destination").double()
    per_pair = (change * gradients.read(plan, rows, owner, pair, point, "destination").double()).sum(-1)
    totals = torch.zeros(len(rows), dtype=torch.float64, device=per_pair.device)
    return totals.index_add_(0, as_index(owner, per_pair.device), per_pair).cpu().numpy()
