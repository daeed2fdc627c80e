"""Outcome shards: Parquet files under `shards/` in the run folder, appended as work finishes.

Stage: run. May import experiments.errors and the run store.

Each shard holds every outcome of some (unit, arm) pairs, one row per outcome, and is written whole or not at
all (a temporary file renamed into place), then listed with its checksum in the manifest,
so a run killed at any moment leaves only complete shards, and a resumed run skips exactly
the pairs of the shards the manifest vouches for (the run store removes any other).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from experiments.errors import RunError
from experiments.run._store import atomic_write

PAIR_KEY = ("unit_id", "arm")
"""A work item: one unit in one arm, whose every outcome one shard holds."""
SHARD_KEY = (*PAIR_KEY, "outcome")
SHARD_COLUMNS = ("unit_id", "arm", "template", "text", "outcome", "value")
GENERATED_COLUMNS = ("answers", "unparsed")
"""Kept beside the outcome when a generation outcome gives them: each text's answers, and how many no pattern matched."""


def shard_paths(run_folder: Path) -> list[Path]:
    """The outcome shards stored in a run folder, in name order (none when it has no shards folder)."""
    return sorted((run_folder / "shards").glob("outcomes-*.parquet"))


class ShardStore:
    """The shards of one run folder, read once on open and kept in memory as they are appended.

    Leftovers of an interrupted write are removed on open. `record(path)` is called after each
    shard is written (`RunStore.record`, which lists it in the manifest).
    """

    def __init__(self, run_folder: Path, *, record: Callable[[Path], None] | None = None) -> None:
        self.folder = run_folder / "shards"
        self._record = record
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(".*.tmp"):
            leftover.unlink()
        self._frames = [pd.read_parquet(path) for path in self.paths()]

    def append(self, frame: pd.DataFrame) -> Path:
        """Write one shard atomically; its name is a digest of its keys, so the same work is never stored twice."""
        missing = [column for column in SHARD_COLUMNS if column not in frame.columns]
        if missing or frame.empty:
            raise RunError(
                f"a shard needs rows with columns {list(SHARD_COLUMNS)}; got {len(frame)} rows, missing {missing}"
            )
        pairs = frame[["unit_id", "arm"]].drop_duplicates()
        keys = "\n".join(f"{unit}\t{arm}" for unit, arm in zip(pairs["unit_id"], pairs["arm"]))
        path = self.folder / f"outcomes-{hashlib.sha256(keys.encode()).hexdigest()[:20]}.parquet"
        if path.exists():
            raise RunError(f"shard {path.name} already exists: the same (unit, arm) pairs were evaluated twice")
        kept = [*SHARD_COLUMNS, *(column for column in GENERATED_COLUMNS if column in frame.columns)]
        stored = frame.loc[:, kept].reset_index(drop=True)
        atomic_write(path, lambda handle: stored.to_parquet(handle, index=False))
        if self._record is not None:
            self._record(path)
        self._frames.append(stored)
        return path

    def paths(self) -> list[Path]:
        return shard_paths(self.folder.parent)

    def read(self) -> pd.DataFrame:
        """Every stored outcome, one row per (unit, arm, outcome); RunError when one is stored twice."""
        if not self._frames:
            return pd.DataFrame(
                {
                    column: pd.Series(dtype=dtype)
                    for column, dtype in zip(
                        SHARD_COLUMNS, ("int64", "object", "int64", "object", "object", "float64"), strict=True
                    )
                }
            )
        outcomes = pd.concat(self._frames, ignore_index=True)
        repeated = outcomes[outcomes.duplicated(list(SHARD_KEY), keep=False)]
        if not repeated.empty:
            first = repeated.iloc[0]
            raise RunError(
                f"{len(repeated)} outcome rows in {self.folder} repeat a (unit, arm, outcome), e.g. unit "
                f"{first['unit_id']} in {first['arm']} ({first['outcome']}); the shards are inconsistent, "
                "start a new run folder"
            )
        return outcomes
