"""Batch sizes that fit in device memory, and halving a batch that ran out of it.

Memory estimates are rough and other processes share the device, so every batched loop
runs through `in_batches` (or `halving`): an out-of-memory error halves the batch and
retries the same rows, down to one row, so no work is ever skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch

from interventions._adapter import ModelAdapter

T = TypeVar("T")

# The share of free CUDA memory one batched loop may fill (the rest absorbs the estimate's error
# and the allocator's fragmentation).
_CUDA_SHARE = 0.4
# Texts per forward when the batch size is "auto": the default on CPU (no free-memory query
# there) and the most on CUDA (larger batches only add memory once the device is busy).
_CPU_BATCH = 32
_MAX_BATCH = 512


def cuda_budget(device: torch.device) -> float:
    """Bytes a batched loop may fill on a CUDA device: a share of its free memory."""
    return torch.cuda.mem_get_info(device)[0] * _CUDA_SHARE


def auto_batch_size(adapter: ModelAdapter, max_length: int) -> int:
    """Texts per forward that fit in free CUDA memory, or a fixed default on CPU.

    A forward frees each block's activations before the next block runs, so a token costs
    about one block's working set (the residual stream and its copies, queries, keys and values,
    the MLP's hidden layer, one attention row per head) plus its vocabulary logits, which the
    outcome reader copies to float32. Widths are read from the config and the embedding matrix.
    """
    if adapter.device.type != "cuda":
        return _CPU_BATCH
    config = adapter.model.config
    embedding = adapter.model.get_input_embeddings().weight
    vocab, hidden = embedding.shape
    inner = getattr(config, "intermediate_size", None) or 4 * hidden
    heads = getattr(config, "num_attention_heads", None) or 1
    element = torch.finfo(adapter.dtype).bits // 8
    per_token = element * (8 * hidden + 3 * inner + heads * max_length) + (element + 8) * vocab
    rows = int(cuda_budget(adapter.device) // (per_token * max(max_length, 1)))
    return max(1, min(_MAX_BATCH, rows))


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says a device ran out of memory (CUDA's error type, or its message)."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error)
    )


def halving(size: int, attempt: Callable[[int], T], *, what: str) -> tuple[T, int]:
    """(attempt(size), size), halving `size` after each out-of-memory error until one fits.

    At size 1 the error is raised again as torch.OutOfMemoryError naming the sizes tried;
    other errors pass through untouched. `what` names what a row is in that message.
    """
    initial = size
    while True:
        try:
            return attempt(size), size
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            if size == 1:
                halved = f"; halved from {initial} after out-of-memory errors" * (initial > 1)
                raise torch.OutOfMemoryError(
                    f"out of memory at batch size 1 ({what} one at a time{halved}): {error}; "
                    "nothing smaller can run; free device memory, or use a smaller model, a "
                    "half-precision dtype or shorter texts"
                ) from error
        # Retried outside the handler, so the failed attempt's tensors are released first.
        _release_cached_memory()
        size = max(1, size // 2)


def in_batches(
    rows: Sequence[int] | np.ndarray,
    size: int,
    step: Callable[[np.ndarray], None],
    *,
    what: str,
) -> int:
    """Call `step` on consecutive slices of `rows` of at most `size`, halving after OOM errors.

    A slice that ran out of memory is retried from its first row with half the rows, and
    later slices keep the smaller size. Returns that size (`size` when nothing ran out of
    memory), so a caller running several loops can start the next one there.
    """
    rows = np.asarray(rows, dtype=np.int64)
    start = 0
    while start < len(rows):
        remaining = rows[start:]
        tried = min(size, len(remaining))
        _, ran = halving(tried, lambda n, remaining=remaining: step(remaining[:n]), what=what)
        size = ran if ran < tried else size
        start += ran
    return size


def _release_cached_memory() -> None:
    """Hand CUDA's cached blocks back, so a retry can allocate what the failed batch held."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
