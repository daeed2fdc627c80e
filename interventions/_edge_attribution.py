"""Edge attribution patching (Syed et al., 2023): a first-order estimate of every path patch.

Path patching an edge adds the sender's change c to the stream its receiver reads. To first
order the outcome moves by c . g, where g is the gradient of the destination's outcome with
respect to the stream as that receiver alone reads it: the gradient at its query, key or
value (or MLP input) pulled back through its norm and projection, position by position. One
forward and backward pass per destination text and one forward per source text give every
edge's estimate; `screen_edges` then path patches the strongest edges exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats

from interventions._adapter import ModelAdapter
from interventions._alignment import AlignedPair
from interventions._attribution import traced_plan
from interventions._capture import Trace
from interventions._outcomes import Outcome
from interventions._paths import (
    Intake,
    PathResult,
    all_edges,
    parse_receiver,
    path_effects,
    prepare_paths,
    reaches,
    sender_change,
    with_receivers,
)
from interventions._sites import Point, Site, architecture_of
from interventions._steps import StepRunner
from interventions._sweep import PairValues, Sweep, as_index
from interventions.errors import InterventionError

EDGE_KEYS = ("site", "position", "receiver")
"""The columns that name one edge (a sender at a position, and a receiver)."""


@dataclass(frozen=True)
class EdgeScreen:
    """Edge attribution of every edge, exact path patching of the strongest, and their agreement.

    `estimates`: one row per (unit, edge) as `PathResult.patched`, with the value in
    "estimate". `exact`: the `top` edges (by mean |estimate|) path patched. `edges`: one row
    per edge (`EDGE_KEYS`) whose sender reaches its receiver, with its mean estimate and, for
    the top edges, its mean exact effect ("effect", NaN elsewhere), strongest estimate first. `spearman`: the rank
    correlation of mean estimate and mean exact effect over the top edges (NaN below three).
    """

    estimates: pd.DataFrame
    exact: PathResult
    edges: pd.DataFrame
    spearman: float

    def to_frame(self) -> pd.DataFrame:
        """The per-edge table (`edges`), a copy."""
        return self.edges.copy()

    def summary(self) -> str:
        """One line: how many edges were screened and verified, and the rank agreement."""
        verified = int(self.edges["effect"].notna().sum())
        return (
            f"edge attribution over {len(self.edges)} edges and {self.estimates['unit'].nunique()} units; "
            f"top {verified} path patched exactly; Spearman rank correlation {self.spearman:.3f}"
        )


def edge_attribution_effects(
    adapter: ModelAdapter,
    outcome: Outcome,
    pairs: Sequence[AlignedPair],
    senders: Sequence[Site],
    receivers: Sequence[str],
    positions: Sequence[str],
    *,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Estimated path-patched minus destination outcome for every (unit, sender, position, receiver).

    Arguments and rows as `path_patch`, with the value in "estimate": the sum over the
    position's aligned tokens of the sender's change . the outcome's gradient at the
    receiver's read of the stream (summed over a receiver's intakes it reaches).
    """
    edges = all_edges(senders, receivers, positions)
    sweep, intakes = prepare_paths(adapter, outcome, pairs, edges, batch_size=batch_size)
    estimates = np.zeros(len(sweep.pairs) * len(sweep.configurations))
    runner = StepRunner(adapter.model, sweep.architecture)
    for units in sweep.unit_chunks(3 * sweep.max_length * sweep.position_bytes(_points(sweep, intakes))):
        _estimate_chunk(sweep, intakes, runner, units, estimates)
    return with_receivers(sweep.frame("estimate", estimates), [receiver for _, receiver, _ in edges])


def screen_edges(
    adapter: ModelAdapter,
    outcome: Outcome,
    pairs: Sequence[AlignedPair],
    senders: Sequence[Site],
    receivers: Sequence[str],
    positions: Sequence[str],
    *,
    top: int = 20,
    batch_size: int | None = None,
) -> EdgeScreen:
    """Edge attribution of every edge, then exact path patching of the `top` by mean |estimate|.

    The three steps are public, so a caller can run the per-unit ones in pieces:
    `edge_attribution_effects`, `strongest_edges` and `path_effects`, then `verified_edges`.
    """
    if not isinstance(top, int) or top < 1:
        raise InterventionError(f"top must be an int >= 1, got {top!r}")
    estimates = edge_attribution_effects(adapter, outcome, pairs, senders, receivers, positions, batch_size=batch_size)
    edges = strongest_edges(adapter, estimates, senders, receivers)
    exact = path_effects(adapter, outcome, pairs, edge_list(edges.head(top), senders), batch_size=batch_size)
    edges, spearman = verified_edges(edges, exact.patched, exact.destination)
    return EdgeScreen(estimates=estimates, exact=exact, edges=edges, spearman=spearman)


def strongest_edges(
    adapter: ModelAdapter, estimates: pd.DataFrame, senders: Sequence[Site], receivers: Sequence[str]
) -> pd.DataFrame:
    """Each edge whose sender reaches its receiver (`EDGE_KEYS`), with its mean estimate, strongest first."""
    architecture = architecture_of(adapter.model)
    reached = {
        (sender.name, receiver)
        for sender in senders
        for receiver in receivers
        if any(reaches(sender, intake, architecture) for intake in parse_receiver(receiver, architecture))
    }
    edges = estimates.groupby(list(EDGE_KEYS), sort=False)["estimate"].mean().reset_index()
    edges = edges[[(site, receiver) in reached for site, receiver in zip(edges["site"], edges["receiver"])]]
    return edges.sort_values("estimate", key=abs, ascending=False, kind="stable", ignore_index=True)


