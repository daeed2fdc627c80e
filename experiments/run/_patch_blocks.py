"""Blocks of a patching sweep: slices of its aligned pairs and the work to do on each, stored as they finish.

Stage: run. May import interventions, blocks and block shards.

Exact site patching, exact path patching (of every edge, or of chosen edges), attribution
patching and edge attribution patching give each unit a result that does not depend on the
other units, so `PatchRunner` cuts a sweep into blocks of
consecutive units that any executor computes and `BlockRunner` stores whole. A block's
`name` digests what it computes and its units' aligned texts, so a stored block stands for
exactly that work on exactly those units.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
import pandas as pd

from experiments.run._block import digest
from experiments.run._block_shards import BlockRunner
from experiments.run._progress import Report
from interventions import (
    AlignedPair,
    ModelAdapter,
    Outcome,
    Site,
    attribution_effects,
    edge_attribution_effects,
    evaluate_outcomes,
    patch_effects,
    path_effects,
    path_patch,
)

PatchKind = Literal["sites", "attribution", "paths", "edge_attribution", "edges"]
Edge = tuple[Site, str, str]


@dataclass(frozen=True)
class PatchWork:
    """What a sweep computes for every unit, read by `outcome`.

    `sites`: the exact outcome with each site patched at each position. `attribution`:
    attribution patching's estimate of the same (column "estimate"). `paths`: the exact
    outcome with each sender (`sites`) path patched into each receiver at each position.
    `edge_attribution`: edge attribution's estimate of the same (column "estimate").
    `edges`: the exact outcome with each of `edges` (sender, receiver, position) path patched.
    """

    kind: PatchKind
    outcome: Outcome
    sites: tuple[Site, ...]
    positions: tuple[str, ...]
    receivers: tuple[str, ...] = ()
    edges: tuple[Edge, ...] = ()

    @property
    def rows_per_unit(self) -> int:
        """Result rows of one unit: one per (site, position), times the receivers for paths, or one per edge."""
        if self.kind == "edges":
            return len(self.edges)
        return len(self.sites) * len(self.positions) * max(1, len(self.receivers))


@dataclass(frozen=True)
class SweepResult:
    """A sweep's rows beside each unit's unpatched outcomes in both runs, and what computing it took.

    `patched` has one row per unit and (site, position), or (sender, position, receiver) for
    paths, as `interventions.PatchResult.patched` and `PathResult.patched`, its value in
    "outcome" (exact) or "estimate" (attribution); `unit` indexes `destination` and `source`.
    """

    destination: np.ndarray
    source: np.ndarray
    patched: pd.DataFrame
    work: Mapping[str, int]

    def to_frame(self) -> pd.DataFrame:
        """The stored form: `patched` with each row's unit's destination and source outcomes, the work in `attrs`."""
        units = self.patched["unit"].to_numpy()
        frame = self.patched.assign(destination=self.destination[units], source=self.source[units])
        frame.attrs["work"] = dict(self.work)
        return frame

    @classmethod
    def from_frames(cls, frames: Sequence[pd.DataFrame]) -> SweepResult:
        """The result of consecutive blocks' stored frames, their units numbered on across the blocks."""
        parts, start, work = [], 0, Counter[str]()
        for frame in frames:
            parts.append(frame.assign(unit=frame["unit"] + start))
            start += int(frame["unit"].max()) + 1
            work.update(frame.attrs.get("work", {}))
        rows = pd.concat(parts, ignore_index=True)
        rows.attrs.clear()  # each block's work, summed in `work`
        units = rows.drop_duplicates("unit").sort_values("unit")
        return cls(
            destination=units["destination"].to_numpy(),
            source=units["source"].to_numpy(),
            patched=rows.drop(columns=["destination", "source"]),
            work=MappingProxyType(dict(work)),
        )


