"""Exact activation patching, many patches per stacked forward, each starting mid-model.

For a patch at layer L the destination run is unchanged below L, and in a causal model
unchanged at positions before the earliest patched one. So each patch row starts from
the destination's cached residual stream at L, recomputes only positions from its
earliest patched one (attending to the destination's cached keys and values for the
earlier ones), and in the last block computes only the positions the outcome reads.
Rows of one layer and component, sorted by start position, are stacked into moderate
batches. Patches that would write the value already there are not run at all.

A patch after a block's attention (a head's z, attn_out, resid_mid, mlp_out) reuses that
block's cached attention; a patch inside it (a query, key, value or pattern) reruns the
block's attention as separate steps (`StepRunner`) with the patched tensor written in.
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
from interventions._sites import AFTER_ATTENTION, HEAD_KINDS, Architecture, Point, Site
from interventions._steps import StepRunner
from interventions._sweep import (
    _MAX_ROWS,
    PairValues,
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
    `patches`, `patches_skipped_identical` (patches that would write the activation
    already there, whose outcome is the destination's) and `pairs_skipped_identical`
    (aligned token pairs left out of a patch because they would write the value there).
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
    engine = _Engine(sweep, progress)
    values, destination, source = engine.run()
    return PatchResult(
        destination=destination,
        source=source,
        patched=sweep.frame("outcome", values),
        work=MappingProxyType(dict(engine.work)),
    )


class _Engine:
    """Runs one sweep: per chunk of units, capture both runs, then the stacked patch rows."""

    def __init__(self, sweep: Sweep, progress: Callable[[int], None] | None) -> None:
        self.sweep = sweep
        self.architecture = sweep.architecture
        self.runner = StepRunner(sweep.adapter.model, sweep.architecture)
        self.device = sweep.adapter.device
        self.progress = progress
        self.work: Counter[str] = Counter()
        # Rows per capture batch and per stack that fit after an out-of-memory error.
        self.capture_rows = self.stack_rows = sys.maxsize
        self.points = self._points()

    def _points(self) -> tuple[Point, ...]:
        """What to capture: the sites, the residual stream a patch starts from and that gives
        the keys and values of later blocks, and the middle stream an mlp_out patch needs."""
        sites = self.sweep.site_points
        n_layers = self.architecture.n_layers
        lowest = min((index for _, index in sites), default=n_layers)
        return tuple(
            dict.fromkeys(
                [
                    *sites,
                    *(("stream", layer) for layer in range(lowest, n_layers)),
                    *(("mid", index) for kind, index in sites if kind == "mlp_out"),
                ]
            )
        )

    def run(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(each configuration row's outcome, unit-major; each unit's destination and source outcome)."""
        n_units = len(self.sweep.pairs)
        values = np.full(n_units * len(self.sweep.configurations), np.nan)
        destination, source = np.empty(n_units), np.empty(n_units)
        with torch.inference_mode():
            for units in self.sweep.unit_chunks(self._bytes_per_unit()):
                self._chunk(units, values, destination, source)
        return values, destination, source

    def _bytes_per_unit(self) -> int:
        """Memory of one unit's captured activations (two runs) and key/value cache."""
        architecture = self.architecture
        element = torch.finfo(self.sweep.adapter.dtype).bits // 8
        kv = element * 2 * architecture.n_layers * architecture.n_kv_heads * architecture.d_head
        return self.sweep.max_length * (2 * self.sweep.position_bytes(self.points) + kv)

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
        pairs = self._pair_values(trace, units)
        changing = self._changing(plan, pairs, texts)
        self.work["pairs_skipped_identical"] += int((~changing).sum())
        plan = plan.keeping(changing)
        identical = plan.counts == 0
        values[plan.result[identical]] = trace.outcomes[plan.destination[identical]]
        self.work["patches"] += len(plan.result)
        self.work["patches_skipped_identical"] += int(identical.sum())
        self._report(int(identical.sum()))
        active = np.flatnonzero(~identical)
        state = _State.build(self, trace, pairs, plan, active)
        for rows in self._batches(plan, active, trace.lengths):
            self.stack_rows = in_batches(
                rows,
                self.stack_rows,
                lambda part: self._stack(state, plan, part, values),
                what="patch rows",
            )

    def _pair_values(self, trace: Trace, units: np.ndarray) -> PairValues:
        """The chunk's activations read pair by pair (with key targets when patterns are patched)."""
        targets = None
        if any(kind == "pattern" for kind, _ in self.points):
            targets = as_index(self.sweep.key_targets(units, int(trace.lengths.max())), self.device)
        return PairValues(self.architecture, trace.activations, trace.activations, targets)

    def first_blocks(self, plan: Plan) -> np.ndarray:
        """The first block each row's run computes: a patch's own block, or the next one when
        the patch is after the block's attention (which is then not rerun)."""
        first = [index + (kind in AFTER_ATTENTION) for kind, index in plan.points]
        return np.array(first, dtype=np.int64)[plan.point]

    def _stack(self, state: _State, plan: Plan, rows: np.ndarray, values: np.ndarray) -> None:
        values[plan.result[rows]] = self._run(state, plan, rows)
        self.work["batches"] += 1
        self._report(len(rows))

    def _report(self, count: int) -> None:
        if self.progress is not None and count:
            self.progress(count)

    def _changing(self, plan: Plan, pairs: PairValues, texts: list[tuple[int, ...]]) -> np.ndarray:
        """For each pair of each row: does the source's value differ from the destination's?

        A pair that would write the value already there changes nothing and is dropped (a
        row left with none is not run). In a causal model an activation at position p depends
        only on tokens up to p, so in-place pairs before the texts' first differing token are
        equal by construction (an attention row also needs its keys laid in place, so it is
        always compared); other pairs are compared value by value.
        """
        same = np.zeros(len(plan.d), dtype=bool)
        if self.architecture.causal and len(same):
            runs = list(zip(plan.destination.tolist(), plan.source.tolist()))
            prefix = {run: common_prefix(texts[run[0]], texts[run[1]]) for run in set(runs)}
            owner, _ = plan.pairs_of(np.arange(len(plan.result)))
            pattern = np.array([kind == "pattern" for kind, _ in plan.points])[plan.point]
            before = plan.d < np.array([prefix[run] for run in runs], dtype=np.int64)[owner]
            same = (plan.d == plan.s) & before & ~pattern[owner]
        known = np.logical_and.reduceat(same, plan.offsets) if len(same) else np.zeros(0, dtype=bool)
        for number, point in enumerate(plan.points):
            for piece in plan.pieces(np.flatnonzero(~known & (plan.point == number))):
                owner, pair = plan.pairs_of(piece)
                source = pairs.read(plan, piece, owner, pair, point, "source")
                equal = (source == pairs.read(plan, piece, owner, pair, point, "destination")).all(-1)
                same[pair] |= equal.cpu().numpy()
        return ~same

    def _groups(self, plan: Plan) -> np.ndarray:
        """Each row's group: only rows of one group share a stack (here, rows of one point)."""
        return plan.point

    def _batches(self, plan: Plan, active: np.ndarray, lengths: np.ndarray) -> Iterator[np.ndarray]:
        """Stacks of rows of one group, in start order, within the row and position limits.

        A stack computes positions from its earliest start to its longest text, so sorting
        by start keeps the positions each row did not need few.
        """
        group = self._groups(plan)
        starts = plan.start[active] if self.architecture.causal else np.zeros_like(active)
        ends = lengths[plan.destination[active]]
        order = np.lexsort((ends, starts, group[active]))
        limit = self.sweep.batch_size or _MAX_ROWS
        positions = np.inf if self.sweep.batch_size else token_budget(self.sweep)
        batch: list[int] = []
        span = (0, 0)  # the stack's earliest start and latest end
        for row, start, end in zip(active[order], starts[order], ends[order]):
            grown = (span[0], max(span[1], end)) if batch else (start, end)
            if batch and (
                group[row] != group[batch[0]]
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
        return self._outcomes(hidden, read)

    def _outcomes(self, hidden: torch.Tensor, read: torch.Tensor) -> np.ndarray:
        """Outcomes from the last block's output at the read positions."""
        logits = self.runner.readout(hidden)
        at_last = torch.full((len(hidden),), read.shape[1] - 1, device=self.device)
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
        the last block is done. A patch inside block L's attention reruns block L with the
        patched query, key, value or pattern written in. A patch after it needs no
        attention: the block's input is the destination's, so its cached z, attn_out or
        middle stream are patched and the block is finished at the patched positions only
        (elsewhere its output is the destination's cached stream).
        """
        n_layers = self.architecture.n_layers
        kind, layer = point = plan.points[plan.point[rows[0]]]
        owner, pair = plan.pairs_of(rows)
        patch = _Patch(
            kind=kind,
            row=self._tensor(owner),
            at=self._tensor(plan.d[pair] - start),
            head=self._tensor(plan.head[rows][owner]),
            values=state.pairs.read(plan, rows, owner, pair, point, "source"),
        )
        last = layer == n_layers - 1
        every = torch.arange(len(rows), device=self.device)[:, None]

        def cached(where: Point) -> torch.Tensor:
            """The stack's window of a cached point, patched."""
            window = state.activations[where][dest, start:end]
            if where == point:
                patch.write(window, self.architecture)
            return window

        if kind == "stream":
            hidden = cached(point)
            return (hidden[every, read], layer) if layer == n_layers else (hidden, layer)
        if kind not in AFTER_ATTENTION:
            hidden = cached(("stream", layer))
            return self._block(state, layer, hidden, dest, start, end, read if last else None, patch), layer + 1
        inputs = [("stream", layer), ("mid", layer) if kind == "mlp_out" else point]
        if last:  # only the read positions
            hidden = self._finish(layer, kind, *[cached(where)[every, read] for where in (*inputs, point)])
            self._count(hidden)
            return hidden, layer + 1
        at = (dest[patch.row], patch.at + start)

        def gathered(where: Point) -> torch.Tensor:
            """A cached point at the patched tokens only, patched: (pairs, 1, width)."""
            values = state.activations[where][at]
            if where == point:
                patch.write(values, self.architecture, gathered=True)
            return values[:, None]

        parts = [gathered(where) for where in (*inputs, point)]
        hidden = state.activations[("stream", layer + 1)][dest, start:end]
        hidden[patch.row, patch.at] = self._finish(layer, kind, *parts)[:, 0]
        self.work["layer_forwards"] += len(rows)
        self.work["position_layers"] += len(pair)
        return hidden, layer + 1

    def _finish(
        self, layer: int, kind: str, resid: torch.Tensor, given: torch.Tensor, patched: torch.Tensor
    ) -> torch.Tensor:
        """Block L's output from its input stream, past its attention: `given` is the patched z
        or attn_out, or the middle stream (patched, or cached for an mlp_out patch); `patched`
        the patched activation itself."""
        runner = self.runner
        if kind in ("mid", "mlp_out"):
            middle = given
            x = runner.mlp_read(layer, resid, middle) if kind == "mid" else None
        else:
            x, middle = runner.mlp_input(layer, resid, runner.o_proj(layer, given) if kind == "z" else given)
        mlp_out = patched if kind == "mlp_out" else runner.mlp(layer, x)
        return runner.combine(layer, middle, mlp_out)

    def _block(
        self,
        state: _State,
        layer: int,
        hidden: torch.Tensor,
        dest: torch.Tensor,
        start: int,
        end: int,
        read: torch.Tensor | None,
        edit: _BlockEdit | None = None,
    ) -> torch.Tensor:
        """One block over positions start..end-1, queries only at `read` when given.

        Keys and values of positions before `start` are the destination's, from the cache.
        `edit` changes the block's steps (queries, keys and values; probabilities; the
        MLP's input) for a patch or for path patching's receivers.
        """
        runner = self.runner
        edit = edit or _BlockEdit()
        positions = torch.arange(start, end, device=self.device)
        q, k, v = edit.projections(layer, hidden, *runner.project(layer, hidden))
        q, k = runner.rotate(q, k, positions)
        if start > 0:
            cached = state.kv_row[dest]
            k, v = (_after_cached(kept, cached, start, new) for kept, new in zip(state.kv[layer], (k, v)))
        every = torch.arange(len(hidden), device=self.device)[:, None]
        resid = hidden
        if read is None:
            queries = positions.expand(len(hidden), -1)
        else:
            q = q[every, :, read].transpose(1, 2)
            resid = hidden[every, read]
            queries = read + start
        keys_at = torch.arange(end, device=self.device)[None, None, :]
        mask = keys_at < state.lengths[dest][:, None, None]
        if self.architecture.causal:
            mask = mask & (keys_at <= queries[:, :, None])
        window = runner.window(layer)
        if window is not None:
            mask = mask & (queries[:, :, None] - keys_at < window)
        if edit.pattern(layer):
            weights = edit.probabilities(runner.pattern(layer, q, k, mask[:, None]), queries - start)
            z = runner.mix(weights, v)
        else:
            z = runner.attend(layer, q, k, v, mask[:, None])
        x, middle = runner.mlp_input(layer, resid, runner.o_proj(layer, z))
        x = edit.mlp_input(layer, resid, middle, x, read)
        hidden = runner.combine(layer, middle, runner.mlp(layer, x))
        self._count(hidden)
        return hidden

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return as_index(array, self.device)

    def _count(self, hidden: torch.Tensor) -> None:
        """Count one block's work on a stack: rows through it, and positions computed."""
        self.work["layer_forwards"] += hidden.shape[0]
        self.work["position_layers"] += hidden.shape[0] * hidden.shape[1]


def _after_cached(cache: torch.Tensor, rows: torch.Tensor, start: int, new: torch.Tensor) -> torch.Tensor:
    """Cached keys or values of positions before `start` (of each row's destination), then the
    new ones: one buffer filled in place, cheaper than concatenating the gathered cache."""
    joined = new.new_empty((new.shape[0], new.shape[1], start + new.shape[2], new.shape[3]))
    joined[:, :, :start] = cache[rows, :, :start]
    joined[:, :, start:] = new
    return joined


class _BlockEdit:
    """Changes to a block's steps; this base changes nothing."""

    def projections(
        self, layer: int, hidden: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The unrotated queries, keys and values (rows, heads, positions, d_head) to go on with."""
        return q, k, v

    def pattern(self, layer: int) -> bool:
        """Whether `probabilities` must see this layer's attention probabilities."""
        return False

    def probabilities(self, weights: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """The (rows, heads, queries, keys) probabilities to go on with; `queries` (rows, queries)
        are the query positions relative to the window's start."""
        return weights

    def mlp_input(
        self, layer: int, resid: torch.Tensor, middle: torch.Tensor, x: torch.Tensor, read: torch.Tensor | None
    ) -> torch.Tensor:
        """The MLP input to go on with, given the block's input and middle streams (read positions
        only when `read` is given)."""
        return x


@dataclass(frozen=True)
class _Patch(_BlockEdit):
    """One stack's patch: at pair i, row `row[i]`'s activation at window position `at[i]` (of
    head `head[i]` for head points) becomes `values[i]`."""

    kind: str
    row: torch.Tensor
    at: torch.Tensor
    head: torch.Tensor
    values: torch.Tensor

    def write(self, window: torch.Tensor, architecture: Architecture, *, gathered: bool = False) -> None:
        """Write the values into a cached (rows, positions, width) window of the patched point,
        or, `gathered`, into its (pairs, width) values at the patched tokens."""
        if gathered:
            window = window[:, None]
            row, at = torch.arange(len(window), device=window.device), torch.zeros_like(self.at)
        else:
            row, at = self.row, self.at
        if self.kind in HEAD_KINDS:
            heads = architecture.point_heads(self.kind)
            window.view(*window.shape[:2], heads, -1)[row, at, self.head] = self.values
        else:
            window[row, at] = self.values

    def projections(
        self, layer: int, hidden: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.kind in ("q", "k", "v"):
            {"q": q, "k": k, "v": v}[self.kind][self.row, self.head, self.at] = self.values
        return q, k, v

    def pattern(self, layer: int) -> bool:
        return self.kind == "pattern"

    def probabilities(self, weights: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        match = queries[self.row] == self.at[:, None]
        found = match.any(dim=1)
        query = match.int().argmax(dim=1)
        keys = weights.shape[-1]
        weights[self.row[found], self.head[found], query[found]] = self.values[found, :keys]
        return weights


@dataclass(frozen=True)
class _State:
    """A chunk's tensors on the model's device: activations (and their pair-by-pair reader),
    lengths, the positions each destination is read at, and (causal models) each
    destination's keys and values."""

    activations: dict[Point, torch.Tensor]
    pairs: PairValues
    lengths: torch.Tensor
    read: torch.Tensor
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]]
    kv_row: torch.Tensor

    @classmethod
    def build(cls, engine: _Engine, trace: Trace, pairs: PairValues, plan: Plan, active: np.ndarray) -> _State:
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
        first_block = engine.first_blocks(plan)[active]
        reusing = first_block[plan.start[active] > 0] if architecture.causal else first_block[:0]
        if len(reusing):
            destinations = as_index(np.unique(plan.destination[active]), device)
            kv_row[destinations] = torch.arange(len(destinations), device=device)
            positions = torch.arange(int(trace.lengths.max()), device=device)
            for layer in range(int(reusing.min()), architecture.n_layers):
                stream = trace.activations[("stream", layer)][destinations]
                kv[layer] = engine.runner.qkv(layer, stream, positions)[1:]
                engine.work["kv_layer_passes"] += len(destinations)
        return cls(trace.activations, pairs, lengths, read, kv, kv_row)
