"""Running a model over many texts and reading one outcome value per text."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from interventions._adapter import ModelAdapter
from interventions._outcomes import Outcome, _Reader
from interventions.errors import InterventionError


def evaluate_outcomes(
    adapter: ModelAdapter,
    texts: Sequence[str],
    outcome: Outcome,
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The outcome of every text, as a float64 array aligned with `texts`.

    Identical texts (common across arms) run once. Distinct texts run in batches sorted by
    token length to keep padding small; padding is on the right and masked, so each row
    sees the positions of an unpadded forward and is read at its last real token.
    `progress(k)` is called after each batch with the number k of distinct texts finished.
    Answers and labels are checked before any forward pass.
    """
    if isinstance(texts, str):
        raise InterventionError(
            "texts must be a sequence of strings, got one string; wrap it in a list"
        )
    if batch_size < 1:
        raise InterventionError(f"batch_size must be at least 1, got {batch_size}")
    reader = _bind_outcome(adapter, outcome)
    distinct = list(dict.fromkeys(texts))
    token_ids = [ids + list(reader.suffix) for ids in _tokenize(adapter, distinct)]
    order = sorted(range(len(distinct)), key=lambda row: len(token_ids[row]))
    values = np.empty(len(distinct), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            input_ids, attention_mask = _pad_right(
                [token_ids[row] for row in rows], adapter.tokenizer.pad_token_id, adapter.device
            )
            logits = adapter.model(input_ids=input_ids, attention_mask=attention_mask).logits
            last = attention_mask.sum(dim=1) - 1
            values[rows] = reader.read(logits.float(), last).double().cpu().numpy()
            if progress is not None:
                progress(len(rows))
    row_of = {text: row for row, text in enumerate(distinct)}
    return values[np.array([row_of[text] for text in texts], dtype=np.int64)]


def _bind_outcome(adapter: ModelAdapter, outcome: Outcome) -> _Reader:
    """`outcome` bound to the adapter's model; InterventionError when it is not an outcome spec."""
    if not isinstance(outcome, Outcome):
        raise InterventionError(
            f"outcome must be LogitDiff, AnswerProb, ClassProb, ClassLogit or "
            f"ContinuationLogProb, got {outcome!r}"
        )
    return outcome._bind(adapter)


def _tokenize(adapter: ModelAdapter, texts: list[str]) -> list[list[int]]:
    """Token ids of each text as the model is run (special tokens added), length-checked."""
    if not texts:
        return []
    token_ids = adapter.tokenizer(texts, add_special_tokens=True)["input_ids"]
    limit = getattr(adapter.model.config, "max_position_embeddings", None)
    for text, ids in zip(texts, token_ids):
        if not ids:
            raise InterventionError(f"text {text!r} has no tokens; there is nothing to read")
        if limit is not None and len(ids) > limit:
            raise InterventionError(
                f"text {text[:40]!r}... has {len(ids)} tokens but the model takes at most "
                f"{limit}; shorten the template"
            )
    return token_ids


def _pad_right(
    rows: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and the attention mask marking real tokens."""
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return input_ids.to(device), attention_mask.to(device)
