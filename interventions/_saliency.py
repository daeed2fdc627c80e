"""Saliency of the outcome on the input embeddings (Captum's gradient x input and integrated
gradients), summed over each factor's tokens."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

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
from interventions._evaluate import _tokenize
from interventions._outcomes import Outcome, _Reader
from interventions._template import RenderedText
from interventions.errors import InterventionError

SaliencyMethod = Literal["gradient_x_input", "integrated_gradients"]
Baseline = Literal["pad", "counterfactual"]
COMPLETENESS_COLUMNS = ("unit", "outcome", "baseline_outcome", "attribution_sum", "delta")

_BASELINES = ("pad", "counterfactual")
_MISMATCH = ("raise", "skip")


@dataclass(frozen=True)
class SaliencyEvidence:
    """Attributions of the outcome to each factor's input embeddings.

    `spans`: per unit and factor, the attribution summed over the factor's tokens and
    embedding dimensions (`EVIDENCE_COLUMNS`; signed). `tokens`: per-token attributions
    (`TOKEN_COLUMNS`). `completeness`: per unit f(x), f(baseline), the sum of all
    attributions and Captum's convergence delta, sum - (f(x) - f(baseline)); baseline
    columns are NA for gradient x input, which has no baseline. `skipped_units` are units
    left out because their counterfactual has another token length.
    """

    method: SaliencyMethod
    baseline: Baseline | None
    n_steps: int | None
    spans: pd.DataFrame
    tokens: pd.DataFrame
    completeness: pd.DataFrame
    skipped_units: tuple[int, ...]

    def to_frame(self) -> pd.DataFrame:
        """The per-span table (`spans`), a copy."""
        return self.spans.copy()

    def summary(self) -> str:
        """Mean |attribution| per factor, and the completeness gap when there is a baseline."""
        means = self.spans["value"].abs().groupby(self.spans["factor"], sort=False).mean()
        name = self.method.replace("_", " ")
        if self.baseline is not None:
            name += f" ({self.baseline} baseline, {self.n_steps} steps)"
        lines = [
            f"{name} over {len(self.completeness)} units, mean |attribution|: "
            + ", ".join(f"{factor} {value:.3g}" for factor, value in means.items())
        ]
        if self.baseline is not None:
            lines.append(f"largest completeness delta {self.completeness['delta'].abs().max():.3g}")
        if self.skipped_units:
            lines.append(f"{len(self.skipped_units)} units skipped: arms of unequal token length")
        return "\n".join(lines)


def gradient_x_input(
    adapter: ModelAdapter,
    texts: Sequence[RenderedText],
    factors: Sequence[str],
    outcome: Outcome,
    *,
    units: Sequence[int] | None = None,
    batch_size: int = 32,
) -> SaliencyEvidence:
    """Gradient of the outcome times the input embeddings, summed over each factor's tokens.

    The outcome is read exactly as `evaluate_outcomes` reads it (same suffix and position).
    """
    from captum.attr import InputXGradient

    _check_batch_size(batch_size)
    encoded = encode_texts(adapter, texts, factors, units=units)
    reader = outcome._bind(adapter)
    forward = _forward(adapter, reader)
    attributions: list[np.ndarray] = [np.empty(0)] * len(encoded)
    outcomes = np.empty(len(encoded))
    for rows, input_ids, attention_mask in encoded.batches(adapter, batch_size, suffix=reader.suffix):
        embeds = adapter.model.get_input_embeddings()(input_ids).detach().requires_grad_()
        found = InputXGradient(forward).attribute(embeds, additional_forward_args=(attention_mask,))
        _keep(attributions, rows, found, attention_mask)
        outcomes[rows] = _outcome_values(forward, embeds, attention_mask)
    nan = np.full(len(encoded), np.nan)
    return _result(encoded, "gradient_x_input", None, None, attributions, outcomes, nan, nan, skipped=())


def integrated_gradients(
    adapter: ModelAdapter,
    texts: Sequence[RenderedText],
    factors: Sequence[str],
    outcome: Outcome,
    *,
    baseline: Baseline = "pad",
    counterfactuals: Sequence[RenderedText] | None = None,
    n_steps: int = 50,
    on_length_mismatch: Literal["raise", "skip"] = "raise",
    units: Sequence[int] | None = None,
    batch_size: int = 32,
) -> SaliencyEvidence:
    """Integrated gradients of the outcome on the input embeddings, per factor's tokens.

    Baselines: "pad" puts the pad token's embedding at every non-special position (special
    tokens such as [CLS] stay); "counterfactual" the embeddings of `counterfactuals[i]`,
    the unit's text in the other arm. Then the attributions sum to the unit's effect
    f(x) - f(x') up to the reported delta, and only tokens that differ between the arms
    receive any. That needs arms of equal token length: a unit whose arms differ raises
    InterventionError, or with `on_length_mismatch="skip"` is left out and listed in
    `skipped_units`. (A zero-embedding baseline is not offered: models that normalise the
    embeddings first, as Llama's RMSNorm does, are scale invariant along that path, so its
    integral collapses into a step at zero and completeness fails.) `batch_size` bounds the
    rows (units times interpolation steps) of one forward pass.
    """
    from captum.attr import IntegratedGradients

    _check_batch_size(batch_size)
    if baseline not in _BASELINES:
        raise InterventionError(f"baseline {baseline!r} is not one of {list(_BASELINES)}")
    if on_length_mismatch not in _MISMATCH:
        raise InterventionError(f"on_length_mismatch {on_length_mismatch!r} is not one of {list(_MISMATCH)}")
    if not isinstance(n_steps, int) or n_steps < 1:
        raise InterventionError(f"n_steps must be an int >= 1, got {n_steps!r}")
    if (baseline == "counterfactual") != (counterfactuals is not None):
        raise InterventionError(
            f"counterfactuals are given exactly for baseline 'counterfactual'; got baseline "
            f"{baseline!r} with counterfactuals {'given' if counterfactuals else 'missing'}"
        )
    encoded = encode_texts(adapter, texts, factors, units=units)
    reader = outcome._bind(adapter)
    skipped: tuple[int, ...] = ()
    if baseline == "pad":
        reference_ids = _pad_ids(adapter, encoded)
    else:
        reference_ids, kept, skipped = _counterfactual_ids(adapter, encoded, counterfactuals, on_length_mismatch)
        if skipped:
            encoded = encode_texts(
                adapter,
                [texts[row] for row in kept],
                factors,
                units=[encoded.units[row] for row in kept],
            )
    forward = _forward(adapter, reader)
    embedding = adapter.model.get_input_embeddings()
    attributions: list[np.ndarray] = [np.empty(0)] * len(encoded)
    outcomes, baseline_outcomes, deltas = (np.empty(len(encoded)) for _ in range(3))
    for rows, input_ids, attention_mask in encoded.batches(adapter, batch_size, suffix=reader.suffix):
        embeds = embedding(input_ids).detach()
        baseline_ids = input_ids.clone()
        for index, row in enumerate(rows):
            ids = reference_ids[row]
            baseline_ids[index, : len(ids)] = torch.tensor(ids, device=input_ids.device)
        reference = embedding(baseline_ids).detach()
        found, delta = IntegratedGradients(forward).attribute(
            embeds,
            baselines=reference,
            additional_forward_args=(attention_mask,),
            n_steps=n_steps,
            internal_batch_size=batch_size,
            return_convergence_delta=True,
        )
        _keep(attributions, rows, found, attention_mask)
        outcomes[rows] = _outcome_values(forward, embeds, attention_mask)
        baseline_outcomes[rows] = _outcome_values(forward, reference, attention_mask)
        deltas[rows] = delta.detach().double().cpu().numpy()
    return _result(
        encoded,
        "integrated_gradients",
        baseline,
        n_steps,
        attributions,
        outcomes,
        baseline_outcomes,
        deltas,
        skipped=skipped,
    )


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise InterventionError(f"batch_size must be at least 1, got {batch_size}")


def _forward(adapter: ModelAdapter, reader: _Reader) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The outcome of each row as a function of its input embeddings (what Captum attributes)."""

    def forward(embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = adapter.model(inputs_embeds=embeds, attention_mask=attention_mask).logits
        return reader.read(logits.float(), attention_mask.sum(dim=1) - 1)

    return forward


def _outcome_values(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    embeds: torch.Tensor,
    attention_mask: torch.Tensor,
) -> np.ndarray:
    with torch.no_grad():
        return forward(embeds, attention_mask).double().cpu().numpy()


def _pad_ids(adapter: ModelAdapter, encoded: EncodedTexts) -> list[tuple[int, ...]]:
    """Each text's ids with every non-special token replaced by the pad token."""
    pad = adapter.tokenizer.pad_token_id
    return [
        tuple(token if special else pad for token, special in zip(ids, flags))
        for ids, flags in zip(encoded.token_ids, encoded.special)
    ]


def _counterfactual_ids(
    adapter: ModelAdapter,
    encoded: EncodedTexts,
    counterfactuals: Sequence[RenderedText],
    on_length_mismatch: Literal["raise", "skip"],
) -> tuple[list[tuple[int, ...]], list[int], tuple[int, ...]]:
    """Counterfactual ids of the units whose arms have equal token length, those rows, and
    the ids of units skipped for unequal lengths."""
    if len(counterfactuals) != len(encoded):
        raise InterventionError(
            f"counterfactuals has {len(counterfactuals)} texts for {len(encoded)} texts; give "
            "each unit's text in the other arm, in the same order"
        )
    other = _tokenize(adapter, [rendered.text for rendered in counterfactuals])
    unequal = [row for row in range(len(encoded)) if len(other[row]) != len(encoded.token_ids[row])]
    if unequal and on_length_mismatch == "raise":
        row = unequal[0]
        raise InterventionError(
            f"unit {encoded.units[row]}: its text has {len(encoded.token_ids[row])} tokens but "
            f"its counterfactual {counterfactuals[row].text[:60]!r} has {len(other[row])}; "
            "integrated gradients with a counterfactual baseline needs arms of equal token "
            "length; use surface forms of equal token length, baseline 'pad', or "
            "on_length_mismatch='skip'"
        )
    kept = [row for row in range(len(encoded)) if row not in set(unequal)]
    return ([tuple(other[row]) for row in kept], kept, tuple(encoded.units[row] for row in unequal))


def _keep(
    attributions: list[np.ndarray],
    rows: np.ndarray,
    found: torch.Tensor,
    attention_mask: torch.Tensor,
) -> None:
    """Store each row's per-token attribution (summed over embedding dimensions)."""
    per_token = found.detach().sum(dim=-1).double().cpu().numpy()
    for index, row in enumerate(rows):
        attributions[row] = per_token[index, : int(attention_mask[index].sum())]


def _result(
    encoded: EncodedTexts,
    method: SaliencyMethod,
    baseline: Baseline | None,
    n_steps: int | None,
    attributions: list[np.ndarray],
    outcomes: np.ndarray,
    baseline_outcomes: np.ndarray,
    deltas: np.ndarray,
    *,
    skipped: tuple[int, ...],
) -> SaliencyEvidence:
    """Assemble the span, token and completeness tables of one saliency readout."""
    factors = list(encoded.factor_positions)
    n_units = len(encoded)
    spans = pd.DataFrame(
        {
            "unit": np.repeat(encoded.units, len(factors)).astype(np.int64),
            "factor": factors * n_units,
            "method": method,
            "baseline": baseline,
            "layer": pd.array([None] * n_units * len(factors), dtype="Int64"),
            "head": pd.array([None] * n_units * len(factors), dtype="Int64"),
            "value": [
                attributions[row][list(encoded.factor_positions[factor][row])].sum()
                for row in range(n_units)
                for factor in factors
            ],
        },
        columns=list(EVIDENCE_COLUMNS),
    )
    tokens = stack_rows(
        [
            token_rows(
                encoded,
                row,
                method,
                attributions[row][: len(encoded.tokens[row])],
                baseline=baseline,
            )
            for row in range(n_units)
        ],
        TOKEN_COLUMNS,
    )
    completeness = pd.DataFrame(
        {
            "unit": np.array(encoded.units, dtype=np.int64),
            "outcome": outcomes,
            "baseline_outcome": baseline_outcomes,
            "attribution_sum": [values.sum() for values in attributions],
            "delta": deltas,
        },
        columns=list(COMPLETENESS_COLUMNS),
    )
    return SaliencyEvidence(
        method=method,
        baseline=baseline,
        n_steps=n_steps,
        spans=spans,
        tokens=tokens,
        completeness=completeness,
        skipped_units=skipped,
    )
