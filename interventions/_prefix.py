"""Prefix sharing: texts that begin with the same tokens run those tokens once.

The arms of one unit are equal up to the first slot the arm changes, so a causal LM's
keys and values over that prefix are equal too. Texts are grouped by a common token
prefix; each group's prefix runs once, and every member continues from a copy of its
keys and values with explicit positions, giving the logits of a full forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from interventions._adapter import ModelAdapter
from interventions.errors import InterventionError

# Prefixes shorter than this are not shared: the tokens saved cost less than the extra
# forward and the copy of the keys and values (benchmarks/throughput.py).
_MIN_PREFIX = 8


@dataclass(frozen=True)
class PrefixGroups:
    """Text i shares its first `length[i]` tokens with the other texts of group `group[i]`.

    Texts that share nothing have group -1 and length 0.
    """

    group: np.ndarray
    length: np.ndarray

    def order(self, lengths: np.ndarray) -> np.ndarray:
        """An evaluation order that pads continuations little: each group's texts together
        (a text sharing nothing is a group of its own), groups by their longest continuation,
        texts within a group by length."""
        key = np.where(self.group >= 0, self.group, -1 - np.arange(len(self.group)))
        continuation = lengths - self.length
        _, group_of = np.unique(key, return_inverse=True)
        widest = np.zeros(group_of.max(initial=-1) + 1, dtype=np.int64)
        np.maximum.at(widest, group_of, continuation)
        return np.lexsort((lengths, key, widest[group_of]))


def group_prefixes(token_ids: Sequence[Sequence[int]], *, keep: int) -> PrefixGroups:
    """Group texts by a shared token prefix, greedily maximising the tokens not recomputed.

    Texts are visited in lexicographic token order, where texts with long common prefixes
    are neighbours. A text joins the open group when the group's prefix, shortened to what
    the text shares, still saves at least as many tokens as before. A prefix leaves every
    text's last `keep` + 1 tokens to its continuation (the positions an outcome reads).
    """
    n_texts = len(token_ids)
    group = np.full(n_texts, -1, dtype=np.int64)
    length = np.zeros(n_texts, dtype=np.int64)
    members: list[int] = []
    shared = 0
    count = 0

    def close() -> None:
        nonlocal count
        if len(members) > 1:
            group[members] = count
            length[members] = shared
            count += 1

    for row in sorted(range(n_texts), key=lambda index: list(token_ids[index])):
        limit = len(token_ids[row]) - 1 - keep
        if members:
            joined = min(shared, limit, common_prefix(token_ids[members[-1]], token_ids[row]))
            if joined >= _MIN_PREFIX and len(members) * joined >= (len(members) - 1) * shared:
                members.append(row)
                shared = joined
                continue
            close()
        members, shared = [row], limit
    close()
    return PrefixGroups(group=group, length=length)


def can_share(adapter: ModelAdapter, max_length: int) -> bool:
    """Whether prefix sharing gives this model's full-forward logits.

    Needs a causal LM. Continuations attend across the padding between a shorter prefix
    and themselves, so a sliding attention window (counted in cache slots) must cover twice
    the longest text.
    """
    if adapter.spec.task != "causal-lm":
        return False
    window = getattr(adapter.model.config, "sliding_window", None)
    return window is None or 2 * max_length <= window


def continue_prefixes(
    adapter: ModelAdapter,
    prefix_ids: torch.Tensor,
    prefix_mask: torch.Tensor,
    owner: torch.Tensor,
    offset: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """Logits of continuations (right-padded `input_ids`), each after its prefix.

    Prefixes (right-padded rows of `prefix_ids`) run once through the base model; row r
    continues from prefix `owner[r]`, whose first `offset[r]` tokens it keeps (0: none, the
    row is a whole text). Positions of row r count on from `offset[r]`.
    """
    cache = adapter.model.base_model(
        input_ids=prefix_ids, attention_mask=prefix_mask, use_cache=True
    ).past_key_values
    _check_cache(adapter, cache)
    cache.batch_select_indices(owner)
    width = prefix_ids.shape[1]
    kept = torch.arange(width, device=owner.device)[None, :] < offset[:, None]
    positions = offset[:, None] + torch.arange(input_ids.shape[1], device=owner.device)
    return adapter.model(
        input_ids=input_ids,
        attention_mask=torch.cat([kept.to(attention_mask.dtype), attention_mask], dim=1),
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    ).logits


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    for number, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return number
    return min(len(a), len(b))


def _check_cache(adapter: ModelAdapter, cache: object) -> None:
    """Raise unless `cache` holds plain per-layer keys and values that rows can be picked from."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if not isinstance(cache, DynamicCache) or any(
        type(layer) is not DynamicLayer for layer in cache.layers
    ):
        raise InterventionError(
            f"{type(adapter.model).__name__} keeps its past in a {type(cache).__name__} that "
            "prefix sharing cannot split by row; evaluate with share_prefix=False"
        )