@dataclass(frozen=True)
class PatchBlock:
    """Units `start` to `start + len(pairs)` of sweep number `sweep`, and the work to do on each (a `Block`)."""

    sweep: int
    start: int
    pairs: tuple[AlignedPair, ...]
    work: PatchWork

    @property
    def name(self) -> str:
        """`patch-SWEEP-DIGEST`; the digest covers the work, the block's place, and each unit's texts and alignment."""
        work = self.work
        key = {
            "kind": work.kind,
            "outcome": repr(work.outcome),
            "sites": [site.name for site in work.sites],
            "positions": list(work.positions),
            "receivers": list(work.receivers),
            "edges": [[sender.name, receiver, position] for sender, receiver, position in work.edges],
            "start": self.start,
            "units": [[pair.destination.text, pair.source.text, dict(pair.positions)] for pair in self.pairs],
        }
        return f"patch-{self.sweep}-{digest(key)}"

    @property
    def size(self) -> int:
        return len(self.pairs) * self.work.rows_per_unit

    def compute(self, adapter: ModelAdapter) -> pd.DataFrame:
        """The block's result in its stored form (`SweepResult.to_frame`), its units numbered from 0."""
        return _COMPUTE[self.work.kind](adapter, self.work, list(self.pairs)).to_frame()


@dataclass(frozen=True)
class PatchRunner:
    """Runs the patching work of sweep number `sweep` in blocks of `block_units` units through `blocks`."""

    blocks: BlockRunner
    sweep: int
    block_units: int

    def run(self, work: PatchWork, pairs: Sequence[AlignedPair], progress: Report | None = None) -> SweepResult:
        """`work` on every pair, units numbered as in `pairs`; `progress(done, total)` counts result rows."""
        size = self.block_units
        cut = [
            PatchBlock(self.sweep, start, tuple(pairs[start : start + size]), work)
            for start in range(0, len(pairs), size)
        ]
        return SweepResult.from_frames(self.blocks.run(cut, progress))


def _sites(adapter: ModelAdapter, work: PatchWork, pairs: list[AlignedPair]) -> SweepResult:
    result = patch_effects(adapter, work.outcome, pairs, work.sites, work.positions)
    return SweepResult(result.destination, result.source, result.patched, result.work)


def _paths(adapter: ModelAdapter, work: PatchWork, pairs: list[AlignedPair]) -> SweepResult:
    result = path_patch(adapter, work.outcome, pairs, work.sites, work.receivers, work.positions)
    return SweepResult(result.destination, result.source, result.patched, result.work)


def _edges(adapter: ModelAdapter, work: PatchWork, pairs: list[AlignedPair]) -> SweepResult:
    result = path_effects(adapter, work.outcome, pairs, list(work.edges))
    return SweepResult(result.destination, result.source, result.patched, result.work)


def _attribution(adapter: ModelAdapter, work: PatchWork, pairs: list[AlignedPair]) -> SweepResult:
    """Attribution estimates, beside both runs' outcomes (the estimates approximate a change of the destination's)."""
    estimates = attribution_effects(adapter, work.outcome, pairs, work.sites, work.positions)
    return _beside_outcomes(adapter, work, pairs, estimates)


def _edge_attribution(adapter: ModelAdapter, work: PatchWork, pairs: list[AlignedPair]) -> SweepResult:
    """Edge attribution estimates, beside both runs' outcomes."""
    estimates = edge_attribution_effects(adapter, work.outcome, pairs, work.sites, work.receivers, work.positions)
    return _beside_outcomes(adapter, work, pairs, estimates)


def _beside_outcomes(
    adapter: ModelAdapter, work: PatchWork, pairs: list[AlignedPair], estimates: pd.DataFrame
) -> SweepResult:
    """First-order estimates with each unit's unpatched outcome in both runs (they approximate a change of the
    destination's)."""
    destination = evaluate_outcomes(adapter, [pair.destination.text for pair in pairs], work.outcome)
    source = evaluate_outcomes(adapter, [pair.source.text for pair in pairs], work.outcome)
    return SweepResult(destination, source, estimates, MappingProxyType({}))


_COMPUTE: dict[PatchKind, Callable[[ModelAdapter, PatchWork, list[AlignedPair]], SweepResult]] = {
    "sites": _sites,
    "attribution": _attribution,
    "paths": _paths,
    "edge_attribution": _edge_attribution,
    "edges": _edges,
}
