"""Block shards: each finished block of work stored under `shards/`, so a resumed run skips it.

Stage: run. May import the run store, executors and blocks.

A block is written whole (a temporary file renamed into place) as `shards/NAME.parquet` and
listed with its checksum in the manifest, as an outcome shard is; on resume the run store
keeps the listed ones and removes the rest. A block's name digests its work and inputs
(`Block.name`) and the run store refuses a resume with another model, so a stored block is
read back only where the run would compute the same block again. A complete run removes
them with the outcome shards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from experiments.run._block import Block
from experiments.run._executor import Executor
from experiments.run._progress import Report, counting
from experiments.run._store import atomic_write


class BlockShards:
    """The blocks stored in a run folder's `shards/`; `record(path)` lists each one written in the manifest.

    Leftovers of an interrupted write are removed on open.
    """

    def __init__(self, run_folder: Path, *, record: Callable[[Path], None]) -> None:
        self.folder = run_folder / "shards"
        self._record = record
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(".*.parquet.tmp"):
            leftover.unlink()

    def path(self, block: Block) -> Path:
        return self.folder / f"{block.name}.parquet"

    def read(self, block: Block) -> pd.DataFrame | None:
        """The stored result of `block`, or None when it was not stored."""
        path = self.path(block)
        return pd.read_parquet(path) if path.is_file() else None

    def write(self, block: Block, frame: pd.DataFrame) -> Path:
        path = atomic_write(self.path(block), lambda handle: frame.to_parquet(handle, index=False))
        self._record(path)
        return path


class BlockRunner:
    """Computes blocks through an executor, storing each one as it finishes and reading back those already stored.

    The blocks not stored go to the executor together (local: one after another; Ray: spread
    over its actors). `record()` counts the blocks of every `run` so far.
    """

    def __init__(self, executor: Executor, shards: BlockShards) -> None:
        self.executor = executor
        self.shards = shards
        self._computed = 0
        self._reused = 0

    def run(self, blocks: Sequence[Block], progress: Report | None = None) -> list[pd.DataFrame]:
        """Each block's result, in the order of `blocks`; `progress(done, total)` counts their `size`."""
        advance = counting(progress, sum(block.size for block in blocks))
        results: dict[str, pd.DataFrame] = {}

        def finished(block: Block, frame: pd.DataFrame) -> None:
            results[block.name] = frame
            if advance is not None:
                advance(block.size)

        def store(block: Block, frame: pd.DataFrame) -> None:
            self.shards.write(block, frame)
            self._computed += 1
            finished(block, frame)

        pending = []
        for block in blocks:
            stored = self.shards.read(block)
            if stored is None:
                pending.append(block)
            else:
                self._reused += 1
                finished(block, stored)
        self.executor.compute(pending, store)
        return [results[block.name] for block in blocks]

    def record(self) -> dict[str, int]:
        """The manifest's count of blocks: `stored` (all of them, by now) and `reused` (read back)."""
        return {"stored": self._computed + self._reused, "reused": self._reused}
