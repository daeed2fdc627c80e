"""Attention from the decision position to each factor's tokens, per layer and head, and
attention rollout (Abnar & Zuidema, 2020) across layers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from interventions._adapter import ModelAdapter
from interventions._encoded import (
    EVIDENCE_COLUMNS,
    TOKEN_COLUMNS,
    EncodedTexts,
    encode_texts,
    stack_rows,
    token_rows,
)
from interventions._template import RenderedText
from interventions.errors import InterventionError

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class AttentionEvidence:
    """Attention mass the decision position puts on each factor's tokens.

    `spans`: one row per unit, factor and reading (`EVIDENCE_COLUMNS`). Method "attention" has a
    row per layer and head, plus one row with layer and head NA holding their mean; method
    "attention_rollout" has one row (layer and head NA). `tokens`: the decision position's
    per-token mean attention and rollout (`TOKEN_COLUMNS`; `factor` is the slot a token belongs
    to, NA outside slots). `attn_implementation` is what the model was configured with;
    `switched_to_eager` says the readout temporarily ran it with eager attention instead,
    because SDPA and flash kernels return no attention weights.
    """

    spans: pd.DataFrame
    tokens: pd.DataFrame
    attn_implementation: str
    switched_to_eager: bool

    def to_frame(self) -> pd.DataFrame:
        """The per-span table (`spans`), a copy."""
        return self.spans.copy()

    def summary(self) -> str:
        """One line per method: the mean attention mass on each factor over units."""
        overall = self.spans[self.spans["layer"].isna()]
        means = overall.groupby(["method", "factor"], sort=False)["value"].mean()
        lines = [
            f"{method} from the decision position over {overall['unit'].nunique()} units: "
            + ", ".join(f"{factor} {value:.3g}" for factor, value in means[method].items())
            for method in means.index.unique("method")
        ]
        if self.switched_to_eager:
            lines.append(f"ran with eager attention (the model is configured with {self.attn_implementation!r})")
        return "\n".join(lines)


def attention_evidence(
    adapter: ModelAdapter,
    texts: Sequence[RenderedText],
    factors: Sequence[str],
    *,
    units: Sequence[int] | None = None,
    batch_size: int = 32,
) -> AttentionEvidence:
    """Attention and rollout from the decision position, summed over each factor's tokens.

    The decision position is the last real token of causal models and the first ([CLS])
    of encoder classifiers. `units` are the ids written in the `unit` column (default
    0..n-1). A model configured with SDPA or flash attention runs with eager attention
    for this readout and is switched back afterwards, also on error.
    """
    if batch_size < 1:
        raise InterventionError(f"batch_size must be at least 1, got {batch_size}")
    encoded = encode_texts(adapter, texts, factors, units=units)
    per_head: list[np.ndarray] = [np.empty(0)] * len(encoded)
    rollout: list[np.ndarray] = [np.empty(0)] * len(encoded)
    with eager_attention(adapter.model) as original, torch.inference_mode():
        for rows, input_ids, attention_mask in encoded.batches(adapter, batch_size):
            attentions = adapter.model(
                input_ids=input_ids, attention_mask=attention_mask, output_attentions=True
            ).attentions
            decision = torch.tensor([encoded.decision[row] for row in rows], device=adapter.device)
            batch = torch.arange(len(rows), device=adapter.device)
            # Only the decision row of each layer and head is kept: (batch, layers, heads, key).
            at_decision = torch.stack([layer[batch, :, decision] for layer in attentions], dim=1).double().cpu()
            rolled = attention_rollout(attentions)[batch, decision].cpu()
            for index, row in enumerate(rows):
                length = len(encoded.token_ids[row])
                per_head[row] = at_decision[index, :, :, :length].numpy()
                rollout[row] = rolled[index, :length].numpy()
    return AttentionEvidence(
        spans=_span_frame(encoded, per_head, rollout),
        tokens=_token_frame(encoded, per_head, rollout),
        attn_implementation=original,
        switched_to_eager=original != "eager",
    )


@contextmanager
def eager_attention(model: PreTrainedModel) -> Iterator[str]:
    """Run `model` with eager attention inside the block; yields the configured implementation.

    SDPA and flash kernels never materialise the attention weights, so `output_attentions`
    needs eager. The original implementation is restored when the block exits.
    """
    original = model.config._attn_implementation
    if original != "eager":
        model.set_attn_implementation("eager")
    try:
        yield original
    finally:
        if original != "eager":
            model.set_attn_implementation(original)


def attention_rollout(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout of per-layer (batch, heads, query, key) weights -> (batch, query, key).

    Each layer's head-averaged attention gets the residual connection as an identity,
    (A + I) / 2, whose rows still sum to 1; the product over layers, last layer leftmost,
    traces how much each input token flows into each position. Computed in float64.
    """
    rolled = None
    for weights in attentions:
        mixed = 0.5 * weights.double().mean(dim=1) + 0.5 * torch.eye(
            weights.shape[-1], dtype=torch.float64, device=weights.device
        )
        rolled = mixed if rolled is None else mixed @ rolled
    return rolled


def _span_frame(encoded: EncodedTexts, per_head: list[np.ndarray], rollout: list[np.ndarray]) -> pd.DataFrame:
    """Rows of `EVIDENCE_COLUMNS` for every unit and factor."""
    n_layers, n_heads = per_head[0].shape[:2] if per_head else (0, 0)
    # Per unit and factor: every (layer, head), then their mean, then the rollout.
    layers = pd.array([*np.repeat(np.arange(n_layers), n_heads), None, None], dtype="Int64")
    heads = pd.array([*np.tile(np.arange(n_heads), n_layers), None, None], dtype="Int64")
    methods = ["attention"] * (n_layers * n_heads + 1) + ["attention_rollout"]
    blocks = []
    for row, unit in enumerate(encoded.units):
        for factor, positions in encoded.factor_positions.items():
            span = list(positions[row])
            sums = per_head[row][:, :, span].sum(axis=-1).reshape(-1)
            blocks.append(
                pd.DataFrame(
                    {
                        "unit": unit,
                        "factor": factor,
                        "method": methods,
                        "baseline": None,
                        "layer": layers,
                        "head": heads,
                        "value": [*sums, sums.mean(), rollout[row][span].sum()],
                    }
                )
            )
    return stack_rows(blocks, EVIDENCE_COLUMNS)


def _token_frame(encoded: EncodedTexts, per_head: list[np.ndarray], rollout: list[np.ndarray]) -> pd.DataFrame:
    """Rows of `TOKEN_COLUMNS`: mean attention and rollout of every token of every unit."""
    return stack_rows(
        [
            token_rows(encoded, row, method, values)
            for row in range(len(encoded))
            for method, values in (
                ("attention", per_head[row].mean(axis=(0, 1))),
                ("attention_rollout", rollout[row]),
            )
        ],
        TOKEN_COLUMNS,
    )
