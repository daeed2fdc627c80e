"""Capturing site activations (and their outcome gradients) from the model's own forward."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from interventions._adapter import ModelAdapter
from interventions._evaluate import _pad_right
from interventions._hooks import site_hooks
from interventions._outcomes import _Reader
from interventions._sites import Architecture, Point


@dataclass(frozen=True)
class Trace:
    """Activations of some token sequences at some points, right-padded to one length.

    `activations[point]` is (texts, positions, width) in the model's dtype, for a "pattern"
    point (texts, query positions, heads, key positions); `gradients` holds d outcome /
    d activation at the same points when captured with gradients.
    """

    lengths: np.ndarray
    activations: dict[Point, torch.Tensor]
    gradients: dict[Point, torch.Tensor]
    outcomes: np.ndarray


def capture(
    adapter: ModelAdapter,
    architecture: Architecture,
    reader: _Reader,
    token_ids: Sequence[Sequence[int]],
    points: Collection[Point],
    *,
    batch_size: int,
    gradients: bool = False,
) -> Trace:
    """Run each token sequence once and keep its activations at `points` and its outcome.

    Sequences run in length-sorted batches, padded on the right as `evaluate_outcomes`
    runs them. With `gradients`, each batch also runs backward from its outcomes (rows
    are independent, so the gradient of their sum is each row's own gradient).
    """
    points = tuple(points)
    wanted = set(points) | ({("stream", 0)} if gradients else set())
    lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
    width = int(lengths.max(initial=0))
    stored: dict[Point, torch.Tensor] = {}
    stored_gradients: dict[Point, torch.Tensor] = {}
    outcomes = np.empty(len(token_ids), dtype=np.float64)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        index = torch.as_tensor(rows, device=adapter.device)
        input_ids, attention_mask = _pad_right(
            [list(token_ids[row]) for row in rows], adapter.tokenizer.pad_token_id, adapter.device
        )
        live: dict[Point, torch.Tensor] = {}
        edits = {point: _keeper(live, point, gradients=gradients) for point in wanted}
        with torch.enable_grad() if gradients else torch.inference_mode():
            with site_hooks(adapter.model, architecture, edits):
                logits = adapter.model(input_ids=input_ids, attention_mask=attention_mask).logits
            values = reader.read(logits.float(), attention_mask.sum(dim=1) - 1)
            found = torch.autograd.grad(values.sum(), [live[p] for p in points], allow_unused=True) if gradients else ()
            for point in points:
                _store(stored, point, live[point].detach().to(adapter.device), index, len(token_ids), width)
            for point, gradient in zip(points, found):
                if gradient is None:
                    gradient = torch.zeros_like(live[point])
                _store(stored_gradients, point, gradient.to(adapter.device), index, len(token_ids), width)
        outcomes[rows] = values.detach().double().cpu().numpy()
    return Trace(lengths=lengths, activations=stored, gradients=stored_gradients, outcomes=outcomes)


def _keeper(live: dict[Point, torch.Tensor], point: Point, *, gradients: bool):
    """An edit that keeps the activation at `point`.

    With `gradients` it hands the activation back, so that one a hook derived (a slice of a
    fused projection) is the one the forward goes on with; the embeddings become a leaf.
    """

    def edit(activation: torch.Tensor) -> torch.Tensor | None:
        if gradients and point == ("stream", 0):
            activation = activation.detach().requires_grad_(True)
        live[point] = activation
        return activation if gradients else None

    return edit


def _store(
    stored: dict[Point, torch.Tensor],
    point: Point,
    batch: torch.Tensor,
    index: torch.Tensor,
    n_texts: int,
    width: int,
) -> None:
    """Copy one batch's (rows, positions, ...) activation into the padded store."""
    if point[0] == "pattern":  # (rows, queries, heads, keys): keys are positions too
        if point not in stored:
            stored[point] = batch.new_zeros((n_texts, width, batch.shape[2], width))
        stored[point][index, : batch.shape[1], :, : batch.shape[3]] = batch
        return
    if point not in stored:
        stored[point] = batch.new_zeros((n_texts, width, batch.shape[-1]))
    stored[point][index, : batch.shape[1]] = batch
