"""Reading and replacing site activations during a model's own forward pass.

Most points are a module's input or output. Three are not, and are reached so:
queries, keys and values are slices of a fused projection's output in GPT-2 and
GPT-NeoX; the middle stream of a pre-norm block is the MLP norm's input (sequential)
or never materialised (parallel), so its edit is also added to the block's output;
attention probabilities exist only inside the attention function, so edits of them run
the model with `_attention`, registered with transformers' AttentionInterface, which
computes them as eager attention does and hands them to the edit before mixing values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from interventions._sites import Architecture, Point, module_at
from interventions.errors import InterventionError

if TYPE_CHECKING:
    from torch import nn

Edit = Callable[[torch.Tensor], torch.Tensor | None]
"""Called with a (batch, seq, width) activation, or (batch, query, head, key) probabilities
for a "pattern" point; a returned tensor replaces it."""

_IMPLEMENTATION = "paribus_patchable"
# Pattern edits of the attention modules inside a `site_hooks` block, and the modules whose
# attention reached `_attention` in their current forward.
_PATTERN_EDITS: dict[nn.Module, Edit] = {}
_REACHED: set[nn.Module] = set()


@contextmanager
def site_hooks(model: nn.Module, architecture: Architecture, edits: Mapping[Point, Edit]) -> Iterator[None]:
    """Run `edits[point]` on each point's activation in every forward inside the block.

    The hooks are removed (and a model switched to patchable attention switched back) when
    the block exits, also on error, so a model never keeps a stale patch. Edits of one
    module run in the order given.
    """
    layout = architecture.layout
    blocks = module_at(model.base_model, layout.blocks)
    handles = []
    patterns: dict[nn.Module, Edit] = {}
    try:
        for (kind, index), given in edits.items():
            edit = _on_device(given)
            if kind == "stream" and index < architecture.n_layers:
                handles.append(blocks[index].register_forward_pre_hook(_edit_input(edit), with_kwargs=True))
            elif kind == "stream":
                handles.append(blocks[index - 1].register_forward_hook(_edit_output(edit)))
            elif kind in ("z", "mlp_in"):
                path = layout.o_proj if kind == "z" else layout.mlp[0]
                handles.append(
                    module_at(blocks[index], path).register_forward_pre_hook(_edit_input(edit), with_kwargs=True)
                )
            elif kind in ("q", "k", "v"):
                handles.append(_projection_hook(blocks[index], architecture, kind, edit))
            elif kind == "mid":
                handles.extend(_middle_hooks(blocks[index], architecture, edit))
            elif kind == "pattern":
                patterns[module_at(blocks[index], layout.attention)] = edit
            else:
                path = layout.o_proj if kind == "attn_out" else layout.mlp[-1]
                handles.append(module_at(blocks[index], path).register_forward_hook(_edit_output(edit)))
        for module in patterns:
            handles.extend(_reach_check(module, architecture))
        with _patchable_attention(model, patterns):
            yield
    finally:
        for handle in handles:
            handle.remove()


def _on_device(edit: Edit) -> Edit:
    """`edit`, its result moved to the device of the activation it replaces.

    A model split across devices (`device_map`) computes each block where its weights
    live, while a patch's values are kept on the input device; a move within one device
    is a no-op.
    """

    def moved(activation: torch.Tensor) -> torch.Tensor | None:
        replaced = edit(activation)
        return None if replaced is None else replaced.to(activation.device)

    return moved


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


def _projection_hook(block: nn.Module, architecture: Architecture, kind: str, edit: Edit) -> Any:
    """A hook editing a layer's queries, keys or values where its projection computes them."""
    layout = architecture.layout
    part = "qkv".index(kind)
    if layout.qkv_layout == "separate":
        return module_at(block, layout.qkv[part]).register_forward_hook(_edit_output(edit))
    heads, d_head = architecture.n_heads, architecture.d_head

    def fused(output: torch.Tensor) -> torch.Tensor | None:
        lead = output.shape[:-1]
        if layout.qkv_layout == "split":  # [q | k | v] along features
            pieces = list(output.split(heads * d_head, dim=-1))
            replaced = edit(pieces[part])
            if replaced is None:
                return None
            pieces[part] = replaced
            return torch.cat(pieces, dim=-1)
        pieces = list(output.view(*lead, heads, 3, d_head).unbind(-2))  # per head [q k v]
        replaced = edit(pieces[part].reshape(*lead, heads * d_head))
        if replaced is None:
            return None
        pieces[part] = replaced.view(*lead, heads, d_head)
        return torch.stack(pieces, dim=-2).reshape(output.shape)

    return module_at(block, layout.qkv[0]).register_forward_hook(_edit_output(fused))


