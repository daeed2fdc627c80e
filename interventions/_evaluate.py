"""Running a model over many texts and reading one outcome value per text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from interventions._adapter import ModelAdapter
from interventions._backoff import auto_batch_size, in_batches
from interventions._outcomes import Outcome, _Reader
from interventions._prefix import PrefixGroups, can_share, continue_prefixes, group_prefixes
from interventions.errors import InterventionError


def evaluate_outcomes(
    adapter: ModelAdapter,
    texts: Sequence[str],
    outcome: Outcome,
    *,
    batch_size: int | Literal["auto"] | None = "auto",
    share_prefix: bool = True,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The outcome of every text, as a float64 array aligned with `texts`.

    Identical texts (common across arms) run once. Distinct texts run in batches sorted by
    token length to keep padding small; padding is on the right and masked, so each row
    sees the positions of an unpadded forward and is read at its last real token.
    With `share_prefix`, a causal LM runs a token prefix that several texts begin with
    (the arms of a unit, up to the first changed slot) once and continues each text from
    its keys and values; the outcomes equal those of full forwards up to float rounding.
    `batch_size` "auto" (or None) fits the batch to free CUDA memory (32 texts on CPU);
    a batch that runs out of memory is halved and retried, down to one text.
    `progress(k)` is called after each batch with the number k of distinct texts finished.
    Answers and labels are checked before any forward pass.
    """
    if isinstance(texts, str):
        raise InterventionError("texts must be a sequence of strings, got one string; wrap it in a list")
    _check_batch_size(batch_size)
    reader = _bind_outcome(adapter, outcome)
    distinct = list(dict.fromkeys(texts))
    token_ids = [ids + list(reader.suffix) for ids in _tokenize(adapter, distinct)]
    lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
    max_length = int(lengths.max(initial=1))
    size = auto_batch_size(adapter, max_length) if batch_size in ("auto", None) else batch_size
    values = np.empty(len(distinct), dtype=np.float64)
    if share_prefix and can_share(adapter, max_length):
        groups = group_prefixes(token_ids, keep=len(reader.suffix))
        order = groups.order(lengths)
    else:
        groups = None
        order = np.argsort(lengths, kind="stable")

    def step(rows: np.ndarray) -> None:
        if groups is not None and groups.length[rows].any():
            logits, last = _shared_forward(adapter, token_ids, groups, rows)
        else:
            logits, last = _forward(adapter, [token_ids[row] for row in rows])
        values[rows] = reader.read(logits.float(), last).double().cpu().numpy()
        if progress is not None:
            progress(len(rows))

    with torch.inference_mode():
        in_batches(order, size, step, what="texts")
    row_of = {text: row for row, text in enumerate(distinct)}
    return values[np.array([row_of[text] for text in texts], dtype=np.int64)]


def _check_batch_size(batch_size: object) -> None:
    if batch_size in ("auto", None):
        return
    if not isinstance(batch_size, int) or isinstance(batch_size, bool):
        raise InterventionError(
            f"batch_size must be an int, 'auto' or None, got {batch_size!r}; 'auto' fits batches to free device memory"
        )
    if batch_size < 1:
        raise InterventionError(f"batch_size must be at least 1, got {batch_size}")


def _forward(adapter: ModelAdapter, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, index of each row's last real token) of one right-padded batch."""
    input_ids, attention_mask = _pad_right(rows, adapter.tokenizer.pad_token_id, adapter.device)
    logits = adapter.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    return logits, attention_mask.sum(dim=1) - 1


def _shared_forward(
    adapter: ModelAdapter, token_ids: list[list[int]], groups: PrefixGroups, rows: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """As `_forward`, with each group's shared prefix run once for its rows in the batch.

    Rows that share nothing continue from no prefix: their whole text is the continuation.
    """
    pad, device = adapter.tokenizer.pad_token_id, adapter.device
    shared = groups.length[rows]
    sharing = rows[shared > 0]
    present, leader = np.unique(groups.group[sharing], return_index=True)
    # Rows sharing nothing (group -1) point at the first prefix and keep none of it.
    owner = np.searchsorted(present, groups.group[rows])
    prefix_ids, prefix_mask = _pad_right([token_ids[row][: groups.length[row]] for row in sharing[leader]], pad, device)
    input_ids, attention_mask = _pad_right([token_ids[row][offset:] for row, offset in zip(rows, shared)], pad, device)
    logits = continue_prefixes(
        adapter,
        prefix_ids,
        prefix_mask,
        torch.as_tensor(owner, dtype=torch.long, device=device),
        torch.as_tensor(shared, dtype=torch.long, device=device),
        input_ids,
        attention_mask,
    )
    return logits, attention_mask.sum(dim=1) - 1


def _bind_outcome(adapter: ModelAdapter, outcome: Outcome) -> _Reader:
    """`outcome` bound to the adapter's model; InterventionError when it is not an outcome spec."""
    if not isinstance(outcome, Outcome):
        raise InterventionError(
            f"outcome must be LogitDiff, AnswerProb, ClassProb, ClassLogit or ContinuationLogProb, got {outcome!r}"
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
                f"text {text[:40]!r}... has {len(ids)} tokens but the model takes at most {limit}; shorten the template"
            )
    return token_ids


def _pad_right(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and the attention mask marking real tokens."""
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return input_ids.to(device), attention_mask.to(device)
