"""Prefix sharing: texts that begin with the same tokens run those tokens once.

The arms of one unit are equal up to the first slot the arm changes, so a causal LM's
keys and values over that prefix are equal too. Texts are grouped by a common token
prefix; each group's prefix runs once, and every member continues from a copy of its
keys and values with explicit positions, giving the logits of a full forward. The same
continuation (`continue_cache`) runs option strings after a whole text's keys and values.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from interventions._adapter import ModelAdapter
from interventions.errors import InterventionError

if TYPE_CHECKING:
    from transformers import Cache

# Prefixes shorter than this are not shared: each group adds a row to a prefix forward and
# a copy of its keys and values per member, which a few tokens saved do not repay.
_MIN_PREFIX = 8
# Most texts in one group: a group of n saves (n - 1) / n of its prefix, so larger groups
# gain little, and the search over groups costs texts x this.
_MAX_RUN = 256


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
    """Group texts by a shared token prefix so that the fewest tokens are computed.

    In lexicographic token order, texts with long common prefixes are neighbours, and a run
    of neighbours shares the smallest of their adjacent common prefixes. The runs that save
    the most tokens in all ((members - 1) x prefix each; prefixes shorter than `_MIN_PREFIX`
    save nothing; at most `_MAX_RUN` members) are found by dynamic programming over the
    sorted texts. A prefix leaves every text's last `keep` + 1 tokens to its continuation
    (the positions an outcome reads).
    """
    n_texts = len(token_ids)
    order = sorted(range(n_texts), key=lambda index: list(token_ids[index]))
    limit = np.array([len(token_ids[row]) - 1 - keep for row in order], dtype=np.int64)
    # shared[k]: what sorted text k shares with text k - 1, within both texts' limits.
    shared = np.zeros(n_texts, dtype=np.int64)
    for k in range(1, n_texts):
        common = common_prefix(token_ids[order[k - 1]], token_ids[order[k]])
        shared[k] = min(common, limit[k], limit[k - 1])
    best = np.zeros(n_texts + 1, dtype=np.int64)  # best[j]: most tokens saved in texts < j
    first = np.arange(n_texts)  # first[j]: where the run ending at text j starts
    too_short = -1  # the last k <= j whose text shares too little with its predecessor
    for j in range(n_texts):
        best[j + 1] = best[j]
        if shared[j] < _MIN_PREFIX:
            too_short = j
        if too_short == j:
            continue
        starts = np.arange(max(too_short, j - _MAX_RUN + 1), j)  # runs from each start to j
        prefix = np.minimum.accumulate(shared[starts[::-1] + 1])[::-1]
        saved = best[starts] + (j - starts) * prefix
        pick = int(np.argmax(saved))
        if saved[pick] > best[j + 1]:
            best[j + 1], first[j] = saved[pick], starts[pick]
    group = np.full(n_texts, -1, dtype=np.int64)
    length = np.zeros(n_texts, dtype=np.int64)
    j, count = n_texts - 1, 0
    while j >= 0:
        i = first[j]
        if i < j:
            rows = np.array(order[i : j + 1])
            group[rows] = count
            length[rows] = shared[i + 1 : j + 1].min()
            count += 1
        j = i - 1
    return PrefixGroups(group=group, length=length)


def can_share(adapter: ModelAdapter, max_length: int) -> bool:
    """Whether prefix sharing gives this model's full-forward logits.

    Needs a causal LM whose layers all attend (no recurrent or linear-attention layers,
    whose state cannot be split by row). Continuations attend across the padding between a
    shorter prefix and themselves, so a sliding attention window (counted in cache slots)
    must cover twice the longest text.
    """
    if adapter.spec.task != "causal-lm":
        return False
    config = adapter.model.config
    layer_types = getattr(config, "layer_types", None) or ()
    if not set(layer_types) <= {"full_attention", "sliding_attention"}:
        return False
    window = getattr(config, "sliding_window", None)
    return window is None or 2 * max_length <= window


def continue_prefixes(
    adapter: ModelAdapter,
    prefix_ids: torch.Tensor,
    prefix_mask: torch.Tensor,
    owner: torch.Tensor,
    offset: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> tuple[torch.Tensor, Cache, torch.Tensor]:
    """Logits of continuations (right-padded `input_ids`), each after its prefix.

    Prefixes (right-padded rows of `prefix_ids`) run once through the base model; row r
    continues from prefix `owner[r]`, whose first `offset[r]` tokens it keeps (0: none, the
    row is a whole text). Positions of row r count on from `offset[r]`; padding sits at 0.
    Returns (logits, the cache grown by the continuations, its mask), as `continue_cache`.
    """
    cache = output_cache(adapter.model.base_model(input_ids=prefix_ids, attention_mask=prefix_mask, use_cache=True))
    check_cache(adapter, cache)
    kept = torch.arange(prefix_ids.shape[1], device=owner.device)[None, :] < offset[:, None]
    return continue_cache(adapter, cache, kept, owner, offset, input_ids, attention_mask)


def continue_cache(
    adapter: ModelAdapter,
    cache: Cache,
    kept: torch.Tensor,
    owner: torch.Tensor,
    start: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> tuple[torch.Tensor, Cache, torch.Tensor]:
    """(logits, cache, mask): right-padded `input_ids` run after rows of a cache of keys and values.

    Row r continues from cache row `owner[r]`, attending to the slots `kept[r]` marks, at
    positions counting on from `start[r]`. The cache is cut to the owners' rows and grown by
    the input in place; the mask marks what each of its rows may attend to.
    """
    cache.batch_select_indices(owner)
    positions = start[:, None] + torch.arange(input_ids.shape[1], device=owner.device)
    # Padding after a long prefix could count past the model's last position; it is masked
    # and never read, so any position in range does.
    positions = positions.masked_fill(attention_mask == 0, 0)
    mask = torch.cat([kept.to(attention_mask.dtype), attention_mask], dim=1)
    logits = adapter.model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        **{_cache_keyword(adapter): cache},
    ).logits
    return logits, cache, mask


def _cache_keyword(adapter: ModelAdapter) -> str:
    """The keyword a model's forward takes its key/value cache by: `cache` from transformers 5.24, before it
    `past_key_values` (still accepted there, with a deprecation warning on every call). Read from the
    class, since a wrapper on the instance (accelerate's hooks on a split model) hides the parameters."""
    parameters = inspect.signature(type(adapter.model).forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def output_cache(output: object) -> object:
    """A forward output's key/value cache: `cache` from transformers 5.24 (reading `past_key_values` there warns)."""
    return output.cache if "cache" in output else output.past_key_values


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    for number, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return number
    return min(len(a), len(b))


def check_cache(adapter: ModelAdapter, cache: object) -> None:
    """Raise unless `cache` holds plain per-layer keys and values that rows can be picked from."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if not isinstance(cache, DynamicCache) or not all(isinstance(layer, DynamicLayer) for layer in cache.layers):
        raise InterventionError(
            f"{type(adapter.model).__name__} keeps its past in a {type(cache).__name__} that "
            "prefix sharing cannot split by row; evaluate with share_prefix=False"
        )
