"""Exact activation patching, many patches per stacked forward, each starting mid-model.

For a patch at layer L the destination run is unchanged below L, and in a causal model
unchanged at positions before the earliest patched one. So each patch row starts from
the destination's cached residual stream at L, recomputes only positions from its
earliest patched one (attending to the destination's cached keys and values for the
earlier ones), and in the last block computes only the positions the outcome reads.
Rows of one layer and component, sorted by start position, are stacked into moderate
batches. Patches that would write the value already there are not run at all.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
import torch

from interventions._adapter import ModelAdapter
from interventions._alignment import AlignedPair
from interventions._backoff import halving, in_batches
from interventions._capture import Trace, capture
from interventions._outcomes import Outcome
from interventions._prefix import common_prefix
from interventions._runners import BlockRunner
from interventions._sites import Point, Site
from interventions._sweep import (
    _MAX_ROWS,
    Plan,
    Sweep,
    as_index,
    configurations,
    prepare,
    token_budget,
)


@dataclass(frozen=True)
class PatchResult:
    """Outcomes of patched destination runs, beside the unpatched runs of both arms.

    `patched` has one row per (unit, site, position): unit (index into the pairs), site,
    component, layer, head (nullable), position, outcome. `work` counts what was run:
    `capture_forwards` (full forwards of distinct texts), `layer_forwards` (one row through
    one block, capture included), `position_layers` (block positions computed),
    `kv_layer_passes` (key/value projections of cached destinations), `batches`,
    `patches`, and `patches_skipped_identical` (patches that would write the activation
    already there, whose outcome is the destination's).
    """

    destination: np.ndarray
    source: np.ndarray
    patched: pd.DataFrame
    work: Mapping[str, int]


def patch_effects(
    adapter: ModelAdapter,
    outcome: Outcome,
    pairs: Sequence[AlignedPair],
    sites: Sequence[Site],
    positions: Sequence[str],
    *,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> PatchResult:
    """The outcome of each pair's destination run with one site patched at one position.

    For every pair, site and position: the destination's activation at the site and the
    position's destination tokens is replaced by the source run's activation at the
    aligned source tokens; the outcome is read as `evaluate_outcomes` reads it. Equals a
    plain one-patch-per-forward loop up to float rounding. `batch_size` caps the patch
    rows per stacked forward (default: sized to free memory on CUDA, to a fixed number
    of positions on CPU);
    `progress(k)` is called as k more (unit, site, position) results are done.
    """
    sweep = prepare(adapter, outcome, pairs, configurations(sites, positions), batch_size=batch_size)
    return _Engine(sweep, progress).run()


class _Engine:
    """Runs one sweep: per chunk of units, capture both runs, then the stacked patch rows."""

    def __init__(self, sweep: Sweep, progress: Callable[[int], None] | None) -> None:
        self.sweep = sweep
        self.architecture = sweep.architecture
        self.runner = BlockRunner(sweep.adapter.model, sweep.architecture)
        self.device = sweep.adapter.device
        self.progress = progress
        self.work: Counter[str] = Counter()
        # Rows per capture batch and per stack that fit after an out-of-memory error.
        self.capture_rows = self.stack_rows = sys.maxsize
        n_layers = self.architecture.n_layers
        sites = sweep.site_points
        lowest = min((index for _, index in sites), default=n_layers)
        # Besides the sites: the residual stream a patch starts from and that gives the
        # keys and values of later blocks, and attn_out where an mlp_out patch needs it.
        self.points = tuple(
            dict.fromkeys(
                [
                    *sites,
                    *(("stream", layer) for layer in range(lowest, n_layers)),
                    *(("attn_out", index) for kind, index in sites if kind == "mlp_out"),
                ]
            )
        )

    def run(self) -> PatchResult:
        sweep = self.sweep
        n_units = len(sweep.pairs)
        values = np.full(n_units * len(sweep.configurations), np.nan)
        destination, source = np.empty(n_units), np.empty(n_units)
        with torch.inference_mode():
            for units in sweep.unit_chunks(self._bytes_per_unit()):
                self._chunk(units, values, destination, source)
        return PatchResult(
            destination=destination,
            source=source,
            patched=sweep.frame("outcome", values),
            work=MappingProxyType(dict(self.work)),
        )

    def _bytes_per_unit(self) -> int:
        """Memory of one unit's captured activations (two runs) and key/value cache."""
        architecture = self.architecture
        hidden = self.sweep.adapter.model.config.hidden_size
        element = torch.finfo(self.sweep.adapter.dtype).bits // 8
        kv = 2 * architecture.n_layers * architecture.n_kv_heads * architecture.d_head
        return element * self.sweep.max_length * (2 * hidden * len(self.points) + kv)

    def _chunk(self, units: np.ndarray, values: np.ndarray, destination: np.ndarray, source: np.ndarray) -> None:
        """Fill the outcomes of `units`: capture their texts, skip no-op patches, run the rest."""
        sweep, n_layers = self.sweep, self.architecture.n_layers
        texts, dest_text, src_text = sweep.texts(units)
        batch = sweep.batch_size or max(1, min(64, token_budget(sweep) // sweep.max_length))
        tried = min(batch, len(texts), self.capture_rows)
        trace, fitted = halving(
            tried,
            lambda size: capture(
                sweep.adapter,
                self.architecture,
                sweep.reader,
                texts,
                self.points,
                batch_size=size,
            ),
            what="texts",
        )
        self.capture_rows = fitted if fitted < tried else self.capture_rows
        self.work["capture_forwards"] += len(texts)
        self.work["layer_forwards"] += len(texts) * n_layers
        self.work["position_layers"] += int(trace.lengths.sum()) * n_layers
        destination[units] = trace.outcomes[dest_text]
        source[units] = trace.outcomes[src_text]
        plan = sweep.plan(units, dest_text, src_text)
        identical = self._identical(plan, trace, texts)
        values[plan.result[identical]] = trace.outcomes[plan.destination[identical]]
        self.work["patches"] += len(plan.result)
        self.work["patches_skipped_identical"] += int(identical.sum())
        self._report(int(identical.sum()))
        active = np.flatnonzero(~identical)
        state = _State.build(self, trace, plan, active)
        for rows in self._batches(plan, active, trace.lengths):
            self.stack_rows = in_batches(
                rows,
                self.stack_rows,
                lambda part: self._stack(state, plan, part, values),
                what="patch rows",
            )

    def _stack(self, state: _State, plan: Plan, rows: np.ndarray, values: np.ndarray) -> None:
        values[plan.result[rows]] = self._run(state, plan, rows)
        self.work["batches"] += 1
        self._report(len(rows))

    def _report(self, count: int) -> None:
        if self.progress is not None and count:
            self.progress(count)

    def _identical(self, plan: Plan, trace: Trace, texts: list[tuple[int, ...]]) -> np.ndarray:
        """Rows whose source values equal the destination's values at the patched tokens.

        In a causal model an activation at position p depends only on tokens up to p, so
        in-place pairs before the texts' first differing token are equal by construction;
        other rows are compared value by value.
        """
        same = np.zeros(len(plan.result), dtype=bool)
        if self.architecture.causal and len(same):
            runs = list(zip(plan.destination.tolist(), plan.source.tolist()))
            prefix = {run: common_prefix(texts[run[0]], texts[run[1]]) for run in set(runs)}
            in_place = np.logical_and.reduceat(plan.d == plan.s, plan.offsets)
            reach = np.maximum.reduceat(plan.d, plan.offsets)
            same = in_place & (reach < np.array([prefix[run] for run in runs]))
        for number, point in enumerate(plan.points):
            for piece in plan.pieces(np.flatnonzero(~same & (plan.point == number))):
                same[piece] = self._equal_rows(plan, trace, piece, point)
        return same

    def _equal_rows(self, plan: Plan, trace: Trace, rows: np.ndarray, point: Point) -> np.ndarray:
        """For each row: do its source values equal the destination's, pair by pair?"""
        owner, pair = plan.pairs_of(rows)
        activations = trace.activations[point]
        dest = activations[self._tensor(plan.destination[rows][owner]), self._tensor(plan.d[pair])]
        src = activations[self._tensor(plan.source[rows][owner]), self._tensor(plan.s[pair])]
        if point[0] == "z":
            heads = self.architecture.n_heads
            by_head = (dest.view(len(pair), heads, -1) == src.view(len(pair), heads, -1)).all(-1)
            equal = by_head.gather(1, self._tensor(plan.head[rows][owner])[:, None])[:, 0]
        else:
            equal = (dest == src).all(-1)
        starts = np.cumsum(plan.counts[rows]) - plan.counts[rows]
        return np.logical_and.reduceat(equal.cpu().numpy(), starts)

    def _batches(self, plan: Plan, active: np.ndarray, lengths: np.ndarray) -> Iterator[np.ndarray]:
        """Stacks of rows sharing a point, in start order, within the row and position limits.

        A stack computes positions from its earliest start to its longest text, so sorting
        by start keeps the positions each row did not need few.
        """
        starts = plan.start[active] if self.architecture.causal else np.zeros_like(active)
        ends = lengths[plan.destination[active]]
        order = np.lexsort((ends, starts, plan.point[active]))
        limit = self.sweep.batch_size or _MAX_ROWS
        positions = np.inf if self.sweep.batch_size else token_budget(self.sweep)
        batch: list[int] = []
        span = (0, 0)  # the stack's earliest start and latest end
        for row, start, end in zip(active[order], starts[order], ends[order]):
            grown = (span[0], max(span[1], end)) if batch else (start, end)
            if batch and (
                plan.point[row] != plan.point[batch[0]]
                or len(batch) == limit
                or (len(batch) + 1) * (grown[1] - grown[0]) > positions
            ):
                yield np.array(batch)
                batch, grown = [], (start, end)
            batch.append(row)
            span = grown
        if batch:
            yield np.array(batch)

    def _run(self, state: _State, plan: Plan, rows: np.ndarray) -> np.ndarray:
        """Outcomes of one stack of patch rows that share a point."""
        n_layers = self.architecture.n_layers
        dest = self._tensor(plan.destination[rows])
        start = int(plan.start[rows].min()) if self.architecture.causal else 0
        end = int(state.lengths[dest].max())
        read = state.read[dest] - start
        hidden, layer = self._patched(state, plan, rows, dest, start, end, read)
        for number in range(layer, n_layers):
            last = number == n_layers - 1
            hidden = self._block(state, number, hidden, dest, start, end, read if last else None)
        logits = self.runner.readout(hidden)
        at_last = torch.full((len(rows),), read.shape[1] - 1, device=self.device)
        return self.sweep.reader.read(logits.float(), at_last).double().cpu().numpy()

    def _patched(
        self,
        state: _State,
        plan: Plan,
        rows: np.ndarray,
        dest: torch.Tensor,
        start: int,
        end: int,
        read: torch.Tensor,
    ) -> tuple[torch.Tensor, int]:
        """(residual stream after the patch, the first block still to run) of a stack.

        The stream is (rows, positions start..end-1, width), or only the read positions once
        the last block is done. A patch inside block L needs no attention: the block's input
        is the destination's, so its cached z or attn_out are patched and the block is
        finished position by position.
        """
        runner, n_layers = self.runner, self.architecture.n_layers
        kind, layer = point = plan.points[plan.point[rows[0]]]
        owner, pair = plan.pairs_of(rows)
        at = (self._tensor(owner), self._tensor(plan.d[pair] - start))
        values = self._values(state, plan, rows, owner, pair, point)
        every = torch.arange(len(rows), device=self.device)[:, None]

        def cached(where: Point) -> torch.Tensor:
            window = state.activations[where][dest, start:end]
            if where == point:
                window[at] = values
            return window

        if kind == "stream":
            hidden = cached(point)
            return (hidden[every, read], layer) if layer == n_layers else (hidden, layer)
        parts = [cached(("stream", layer)), cached((kind if kind == "z" else "attn_out", layer))]
        if kind == "mlp_out":
            parts.append(cached(point))
        if layer == n_layers - 1:
            parts = [part[every, read] for part in parts]
        attn = runner.o_proj(layer, parts[1]) if kind == "z" else parts[1]
        x, middle = runner.mlp_input(layer, parts[0], attn)
        mlp_out = parts[2] if kind == "mlp_out" else runner.mlp(layer, x)
        hidden = runner.combine(layer, middle, mlp_out)
        self._count(hidden)
        return hidden, layer + 1

    def _values(
        self,
        state: _State,
        plan: Plan,
        rows: np.ndarray,
        owner: np.ndarray,
        pair: np.ndarray,
        point: Point,
    ) -> torch.Tensor:
        """The activations to write: the source's, or for a head the destination's z with
        that head's slice from the source."""
        activations = state.activations[point]
        source = activations[self._tensor(plan.source[rows][owner]), self._tensor(plan.s[pair])]
        if point[0] != "z":
            return source
        destination = activations[self._tensor(plan.destination[rows][owner]), self._tensor(plan.d[pair])]
        head_of = torch.arange(source.shape[-1], device=self.device) // self.architecture.d_head
        chosen = head_of[None, :] == self._tensor(plan.head[rows][owner])[:, None]
        return torch.where(chosen, source, destination)

    def _block(
        self,
        state: _State,
        layer: int,
        hidden: torch.Tensor,
        dest: torch.Tensor,
        start: int,
        end: int,
        read: torch.Tensor | None,
    ) -> torch.Tensor:
        """One block over positions start..end-1, queries only at `read` when given.

        Keys and values of positions before `start` are the destination's, from the cache.
        """
        runner = self.runner
        positions = torch.arange(start, end, device=self.device)
        q, k, v = runner.qkv(layer, hidden, positions)
        if start > 0:
            keys, values = state.kv[layer]
            cached = state.kv_row[dest]
            k = torch.cat([keys[cached, :, :start], k], dim=2)
            v = torch.cat([values[cached, :, :start], v], dim=2)
        if read is None:
            queries = positions.expand(len(hidden), -1)
        else:
            every = torch.arange(len(hidden), device=self.device)[:, None]
            q = q[every, :, read].transpose(1, 2)
            hidden = hidden[every, read]
            queries = read + start
        keys_at = torch.arange(end, device=self.device)[None, None, :]
        mask = keys_at < state.lengths[dest][:, None, None]
        if self.architecture.causal:
            mask = mask & (keys_at <= queries[:, :, None])
        window = runner.window(layer)
        if window is not None:
            mask = mask & (queries[:, :, None] - keys_at < window)
        attn = runner.o_proj(layer, runner.attend(layer, q, k, v, mask[:, None]))
        x, middle = runner.mlp_input(layer, hidden, attn)
        hidden = runner.combine(layer, middle, runner.mlp(layer, x))
        self._count(hidden)
        return hidden

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return as_index(array, self.device)

    def _count(self, hidden: torch.Tensor) -> None:
        """Count one block's work on a stack: rows through it, and positions computed."""
        self.work["layer_forwards"] += hidden.shape[0]
        self.work["position_layers"] += hidden.shape[0] * hidden.shape[1]


@dataclass(frozen=True)
class _State:
    """A chunk's tensors on the model's device: activations, lengths, the positions each
    destination is read at, and (causal models) each destination's keys and values."""

    activations: dict[Point, torch.Tensor]
    lengths: torch.Tensor
    read: torch.Tensor
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]]
    kv_row: torch.Tensor

    @classmethod
    def build(cls, engine: _Engine, trace: Trace, plan: Plan, active: np.ndarray) -> _State:
        device, architecture = engine.device, engine.architecture
        lengths = torch.as_tensor(trace.lengths, device=device)
        if architecture.decision == "first":
            read = torch.zeros((len(lengths), 1), dtype=torch.long, device=device)
        else:
            # A causal LM outcome may read the appended continuation's positions too.
            extra = len(engine.sweep.reader.suffix) * (architecture.readout.task == "causal-lm")
            read = lengths[:, None] - 1 - extra + torch.arange(extra + 1, device=device)
        kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        kv_row = torch.full((len(lengths),), -1, dtype=torch.long, device=device)
        first_block = np.array([index + (kind != "stream") for kind, index in plan.points], dtype=np.int64)[
            plan.point[active]
        ]
        reusing = first_block[plan.start[active] > 0] if architecture.causal else first_block[:0]
        if len(reusing):
            destinations = as_index(np.unique(plan.destination[active]), device)
            kv_row[destinations] = torch.arange(len(destinations), device=device)
            positions = torch.arange(int(trace.lengths.max()), device=device)
            for layer in range(int(reusing.min()), architecture.n_layers):
                stream = trace.activations[("stream", layer)][destinations]
                kv[layer] = engine.runner.qkv(layer, stream, positions)[1:]
                engine.work["kv_layer_passes"] += len(destinations)
        return cls(trace.activations, lengths, read, kv, kv_row)
