"""Path patching (Wang et al., 2022): a sender's counterfactual change let into named receivers only.

A sender writes into the residual stream: a head's output, attn_out, mlp_out, or the stream
itself (resid_pre). Its change at the patched tokens is the source's contribution minus the
destination's there (for a head, its z slice through the output projection). A receiver reads
the stream: a head's query, key or value input (`head_q.L.H`, `head_k.L.G`, `head_v.L.G`, key
and value heads by their own index as for sites), an MLP's input (`mlp_in.L`), or the stream
the outcome is read from (`resid_post.last`). In a path-patched run of the destination each
receiver reads the stream plus the sender's change, every other reader reads the stream
alone, and whatever the receivers then write flows on as usual. So patching a sender into
every receiver downstream of it equals patching the sender, and into none changes nothing.
The stream must be a sum of what blocks write: post-norm models (BERT family) are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
import torch

from interventions._adapter import ModelAdapter
from interventions._alignment import AlignedPair
from interventions._outcomes import Outcome
from interventions._patching import _BlockEdit, _Engine, _State
from interventions._sites import Architecture, Point, Site, architecture_of
from interventions._steps import StepRunner
from interventions._sweep import PairValues, Plan, Sweep, as_index, configurations, prepare
from interventions.errors import InterventionError

SENDERS: tuple[str, ...] = ("head", "attn_out", "mlp_out", "resid_pre")
"""Site components that can send: what writes into the residual stream, or the stream itself."""
_RECEIVER = re.compile(r"(head_q|head_k|head_v)\.(\d+|\*)\.(\d+|\*)|(mlp_in)\.(\d+|\*)|(resid_post)\.last")
_RECEIVER_FORMS = (
    "head_q.LAYER.HEAD, head_k.LAYER.KV_HEAD, head_v.LAYER.KV_HEAD or mlp_in.LAYER (any index may be *), "
    "resid_post.last, or several joined by '+', e.g. 'head_q.1.*+mlp_in.1'"
)
_KIND = {"head_q": "q", "head_k": "k", "head_v": "v", "mlp_in": "mlp", "resid_post": "final"}


@dataclass(frozen=True)
class Intake:
    """Where a receiver takes the stream in: a head's q, k or v input, an MLP's input ("mlp"), or
    the read the outcome is taken from ("final")."""

    kind: str
    layer: int
    head: int = -1


@dataclass(frozen=True)
class PathResult:
    """Outcomes of path-patched destination runs, beside the unpatched runs of both arms.

    `patched` has one row per (unit, sender, position, receiver): unit, site (the sender),
    component, layer, head, position, receiver (its name as given), outcome; the per-unit
    effect of an edge is its outcome minus `destination[unit]`. `work` counts as
    `PatchResult.work` does, plus `paths_unreachable`: rows whose receivers all read the
    stream before the sender writes it (their outcome is the destination's).
    """

    destination: np.ndarray
    source: np.ndarray
    patched: pd.DataFrame
    work: Mapping[str, int]


Edge = tuple[Site, str, str]
"""(sender, receiver name, position)."""


def path_patch(
    adapter: ModelAdapter,
    outcome: Outcome,
    pairs: Sequence[AlignedPair],
    senders: Sequence[Site],
    receivers: Sequence[str],
    positions: Sequence[str],
    *,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> PathResult:
    """The outcome of each pair's destination run with one sender's change reaching only some receivers.

    For every pair, sender, position and receiver: the sender's change (source minus
    destination at the position's aligned tokens) is added to the stream each of the
    receiver's intakes reads, and only there; intakes that read before the sender writes are
    left out. Receivers are names (`model_receivers` lists every intake's). Equals a plain
    loop of hooked forwards up to float rounding; `batch_size` and `progress` as in
    `patch_effects`.

    >>> path_patch(adapter, outcome, pairs, senders, ["head_v.1.*", "mlp_in.1+resid_post.last"], ["factor"])  # doctest: +SKIP
    """
    edges = all_edges(senders, receivers, positions)
    return path_effects(adapter, outcome, pairs, edges, batch_size=batch_size, progress=progress)


def path_effects(
    adapter: ModelAdapter,
    outcome: Outcome,
    pairs: Sequence[AlignedPair],
    edges: Sequence[Edge],
    *,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> PathResult:
    """`path_patch` for a list of (sender, receiver, position) edges rather than all combinations."""
    sweep, intakes = prepare_paths(adapter, outcome, pairs, edges, batch_size=batch_size)
    engine = _PathEngine(sweep, intakes, progress)
    values, destination, source = engine.run()
    return PathResult(
        destination=destination,
        source=source,
        patched=with_receivers(sweep.frame("outcome", values), [receiver for _, receiver, _ in edges]),
        work=MappingProxyType(dict(engine.work)),
    )


def model_receivers(adapter: ModelAdapter, *, layers: Sequence[int] | None = None) -> tuple[str, ...]:
    """Every intake's receiver name, layer-major: each head's q, k and v input, the MLP's input,
    then "resid_post.last". `layers` narrows the heads and MLPs (default: all layers)."""
    architecture = _stream_model(adapter)
    chosen = range(architecture.n_layers) if layers is None else layers
    names = []
    for layer in chosen:
        architecture.check(Site("resid_pre", layer))
        names += [f"head_q.{layer}.{head}" for head in range(architecture.n_heads)]
        for kind in ("k", "v"):
            names += [f"head_{kind}.{layer}.{head}" for head in range(architecture.n_kv_heads)]
        names.append(f"mlp_in.{layer}")
    return (*names, "resid_post.last")


def prepare_paths(
    adapter: ModelAdapter,
    outcome: Outcome,
    pairs: Sequence[AlignedPair],
    edges: Sequence[Edge],
    *,
    batch_size: int | None,
) -> tuple[Sweep, tuple[tuple[Intake, ...], ...]]:
    """A checked sweep with one configuration per edge, and each edge's intakes the sender reaches."""
    architecture = _stream_model(adapter)
    parsed: dict[str, tuple[Intake, ...]] = {}
    for sender, receiver, _ in edges:
        if isinstance(sender, Site) and sender.component not in SENDERS:
            raise InterventionError(
                f"sender {sender.name!r} does not write into the residual stream; senders are {list(SENDERS)} sites"
            )
        if receiver not in parsed:
            parsed[receiver] = parse_receiver(receiver, architecture)
    sweep = prepare(
        adapter, outcome, pairs, [(sender, position) for sender, _, position in edges], batch_size=batch_size
    )
    intakes = tuple(
        tuple(intake for intake in parsed[receiver] if reaches(sender, intake, architecture))
        for sender, receiver, _ in edges
    )
    return sweep, intakes


def parse_receiver(name: str, architecture: Architecture) -> tuple[Intake, ...]:
    """The intakes a receiver name covers, wildcards expanded; InterventionError on a bad name."""
    if not isinstance(name, str):
        raise InterventionError(f"receivers are names, got {name!r}; they are {_RECEIVER_FORMS}")
    intakes: list[Intake] = []
    for part in name.split("+"):
        match = _RECEIVER.fullmatch(part)
        if match is None:
            raise InterventionError(
                f"receiver {part!r} (in {name!r}) is not a receiver name; they are {_RECEIVER_FORMS}"
            )
        head_kind, layer, head, mlp, mlp_layer, final = match.groups()
        if final:
            intakes.append(Intake("final", architecture.n_layers))
            continue
        kind = _KIND[head_kind or mlp]
        for number in _indices(layer or mlp_layer, architecture.n_layers, part, "layer"):
            if mlp:
                intakes.append(Intake(kind, number))
                continue
            heads = architecture.point_heads(kind)
            intakes += [Intake(kind, number, index) for index in _indices(head, heads, part, "head")]
    return tuple(dict.fromkeys(intakes))


def reaches(sender: Site, intake: Intake, architecture: Architecture) -> bool:
    """Whether `intake` reads the stream after `sender` writes it.

    Block L reads at step 2L (attention; a parallel block's MLP too) and 2L + 1 (a
    sequential block's MLP); its attention writes at 2L + 1, its MLP at 2L + 2; resid_pre.L
    is the stream read at 2L; the final read is at step 2 n_layers.
    """
    if intake.kind == "final":
        read = 2 * architecture.n_layers
    else:
        read = 2 * intake.layer + (intake.kind == "mlp" and architecture.residual == "sequential")
    write = 2 * sender.layer + {"resid_pre": 0, "head": 1, "attn_out": 1, "mlp_out": 2}[sender.component]
    return read >= write


def sender_change(
    runner: StepRunner, values: PairValues, plan: Plan, rows: np.ndarray, owner: np.ndarray, pair: np.ndarray
) -> torch.Tensor:
    """(pairs, hidden): what each row's sender adds to the stream in the source minus the destination.

    A head's change is its z slice's change through the output projection (whose bias cancels).
    """
    kind, layer = point = plan.points[plan.point[rows[0]]]
    change = values.read(plan, rows, owner, pair, point, "source") - values.read(
        plan, rows, owner, pair, point, "destination"
    )
    if kind != "z":
        return change
    heads = runner.architecture.n_heads
    z = change.new_zeros((len(pair), heads, change.shape[-1]))
    z[torch.arange(len(pair), device=z.device), as_index(plan.head[rows][owner], z.device)] = change
    z = z.view(len(pair), -1)
    return runner.o_proj(layer, z) - runner.o_proj(layer, torch.zeros_like(z))


def with_receivers(frame: pd.DataFrame, receivers: Sequence[str]) -> pd.DataFrame:
    """A sweep frame with each row's receiver name inserted before its value column."""
    frame.insert(len(frame.columns) - 1, "receiver", list(receivers) * (len(frame) // max(len(receivers), 1)))
    return frame


class _PathEngine(_Engine):
    """The patching engine with rows that start at their first receiver and let the sender's
    change into the receivers' reads."""

    def __init__(
        self, sweep: Sweep, intakes: tuple[tuple[Intake, ...], ...], progress: Callable[[int], None] | None
    ) -> None:
        self.intakes = intakes
        n_layers = sweep.architecture.n_layers
        # The first block a configuration's run computes (n_layers: only the final read; one
        # more: no receiver at all).
        self.first = np.array([min((intake.layer for intake in each), default=n_layers + 1) for each in intakes])
        super().__init__(sweep, progress)

    def _points(self) -> tuple[Point, ...]:
        n_layers = self.architecture.n_layers
        lowest = int(self.first.min(initial=n_layers))
        streams = [("stream", layer) for layer in range(min(lowest, n_layers), n_layers + 1)]
        return tuple(dict.fromkeys([*self.sweep.site_points, *streams]))

    def first_blocks(self, plan: Plan) -> np.ndarray:
        return np.minimum(self.first[plan.config], self.architecture.n_layers)

    def _groups(self, plan: Plan) -> np.ndarray:
        return plan.point * (self.architecture.n_layers + 2) + self.first[plan.config]

    def _changing(self, plan: Plan, pairs: PairValues, texts: list[tuple[int, ...]]) -> np.ndarray:
        unreachable = self.first[plan.config] > self.architecture.n_layers
        self.work["paths_unreachable"] += int(unreachable.sum())
        owner, _ = plan.pairs_of(np.arange(len(plan.result)))
        return super()._changing(plan, pairs, texts) & ~unreachable[owner]

    def _run(self, state: _State, plan: Plan, rows: np.ndarray) -> np.ndarray:
        n_layers = self.architecture.n_layers
        dest = self._tensor(plan.destination[rows])
        start = int(plan.start[rows].min()) if self.architecture.causal else 0
        end = int(state.lengths[dest].max())
        read = state.read[dest] - start
        owner, pair = plan.pairs_of(rows)
        change = sender_change(self.runner, state.pairs, plan, rows, owner, pair)
        delta = change.new_zeros((len(rows), end - start, change.shape[-1]))
        delta[self._tensor(owner), self._tensor(plan.d[pair] - start)] = change
        edit = _Receivers.of(self, plan, rows, delta)
        first = int(self.first[plan.config[rows[0]]])
        hidden = state.activations[("stream", first)][dest, start:end]
        every = torch.arange(len(rows), device=self.device)[:, None]
        for layer in range(first, n_layers):
            hidden = self._block(state, layer, hidden, dest, start, end, read if layer == n_layers - 1 else None, edit)
        if first == n_layers:
            hidden = hidden[every, read]
        return self._outcomes(hidden + delta[every, read] * edit.final[:, None, None], read)


@dataclass(frozen=True)
class _Receivers(_BlockEdit):
    """A stack's receivers: which rows' heads (per kind and layer), MLPs and final reads see
    the stream plus `delta` (rows, positions, hidden)."""

    runner: StepRunner
    delta: torch.Tensor
    heads: dict[tuple[str, int], torch.Tensor]
    mlps: dict[int, torch.Tensor]
    final: torch.Tensor

    @classmethod
    def of(cls, engine: _PathEngine, plan: Plan, rows: np.ndarray, delta: torch.Tensor) -> _Receivers:
        architecture, device = engine.architecture, engine.device
        heads: dict[tuple[str, int], torch.Tensor] = {}
        mlps: dict[int, torch.Tensor] = {}
        final = torch.zeros(len(rows), dtype=delta.dtype, device=device)
        for number, row in enumerate(rows):
            for intake in engine.intakes[plan.config[row]]:
                if intake.kind == "final":
                    final[number] = 1
                elif intake.kind == "mlp":
                    mlps.setdefault(intake.layer, torch.zeros(len(rows), dtype=torch.bool, device=device))[number] = (
                        True
                    )
                else:
                    shape = (len(rows), architecture.point_heads(intake.kind))
                    mask = heads.setdefault(
                        (intake.kind, intake.layer), torch.zeros(shape, dtype=torch.bool, device=device)
                    )
                    mask[number, intake.head] = True
        return cls(engine.runner, delta, heads, mlps, final)

    def projections(
        self, layer: int, hidden: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        masks = [self.heads.get((kind, layer)) for kind in "qkv"]
        if all(mask is None for mask in masks):
            return q, k, v
        moved = self.runner.project(layer, hidden + self.delta)
        q, k, v = (
            part if mask is None else torch.where(mask[:, :, None, None], shifted, part)
            for part, shifted, mask in zip((q, k, v), moved, masks)
        )
        return q, k, v

    def mlp_input(
        self, layer: int, resid: torch.Tensor, middle: torch.Tensor, x: torch.Tensor, read: torch.Tensor | None
    ) -> torch.Tensor:
        mask = self.mlps.get(layer)
        if mask is None:
            return x
        delta = self.delta if read is None else self.delta[torch.arange(len(x), device=x.device)[:, None], read]
        return torch.where(mask[:, None, None], self.runner.mlp_read(layer, resid + delta, middle + delta), x)


def _stream_model(adapter: ModelAdapter) -> Architecture:
    """The adapter's architecture; InterventionError when its stream is not a sum of block outputs."""
    architecture = architecture_of(adapter.model)
    if architecture.residual == "post_norm":
        raise InterventionError(
            f"path patching needs a residual stream that blocks add to, but this {architecture.model_type} "
            "model normalises it after every block (post-norm), so a sender's change cannot be added to one "
            "reader's stream alone; patch sites with patch_effects instead"
        )
    return architecture


def _indices(text: str, count: int, name: str, what: str) -> range:
    """Every index for "*", else the one given, checked to be below `count`."""
    if text == "*":
        return range(count)
    if int(text) >= count:
        raise InterventionError(
            f"receiver {name!r}: {what} {text} is out of range; there are {count} (0 to {count - 1})"
        )
    return range(int(text), int(text) + 1)


def all_edges(senders: Sequence[Site], receivers: Sequence[str], positions: Sequence[str]) -> list[Edge]:
    """Every (sender, receiver, position), sender-major; InterventionError for a bare value or a repeat."""
    configurations(senders, positions)
    if isinstance(receivers, str):
        raise InterventionError(
            f"receivers must be a sequence of names, got the string {receivers!r}; wrap it in a list"
        )
    repeated = sorted({name for name in receivers if list(receivers).count(name) > 1})
    if repeated:
        raise InterventionError(f"receivers must be distinct; repeated: {repeated}")
    return [(sender, receiver, position) for sender in senders for receiver in receivers for position in positions]
