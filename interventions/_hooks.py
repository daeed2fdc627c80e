"""Reading and replacing site activations during a model's own forward pass."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from interventions._sites import Architecture, Point, module_at

if TYPE_CHECKING:
    from torch import nn

Edit = Callable[[torch.Tensor], torch.Tensor | None]
"""Called with a (batch, seq, width) activation; a returned tensor replaces it."""


@contextmanager
def site_hooks(model: nn.Module, architecture: Architecture, edits: Mapping[Point, Edit]) -> Iterator[None]:
    """Run `edits[point]` on each point's activation in every forward inside the block.

    The hooks are removed when the block exits, also on error, so a model never keeps a
    stale patch.
    """
    layout = architecture.layout
    blocks = module_at(model.base_model, layout.blocks)
    handles = []
    try:
        for (kind, index), edit in edits.items():
            if kind == "stream" and index < architecture.n_layers:
                handles.append(blocks[index].register_forward_pre_hook(_edit_input(edit), with_kwargs=True))
            elif kind == "stream":
                handles.append(blocks[index - 1].register_forward_hook(_edit_output(edit)))
            elif kind == "z":
                handles.append(
                    module_at(blocks[index], layout.o_proj).register_forward_pre_hook(
                        _edit_input(edit), with_kwargs=True
                    )
                )
            else:
                path = layout.o_proj if kind == "attn_out" else layout.mlp[-1]
                handles.append(module_at(blocks[index], path).register_forward_hook(_edit_output(edit)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _edit_input(edit: Edit) -> Callable[..., Any]:
    """A forward pre-hook applying `edit` to the module's first (hidden states) input."""

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if args:
            replaced = edit(args[0])
            return None if replaced is None else ((replaced, *args[1:]), kwargs)
        replaced = edit(kwargs["hidden_states"])
        return None if replaced is None else (args, {**kwargs, "hidden_states": replaced})

    return hook


def _edit_output(edit: Edit) -> Callable[..., Any]:
    """A forward hook applying `edit` to the module's output (or its first element)."""

    def hook(module: nn.Module, args: tuple, output: Any) -> Any:
        first = output[0] if isinstance(output, tuple) else output
        replaced = edit(first)
        if replaced is None:
            return None
        return (replaced, *output[1:]) if isinstance(output, tuple) else replaced

    return hook