def _middle_hooks(block: nn.Module, architecture: Architecture, edit: Edit) -> list[Any]:
    """Hooks editing the stream between a block's attention and its MLP.

    Post-norm blocks materialise it as the attention norm's output. A sequential pre-norm
    block feeds it to the MLP norm and adds it to the MLP output: the MLP norm's input is
    edited and the block's output shifted by the same change. A parallel block only adds
    it (input + attention output) to the MLP output, so only the block's output changes.
    """
    layout = architecture.layout
    if architecture.residual == "post_norm":
        return [module_at(block, layout.attention_norm).register_forward_hook(_edit_output(edit))]
    change: dict[str, torch.Tensor] = {}
    handles = []
    if architecture.residual == "sequential":

        def before_mlp(activation: torch.Tensor) -> torch.Tensor | None:
            replaced = edit(activation)
            if replaced is not None:
                change["shift"] = replaced - activation
            return replaced

        handles.append(
            module_at(block, layout.mlp_norm).register_forward_pre_hook(_edit_input(before_mlp), with_kwargs=True)
        )
    else:
        seen: dict[str, torch.Tensor] = {}
        handles.append(block.register_forward_pre_hook(_edit_input(lambda x: seen.update(x=x)), with_kwargs=True))
        handles.append(
            module_at(block, layout.o_proj).register_forward_hook(_edit_output(lambda a: seen.update(attn=a)))
        )

        def from_parts(output: torch.Tensor) -> None:
            # The stream is computed once for the edit and once apart for the shift, so a
            # gradient at what the edit returns is the gradient at the middle stream.
            replaced = edit(seen["x"] + seen["attn"])
            if replaced is not None:
                change["shift"] = replaced - (seen["x"] + seen["attn"])

        handles.append(block.register_forward_hook(_edit_output(from_parts)))

    def shift_output(output: torch.Tensor) -> torch.Tensor | None:
        shift = change.pop("shift", None)
        return None if shift is None else output + shift

    handles.append(block.register_forward_hook(_edit_output(shift_output)))
    return handles


@contextmanager
def _patchable_attention(model: nn.Module, patterns: Mapping[nn.Module, Edit]) -> Iterator[None]:
    """Run `model` with `_attention` and the given pattern edits inside the block, if any."""
    if not patterns:
        yield
        return
    _register()
    original = model.config._attn_implementation
    try:
        model.set_attn_implementation(_IMPLEMENTATION)
    except (ValueError, KeyError) as error:
        raise InterventionError(
            f"cannot patch attention patterns of {type(model).__name__}: its attention implementation "
            f"cannot be switched to one that exposes the probabilities ({error})"
        ) from None
    _PATTERN_EDITS.update(patterns)
    try:
        yield
    finally:
        for module in patterns:
            _PATTERN_EDITS.pop(module, None)
            _REACHED.discard(module)
        model.set_attn_implementation(original)


def _reach_check(module: nn.Module, architecture: Architecture) -> list[Any]:
    """Hooks raising when `module`'s forward did not compute its attention with `_attention`."""

    def before(module: nn.Module, args: tuple) -> None:
        _REACHED.discard(module)

    def after(module: nn.Module, args: tuple, output: Any) -> None:
        if module not in _REACHED:
            raise InterventionError(
                f"cannot patch the attention pattern of {type(module).__name__} ({architecture.model_type}): "
                "its forward does not compute attention through transformers' AttentionInterface, so the "
                "probabilities cannot be replaced; patch head_q, head_k, head_v or head sites instead"
            )

    return [module.register_forward_pre_hook(before), module.register_forward_hook(after)]


def _register() -> None:
    """Register `_attention` (with eager attention's mask) under `_IMPLEMENTATION`, once."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    if _IMPLEMENTATION not in AttentionInterface._global_mapping:
        AttentionInterface.register(_IMPLEMENTATION, _attention)
        AttentionMaskInterface.register(_IMPLEMENTATION, eager_mask)


def _attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention whose probabilities pass through the module's pattern edit, if any."""
    _REACHED.add(module)
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scale
    if attention_mask is not None:
        scores = scores + attention_mask[..., : key.shape[-2]]
    weights = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(query.dtype)
    edit = _PATTERN_EDITS.get(module)
    if edit is not None:
        replaced = edit(weights.transpose(1, 2))
        if replaced is not None:
            weights = replaced.transpose(1, 2)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights
