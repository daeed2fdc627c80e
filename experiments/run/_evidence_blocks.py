"""Blocks of evidence readings: attention and saliency read on slices of the evidence texts, stored as they finish.

Stage: run. May import interventions, blocks and block shards.

Attention, gradient x input and integrated gradients read each text on its own, so
`EvidenceReader` cuts the texts into blocks of consecutive units that any executor computes
and `BlockRunner` stores whole. A block's `name` digests the reading and its texts with
their spans, so a stored block stands for exactly that reading of exactly those texts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from experiments.run._block import digest
from experiments.run._block_shards import BlockRunner
from experiments.run._progress import Report
from interventions import (
    ModelAdapter,
    Outcome,
    RenderedText,
    attention_evidence,
    gradient_x_input,
    integrated_gradients,
)

ReadingKind = Literal["attention", "gradient_x_input", "integrated_gradients"]


@dataclass(frozen=True)
class Reading:
    """One evidence method read about `factors`: attention (both methods), or saliency of `outcome`.

    `steps` are integrated gradients' interpolation steps; its baseline is the pad token, or
    each unit's counterfactual text where the block has `counterfactuals`.
    """

    kind: ReadingKind
    factors: tuple[str, ...]
    outcome: Outcome | None = None
    steps: int | None = None


@dataclass(frozen=True)
class EvidenceBlock:
    """Units `start` to `start + len(texts)` of the evidence texts, and the reading to take of each (a `Block`)."""

    reading: Reading
    start: int
    texts: tuple[RenderedText, ...]
    counterfactuals: tuple[RenderedText, ...] | None = None

    @property
    def name(self) -> str:
        """`evidence-DIGEST`; the digest covers the reading, the block's place, and its texts with their spans."""
        reading = self.reading
        key = {
            "kind": reading.kind,
            "factors": list(reading.factors),
            "outcome": repr(reading.outcome),
            "steps": reading.steps,
            "start": self.start,
            "texts": [[text.text, dict(text.spans)] for text in self.texts],
            "counterfactuals": None
            if self.counterfactuals is None
            else [[text.text, dict(text.spans)] for text in self.counterfactuals],
        }
        return f"evidence-{digest(key)}"

    @property
    def size(self) -> int:
        return len(self.texts)

    @property
    def units(self) -> range:
        return range(self.start, self.start + len(self.texts))

    def compute(self, adapter: ModelAdapter) -> pd.DataFrame:
        """The spans of the block's units (numbered from `start`), with what the reading reports beside them in `attrs`."""
        return _READ[self.reading.kind](adapter, self)


def _attention(adapter: ModelAdapter, block: EvidenceBlock) -> pd.DataFrame:
    result = attention_evidence(adapter, list(block.texts), block.reading.factors, units=block.units)
    spans = result.to_frame()
    spans.attrs.update(attn_implementation=result.attn_implementation, switched_to_eager=result.switched_to_eager)
    return spans


def _gradient_x_input(adapter: ModelAdapter, block: EvidenceBlock) -> pd.DataFrame:
    reading = block.reading
    return gradient_x_input(adapter, list(block.texts), reading.factors, reading.outcome, units=block.units).to_frame()


def _integrated_gradients(adapter: ModelAdapter, block: EvidenceBlock) -> pd.DataFrame:
    """Spans, with the largest |completeness delta| and how many units were skipped for unequal token lengths."""
    reading, counterfactuals = block.reading, block.counterfactuals
    result = integrated_gradients(
        adapter,
        list(block.texts),
        reading.factors,
        reading.outcome,
        baseline="pad" if counterfactuals is None else "counterfactual",
        counterfactuals=None if counterfactuals is None else list(counterfactuals),
        n_steps=reading.steps,
        on_length_mismatch="skip",
        units=block.units,
    )
    spans = result.to_frame()
    spans.attrs.update(max_abs_delta=float(result.completeness["delta"].abs().max()), skipped=len(result.skipped_units))
    return spans


_READ: dict[ReadingKind, Callable[[ModelAdapter, EvidenceBlock], pd.DataFrame]] = {
    "attention": _attention,
    "gradient_x_input": _gradient_x_input,
    "integrated_gradients": _integrated_gradients,
}


@dataclass(frozen=True)
class Readout:
    """A reading of every text: the spans of all blocks (units numbered as the texts), and each block's `attrs`."""

    spans: pd.DataFrame
    details: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class EvidenceReader:
    """Takes readings in blocks of `block_units` texts through `blocks`, each block stored as a shard."""

    blocks: BlockRunner
    block_units: int

    def read(
        self,
        reading: Reading,
        texts: Sequence[RenderedText],
        *,
        counterfactuals: Sequence[RenderedText] | None = None,
        progress: Report | None = None,
    ) -> Readout:
        """`reading` of every text (against its counterfactual, where given); `progress` counts texts."""
        size = self.block_units
        cut = [
            EvidenceBlock(
                reading,
                start,
                tuple(texts[start : start + size]),
                None if counterfactuals is None else tuple(counterfactuals[start : start + size]),
            )
            for start in range(0, len(texts), size)
        ]
        frames = self.blocks.run(cut, progress)
        spans = pd.concat(frames, ignore_index=True)
        spans.attrs.clear()  # each block's, kept in `details`
        return Readout(spans, tuple(dict(frame.attrs) for frame in frames))
