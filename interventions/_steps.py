"""A block's attention as separate steps, so a patch can replace a query, key, value or pattern.

`BlockRunner.attend` runs attention as one fused kernel. Patching one head's query, key,
value or attention probabilities needs the steps apart: the projections before any rotary
embedding (the position-free vectors the sites name), the rotation, the probabilities, and
their mix of the values. Tests hold the steps, composed, equal to the model's forward.
"""

from __future__ import annotations

import torch

from interventions._runners import BlockRunner


class StepRunner(BlockRunner):
    """`BlockRunner` with attention split into project, rotate, pattern and mix."""

    def project(self, layer: int, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (rows, heads, n, d_head) and keys, values (rows, kv_heads, n, d_head), unrotated."""
        architecture = self.architecture
        block = self._blocks[layer]
        x = hidden if architecture.residual == "post_norm" else block.attention_norm(hidden)
        rows, n, _ = x.shape
        d_head = architecture.d_head
        layout = architecture.layout.qkv_layout
        if layout == "per_head":
            fused = block.qkv[0](x).view(rows, n, -1, 3 * d_head).transpose(1, 2)
            q, k, v = fused.chunk(3, dim=-1)
            return q, k, v
        if layout == "split":
            projected = block.qkv[0](x).split(architecture.n_heads * d_head, dim=-1)
        else:
            projected = tuple(module(x) for module in block.qkv)
        q, k, v = (part.view(rows, n, -1, d_head).transpose(1, 2) for part in projected)
        return q, k, v

    def rotate(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries and keys with the rotary embedding of absolute `positions` (n,), if the model has one."""
        if self._rotary is None:
            return q, k
        cos, sin = self._rotary(q, positions[None, :])
        return self._apply_rotary(q, k, cos, sin)

    def qkv(
        self, layer: int, hidden: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rotated queries and keys, and values: `project` then `rotate`."""
        q, k, v = self.project(layer, hidden)
        q, k = self.rotate(q, k, positions)
        return q, k, v

    def pattern(self, layer: int, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention probabilities (rows, heads, queries, keys) under a boolean (rows, 1, queries, keys) mask.

        Softmax in float32 at least, as the models' eager attention computes it.
        """
        k = _per_query_head(k, q.shape[1])
        scores = torch.matmul(q, k.transpose(2, 3)) * self._blocks[layer].scaling
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(q.dtype)

    def mix(self, pattern: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """z (rows, queries, heads * d_head) from probabilities and values, as `attend` returns it."""
        out = torch.matmul(pattern, _per_query_head(v, pattern.shape[1]))
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
        return self._blocks[layer].mlp_norm(resid if residual == "parallel" else middle)


def _per_query_head(kv: torch.Tensor, heads: int) -> torch.Tensor:
    """Keys or values (rows, kv_heads, n, d) repeated for the query heads that share them."""
    groups = heads // kv.shape[1]
    return kv.repeat_interleave(groups, dim=1) if groups > 1 else kv
