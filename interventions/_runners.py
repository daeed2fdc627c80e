"""A model's blocks as separate steps, built from its own submodules.

A patched run starts in the middle of the model: at block L, from cached activations,
for some positions only. The model's `forward` cannot do that, so `BlockRunner` calls
the same submodules it would (norms, projections, rotary embedding, MLP, output head)
in the order the architecture's `Layout` says, and computes attention itself over any
mix of cached and new keys. Tests hold it equal to the model's forward.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from interventions._sites import Architecture, module_at

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class _Block:
    """The submodules of one block, in the roles the runner uses."""

    qkv: tuple[nn.Module, ...]
    o_proj: nn.Module
    mlp: tuple[nn.Module, ...]
    attention_norm: nn.Module
    mlp_norm: nn.Module
    scaling: float
    window: int | None


class BlockRunner:
    """Step functions over one model's blocks; tensors are (rows, positions, width)."""

    def __init__(self, model: nn.Module, architecture: Architecture) -> None:
        layout = architecture.layout
        self.architecture = architecture
        base = model.base_model
        blocks = module_at(base, layout.blocks)
        self._blocks = [self._block(model, block, architecture) for block in blocks]
        self._rotary = None if layout.rotary is None else module_at(base, layout.rotary)
        if self._rotary is not None:
            # The rotation the model's own attention applies, from the module defining it.
            attention = module_at(blocks[0], layout.attention)
            self._apply_rotary = sys.modules[type(attention).__module__].apply_rotary_pos_emb
        norm = None if layout.final_norm is None else module_at(base, layout.final_norm)
        self._readout = _READOUT_STEPS[architecture.readout.name](model, norm)

    @staticmethod
    def _block(model: nn.Module, block: nn.Module, architecture: Architecture) -> _Block:
        layout = architecture.layout
        attention = module_at(block, layout.attention)
        window = getattr(attention, "sliding_window", getattr(model.config, "sliding_window", None))
        return _Block(
            qkv=tuple(module_at(block, path) for path in layout.qkv),
            o_proj=module_at(block, layout.o_proj),
            mlp=tuple(module_at(block, path) for path in layout.mlp),
            attention_norm=module_at(block, layout.attention_norm),
            mlp_norm=module_at(block, layout.mlp_norm),
            scaling=getattr(attention, "scaling", architecture.d_head**-0.5),
            window=window if architecture.causal else None,
        )

    def window(self, layer: int) -> int | None:
        """The sliding attention window of a layer (keys with query - key < window), if any."""
        return self._blocks[layer].window

    def qkv(
        self, layer: int, hidden: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (rows, heads, n, d_head) and keys, values (rows, kv_heads, n, d_head): `project` then `rotate`.

        `positions` (n,) are the absolute positions of `hidden`'s n columns (for rotary
        embeddings; absolute position embeddings are already in the residual stream).
        """
        q, k, v = self.project(layer, hidden)
        q, k = self.rotate(q, k, positions)
        return q, k, v

    def project(self, layer: int, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (rows, heads, n, d_head) and keys, values (rows, kv_heads, n, d_head), before any rotation."""
        architecture = self.architecture
        block = self._blocks[layer]
        x = hidden if architecture.residual == "post_norm" else at_weights(block.attention_norm, hidden)
        rows, n, _ = x.shape
        d_head = architecture.d_head
        layout = architecture.layout.qkv_layout
        if layout == "per_head":
            fused = at_weights(block.qkv[0], x).view(rows, n, -1, 3 * d_head).transpose(1, 2)
            q, k, v = fused.chunk(3, dim=-1)
            return q, k, v
        if layout == "split":
            projected = at_weights(block.qkv[0], x).split(architecture.n_heads * d_head, dim=-1)
        else:
            projected = tuple(at_weights(module, x) for module in block.qkv)
        q, k, v = (part.view(rows, n, -1, d_head).transpose(1, 2) for part in projected)
        return q, k, v

    def rotate(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries and keys with the rotary embedding of absolute `positions` (n,), if the model has one."""
        if self._rotary is None:
            return q, k
        cos, sin = at_weights(self._rotary, q, positions[None, :])
        return self._apply_rotary(q, k, cos, sin)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention of q over k, v under a boolean (rows, 1, queries, keys) mask -> z.

        z is (rows, queries, heads * d_head): the input of the output projection, whose
        slice [h * d_head, (h + 1) * d_head) is head h.
        """
        heads = q.shape[1]
        k, v = per_query_head(k, heads), per_query_head(v, heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self._blocks[layer].scaling)
        rows, heads, queries, d_head = out.shape
        return out.transpose(1, 2).reshape(rows, queries, heads * d_head)

    def o_proj(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """The attention output (attn_out) from z."""
        return at_weights(self._blocks[layer].o_proj, z)

    def mlp_input(self, layer: int, resid: torch.Tensor, attn_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the MLP's input, the residual stream between attention and MLP)."""
        block = self._blocks[layer]
        residual = self.architecture.residual
        if residual == "post_norm":
            middle = at_weights(block.attention_norm, attn_out + resid)
            return middle, middle
        middle = resid + attn_out
        return at_weights(block.mlp_norm, resid if residual == "parallel" else middle), middle

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """The MLP output (mlp_out) from its input."""
        for module in self._blocks[layer].mlp:
            x = at_weights(module, x)
        return x

    def combine(self, layer: int, middle: torch.Tensor, mlp_out: torch.Tensor) -> torch.Tensor:
        """The block's output (resid_post) from the middle residual and the MLP output."""
        if self.architecture.residual == "post_norm":
            return at_weights(self._blocks[layer].mlp_norm, mlp_out + middle)
        return middle + mlp_out

    def readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from the last block's output at the read positions (rows, k, width).

        Language models give (rows, k, vocab); classifiers (rows, labels).
        """
        return self._readout(hidden)


Step = Callable[[torch.Tensor], torch.Tensor]


def at_weights(module: nn.Module, *inputs: torch.Tensor) -> Any:
    """`module(*inputs)` on the device of its weights, the result back on the first input's device.

    The runner keeps its tensors on the model's input device. A model split across GPUs by
    a device_map keeps each block's weights on its own GPU, and its hooks move inputs only
    when the block's own forward runs, which the runner does not call. On one device, and
    for weights offloaded to CPU or disk (on the meta device, loaded by the hooks of the
    module itself), this is the plain call.
    """
    device = _weights_device(module)
    home = inputs[0].device
    if device is None or device == home:
        return module(*inputs)
    output = module(*(tensor.to(device) for tensor in inputs))
    return tuple(part.to(home) for part in output) if isinstance(output, tuple) else output.to(home)


def _weights_device(module: nn.Module) -> torch.device | None:
    """Where the module's first weight (or buffer) lives; None when it has none or it is offloaded (meta)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return None if tensor.device.type == "meta" else tensor.device
    return None


def per_query_head(kv: torch.Tensor, heads: int) -> torch.Tensor:
    """Keys or values (rows, kv_heads, n, d) repeated for the query heads that share them."""
    groups = heads // kv.shape[1]
    return kv.repeat_interleave(groups, dim=1) if groups > 1 else kv


def _lm_head(model: nn.Module, norm: nn.Module | None) -> Step:
    return lambda hidden: at_weights(model.lm_head, at_weights(norm, hidden))


def _score(model: nn.Module, norm: nn.Module | None) -> Step:
    return lambda hidden: at_weights(model.score, at_weights(norm, hidden[:, -1]))


def _classification_head(model: nn.Module, norm: nn.Module | None) -> Step:
    return lambda hidden: at_weights(model.classifier, hidden)


def _pre_classifier(model: nn.Module, norm: nn.Module | None) -> Step:
    return lambda hidden: at_weights(model.classifier, torch.relu(at_weights(model.pre_classifier, hidden[:, 0])))


def _pooler(model: nn.Module, norm: nn.Module | None) -> Step:
    return lambda hidden: at_weights(model.classifier, at_weights(model.base_model.pooler, hidden))


# How each Readout row of _sites.READOUTS turns hidden states into logits (eval mode:
# dropout is the identity and left out).
_READOUT_STEPS = {
    "lm_head": _lm_head,
    "score": _score,
    "classification_head": _classification_head,
    "pre_classifier": _pre_classifier,
    "pooler": _pooler,
}
