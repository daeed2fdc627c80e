"""A block of work: what an executor computes with a model, and what a run stores whole as one shard.

Stage: run. May import interventions.

Patching sweeps (`PatchBlock`) and evidence readings (`EvidenceBlock`) are cut into blocks
whose results do not depend on the other blocks, so any executor can compute them (here or on
a Ray actor holding a model replica) and a resumed run can read a stored one back.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

import pandas as pd

from interventions import ModelAdapter


class Block(Protocol):
    """Work on a slice of units, computed by `compute` with any replica of the run's model."""

    @property
    def name(self) -> str:
        """Its shard's file name (no suffix): a digest of the work and its inputs, so equal names mean equal results."""
        ...

    @property
    def size(self) -> int:
        """How many results it holds, for progress."""
        ...

    def compute(self, adapter: ModelAdapter) -> pd.DataFrame:
        """Its result as stored: a frame, with what is not per row in `attrs` (kept by Parquet and pickling)."""
        ...


def digest(key: Any) -> str:
    """A short sha256 of `key` (JSON data) for a block's name: equal keys, equal digests."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
