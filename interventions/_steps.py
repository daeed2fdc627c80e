"""A block's attention as separate steps, so a patch can replace a query, key, value or pattern.

`BlockRunner.attend` runs attention as one fused kernel. Patching one head's query, key,
value or attention probabilities needs the steps apart: the projections before any rotary
embedding (the position-free vectors the sites name), the rotation, the probabilities, and
their mix of the values. Tests hold the steps, composed, equal to the model's forward.
"""

from __future__ import annotations

import torch

from interventions._runners import BlockRunner, at_weights, per_query_head


class StepRunner(BlockRunner):
    """`BlockRunner` with attention's pattern and mix apart (projection and rotation are BlockRunner's own)."""

    def pattern(self, layer: int, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention probabilities (rows, heads, queries, keys) under a boolean (rows, 1, queries, keys) mask.

        Softmax in float32 at least, as the models' eager attention computes it.
        """
        k = per_query_head(k, q.shape[1])
        scores = torch.matmul(q, k.transpose(2, 3)) * self._blocks[layer].scaling
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(q.dtype)

    def mix(self, pattern: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """z (rows, queries, heads * d_head) from probabilities and values, as `attend` returns it."""
        out = torch.matmul(pattern, per_query_head(v, pattern.shape[1]))
        rows, heads, queries, d_head = out.shape
        return out.transpose(1, 2).reshape(rows, queries, heads * d_head)

    def mlp_read(self, layer: int, resid: torch.Tensor, middle: torch.Tensor) -> torch.Tensor:
        """The MLP's input from the block's input stream and its middle stream.

        A sequential block normalises the middle stream, a parallel one its input stream, and
        a post-norm block reads the (already normalised) middle stream as it is.
        """
        residual = self.architecture.residual
        if residual == "post_norm":
            return middle
        return at_weights(self._blocks[layer].mlp_norm, resid if residual == "parallel" else middle)