def edge_list(edges: pd.DataFrame, senders: Sequence[Site]) -> list[tuple[Site, str, str]]:
    """The (sender, receiver, position) edges of an edges table, for `path_effects`."""
    by_name = {sender.name: sender for sender in senders}
    return [
        (by_name[site], receiver, position)
        for site, position, receiver in edges[list(EDGE_KEYS)].itertuples(index=False)
    ]


def verified_edges(edges: pd.DataFrame, patched: pd.DataFrame, destination: np.ndarray) -> tuple[pd.DataFrame, float]:
    """`edges` with the mean exact effect of those path patched in `patched` ("effect", NaN for the rest), and the
    Spearman correlation of mean estimate and mean effect over them (NaN below three)."""
    effect = patched.assign(effect=patched["outcome"] - destination[patched["unit"]])
    means = effect.groupby(list(EDGE_KEYS), sort=False)["effect"].mean().reset_index()
    edges = edges.merge(means, on=list(EDGE_KEYS), how="left")
    verified = edges.dropna(subset=["effect"])
    spearman = math.nan
    if len(verified) >= 3:
        spearman = float(stats.spearmanr(verified["estimate"], verified["effect"]).statistic)
    return edges, spearman


def _points(sweep: Sweep, intakes: tuple[tuple[Intake, ...], ...]) -> tuple[Point, ...]:
    """What the destination capture needs: the senders, the final stream (whose gradient is the
    final read's), and per intake the stream it reads and the gradient where that read goes in."""
    n_layers = sweep.architecture.n_layers
    sequential = sweep.architecture.residual == "sequential"
    points: list[Point] = [*sweep.site_points, ("stream", n_layers)]
    for intake in dict.fromkeys(intake for each in intakes for intake in each):
        if intake.kind == "final":
            continue
        if intake.kind == "mlp":
            points += [("mid" if sequential else "stream", intake.layer), ("mlp_in", intake.layer)]
        else:
            points += [("stream", intake.layer), (intake.kind, intake.layer)]
    return tuple(dict.fromkeys(points))


def _estimate_chunk(
    sweep: Sweep,
    intakes: tuple[tuple[Intake, ...], ...],
    runner: StepRunner,
    units: np.ndarray,
    estimates: np.ndarray,
) -> None:
    """Fill the estimates of `units`: traces of both runs, then per receiver its read gradient
    and one dot product per pair with each sender's change."""
    destination, source, plan = traced_plan(sweep, units, _points(sweep, intakes), sweep.site_points)
    values = PairValues(sweep.architecture, destination.activations, source.activations)
    device = sweep.adapter.device
    for reading in dict.fromkeys(intakes):
        if not reading:
            continue
        gradient = _read_gradient(runner, destination, reading)
        chosen = np.array([intakes_of == reading for intakes_of in intakes])[plan.config]
        with torch.no_grad():
            for number in range(len(plan.points)):
                for rows in plan.pieces(np.flatnonzero(chosen & (plan.point == number))):
                    owner, pair = plan.pairs_of(rows)
                    change = sender_change(runner, values, plan, rows, owner, pair).double()
                    at = (as_index(plan.destination[rows][owner], device), as_index(plan.d[pair], device))
                    per_pair = (change * gradient[at].double()).sum(-1)
                    totals = torch.zeros(len(rows), dtype=torch.float64, device=device)
                    totals.index_add_(0, as_index(owner, device), per_pair)
                    estimates[plan.result[rows]] = totals.cpu().numpy()


def _read_gradient(runner: StepRunner, trace: Trace, reading: tuple[Intake, ...]) -> torch.Tensor:
    """(texts, positions, hidden): the outcome's gradient with respect to the stream as `reading`'s
    intakes read it, summed over the intakes."""
    architecture = runner.architecture
    sequential = architecture.residual == "sequential"
    total = torch.zeros_like(trace.activations[("stream", architecture.n_layers)])
    for layer in sorted({intake.layer for intake in reading}):
        here = [intake for intake in reading if intake.layer == layer]
        if any(intake.kind == "final" for intake in here):
            total += trace.gradients[("stream", architecture.n_layers)]
        with torch.enable_grad():
            heads = [intake for intake in here if intake.kind in ("q", "k", "v")]
            if heads:
                stream = trace.activations[("stream", layer)].detach().requires_grad_(True)
                q, k, v = runner.project(layer, stream)
                cotangents = []
                for kind, part in zip("qkv", (q, k, v)):
                    gradient = trace.gradients.get((kind, layer))
                    chosen = [intake.head for intake in heads if intake.kind == kind]
                    if gradient is None or not chosen:
                        cotangents.append(torch.zeros_like(part))
                        continue
                    per_head = gradient.view(*gradient.shape[:2], part.shape[1], -1).transpose(1, 2)
                    mask = torch.zeros(part.shape[1], dtype=per_head.dtype, device=per_head.device)
                    mask[chosen] = 1
                    cotangents.append(per_head * mask[None, :, None, None])
                total += torch.autograd.grad((q, k, v), stream, cotangents)[0]
            if any(intake.kind == "mlp" for intake in here):
                stream = trace.activations[("mid" if sequential else "stream", layer)].detach().requires_grad_(True)
                x = runner.mlp_read(layer, stream, stream)
                total += torch.autograd.grad(x, stream, trace.gradients[("mlp_in", layer)])[0]
    return total
