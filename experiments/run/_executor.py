"""Executors: evaluate the outcome of (unit, arm, text) work items, here or on Ray actors.

Stage: run. May import interventions, experiments.errors and the config stage.

A run front cuts its work into shards (frames with columns unit_id, arm, template, text)
and hands them to an executor, which returns each shard through `on_shard` as soon as it
is done, one row per work item and outcome: the outcome's name in `outcome`, its value in
`value` (a generation outcome adds `answers`, each text's generated answers, and
`unparsed`, how many of them no pattern matched; other outcomes leave them empty). Both
executors call `evaluated` on one shard at a time, so they give the same numbers.

They compute blocks of other work (patching, evidence: `run._block.Block`) the same way
(`compute`): each block's result comes back through `on_block` as soon as it is done.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from experiments.config import Experiment
from experiments.errors import RunError
from experiments.run._block import Block
from experiments.run._progress import Progress, counting, stage
from interventions import Generation, ModelAdapter, ModelSpec, Outcome, evaluate_outcome_set, generate_outcomes

ShardSink = Callable[[pd.DataFrame], None]
BlockSink = Callable[[Block, pd.DataFrame], None]
BatchSize = int | Literal["auto"]


class Executor(Protocol):
    """Evaluates shards of work items; used as a context manager that holds its workers."""

    def __enter__(self) -> Executor: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None: ...

    def evaluate(self, shards: Sequence[pd.DataFrame], on_shard: ShardSink) -> None: ...

    def compute(self, blocks: Sequence[Block], on_block: BlockSink) -> None: ...

    def record(self) -> dict[str, Any]: ...


Readers = Mapping[str, Outcome | Generation]
"""A run's outcomes by name, in config order."""


def evaluated(
    adapter: ModelAdapter, texts: list[str], readers: Readers, *, batch_size: BatchSize, seed: int
) -> pd.DataFrame:
    """Every outcome of every text: one row per (text, outcome), text by text, outcomes in `readers` order.

    The outcomes read from logits come from one shared forward pass per text
    (`evaluate_outcome_set`); each generation outcome decodes the texts. A generated value
    is nan when no answer of the text parsed (and `unparsed` gives them no value).
    """
    read = {name: reader for name, reader in readers.items() if not isinstance(reader, Generation)}
    values = evaluate_outcome_set(adapter, texts, read, batch_size=batch_size) if read and texts else {}
    generated = any(isinstance(reader, Generation) for reader in readers.values())
    columns: dict[str, list[Any]] = {
        "outcome": [],
        "value": [],
        **({"answers": [], "unparsed": []} if generated else {}),
    }
    per_outcome = []
    for name, reader in readers.items():
        if isinstance(reader, Generation):
            result = generate_outcomes(adapter, texts, reader, seed=seed, batch_size=batch_size)
            per_outcome.append((name, result.values, [list(a) for a in result.answers], list(result.unparsed)))
        else:
            empty = [None] * len(texts)
            per_outcome.append((name, values.get(name, np.zeros(0)), empty, empty))
    for row in range(len(texts)):
        for name, value, answers, unparsed in per_outcome:
            columns["outcome"].append(name)
            columns["value"].append(float(value[row]))
            if generated:
                columns["answers"].append(answers[row])
                columns["unparsed"].append(unparsed[row])
    frame = pd.DataFrame(columns)
    frame["value"] = frame["value"].astype(np.float64)
    if generated:
        frame["unparsed"] = frame["unparsed"].astype("Int64")
    return frame


def _with_outcomes(shard: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """The shard's rows, each repeated once per outcome (in `values`' order), with the outcome columns."""
    repeated = shard.loc[shard.index.repeat(len(values) // max(len(shard), 1))].reset_index(drop=True)
    return repeated.assign(**{column: values[column].tolist() for column in values.columns})


class LocalExecutor:
    """Evaluates every shard in this process with an already loaded model."""

    def __init__(self, adapter: ModelAdapter, readers: Readers, *, batch_size: BatchSize = 32, seed: int = 0) -> None:
        self.adapter = adapter
        self.readers = readers
        self.batch_size = batch_size
        self.seed = seed

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        return None

    def evaluate(self, shards: Sequence[pd.DataFrame], on_shard: ShardSink) -> None:
        for shard in shards:
            values = evaluated(
                self.adapter, shard["text"].tolist(), self.readers, batch_size=self.batch_size, seed=self.seed
            )
            on_shard(_with_outcomes(shard, values))

    def compute(self, blocks: Sequence[Block], on_block: BlockSink) -> None:
        for block in blocks:
            on_block(block, block.compute(self.adapter))

    def record(self) -> dict[str, Any]:
        return {"type": "local", "workers": 1}


class _Worker:
    """One model replica in a Ray actor."""

    def __init__(self, spec: ModelSpec, readers: Readers, batch_size: BatchSize, seed: int) -> None:
        self.adapter = ModelAdapter.load(spec)
        self.readers = readers
        self.batch_size = batch_size
        self.seed = seed

    def evaluate(self, texts: list[str]) -> pd.DataFrame:
        return evaluated(self.adapter, texts, self.readers, batch_size=self.batch_size, seed=self.seed)

    def compute(self, block: Block) -> pd.DataFrame:
        return block.compute(self.adapter)


def import_ray() -> Any:
    """The `ray` module, or RunError naming the extra that installs it."""
    try:
        import ray
    except ImportError as error:
        raise RunError(
            "executor.type is ray but ray is not installed; install it with pip install 'paribus[ray]', "
            "or set executor.type: local"
        ) from error
    return ray


class RayExecutor:
    """Evaluates shards on Ray actors, each holding one model replica; a dead actor's shards go to the others.

    Each actor keeps two shards in flight so it never waits on the driver. Results stream
    back in completion order; a shard whose actor died is queued again and counted in
    `resubmitted`, and only a shard's first result is ever handed on. Blocks (`compute`) are
    scheduled the same way. Joins a running Ray (or starts one at `address`) and shuts down
    only a Ray it started.
    """

    def __init__(
        self,
        spec: ModelSpec,
        readers: Readers,
        *,
        batch_size: BatchSize = 32,
        seed: int = 0,
        address: str | None = None,
        num_workers: int | None = None,
        num_gpus_per_worker: float | None = None,
    ) -> None:
        self.spec = spec
        self.readers = readers
        self.batch_size = batch_size
        self.seed = seed
        self.address = address
        self.num_workers = num_workers
        self.num_gpus_per_worker = num_gpus_per_worker
        self.actors: list[Any] = []
        self.resubmitted = 0
        self._started_ray = False
        self._gpus_per_worker = 0.0

    def __enter__(self) -> RayExecutor:
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address)
            self._started_ray = True
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        per_worker = self.num_gpus_per_worker if self.num_gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
        workers = self.num_workers or max(1, int(gpus // per_worker) if per_worker else int(resources.get("CPU", 1)))
        actor = ray.remote(num_cpus=1, num_gpus=per_worker)(_Worker)
        self.actors = [actor.remote(self.spec, self.readers, self.batch_size, self.seed) for _ in range(workers)]
        self.num_workers, self._gpus_per_worker = workers, per_worker
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        ray = import_ray()
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self._started_ray:
            ray.shutdown()

    def evaluate(self, shards: Sequence[pd.DataFrame], on_shard: ShardSink) -> None:
        self._map(
            "evaluate",
            len(shards),
            lambda actor, index: actor.evaluate.remote(shards[index]["text"].tolist()),
            lambda index, values: on_shard(_with_outcomes(shards[index], values)),
            items="shards",
        )

    def compute(self, blocks: Sequence[Block], on_block: BlockSink) -> None:
        self._map(
            "compute",
            len(blocks),
            lambda actor, index: actor.compute.remote(blocks[index]),
            lambda index, frame: on_block(blocks[index], frame),
            items="blocks",
        )

    def _map(
        self,
        method: str,
        count: int,
        submit: Callable[[Any, int], Any],
        done: Callable[[int, Any], None],
        *,
        items: str,
    ) -> None:
        """Run tasks 0..count-1 on the actors, two in flight per actor; each first result goes to `done(index, value)`.

        `submit(actor, index)` starts a task and returns its object ref. A task whose actor
        died is queued again (counted in `resubmitted`); RunError when every actor died.
        """
        ray = import_ray()
        if not self.actors:
            raise RunError(f"RayExecutor.{method} needs its actors; use it inside `with RayExecutor(...) as executor:`")
        queue = deque(range(count))
        live = set(range(len(self.actors)))
        in_flight: dict[Any, tuple[int, int]] = {}
        death: Exception | None = None
        while queue or in_flight:
            for worker in sorted(live):
                while queue and sum(1 for held, _ in in_flight.values() if held == worker) < 2:
                    index = queue.popleft()
                    in_flight[submit(self.actors[worker], index)] = (worker, index)
            if not in_flight:
                raise RunError(
                    f"every Ray worker died; {len(queue)} of {count} {items} were not evaluated "
                    f"(the last worker to die said: {death}); the finished {items} are kept, resume the run"
                ) from death
            (ready,), _ = ray.wait(list(in_flight), num_returns=1)
            worker, index = in_flight.pop(ready)
            try:
                value = ray.get(ready)
            except ray.exceptions.RayActorError as error:
                death = error
                live.discard(worker)
                queue.appendleft(index)
                self.resubmitted += 1
                continue
            except ray.exceptions.RayTaskError as error:
                raise error.as_instanceof_cause() from None
            done(index, value)

    def record(self) -> dict[str, Any]:
        return {
            "type": "ray",
            "workers": self.num_workers,
            "gpus_per_worker": self._gpus_per_worker,
            "resubmitted_shards": self.resubmitted,
        }


def executor_for(experiment: Experiment, adapter: ModelAdapter) -> Executor:
    """The executor the config names; Ray actors load the model from the path the driver resolved."""
    settings, batch_size = experiment.config.executor, experiment.config.model.batch_size
    seed = experiment.config.sampling.seed
    if settings.type == "local":
        return LocalExecutor(adapter, experiment.readers, batch_size=batch_size, seed=seed)
    return RayExecutor(
        replace(experiment.model_spec, path=adapter.spec.path),
        experiment.readers,
        batch_size=batch_size,
        seed=seed,
        address=settings.address,
        num_workers=settings.num_workers,
        num_gpus_per_worker=settings.num_gpus_per_worker,
    )


def evaluate_texts(
    experiment: Experiment, adapter: ModelAdapter, texts: list[str], progress: Progress | None
) -> pd.DataFrame:
    """Every outcome of every text (see `evaluated`), keyed by the text's position in `row`, in text order,
    through the config's executor in blocks of `executor.shard_units` texts.

    For runs whose units are not drawn from the structural model (documents), so nothing is sharded to disk.
    """
    size = experiment.config.executor.shard_units
    work = [
        pd.DataFrame({"row": range(start, min(start + size, len(texts))), "text": texts[start : start + size]})
        for start in range(0, len(texts), size)
    ]
    advance = counting(stage(progress, "evaluating the model"), len(texts))
    done: list[pd.DataFrame] = []

    def store(shard: pd.DataFrame) -> None:
        done.append(shard.drop(columns="text"))
        if advance is not None:
            advance(shard["row"].nunique())

    with executor_for(experiment, adapter) as executor:
        executor.evaluate(work, store)
    if not done:
        return pd.DataFrame({"row": np.zeros(0, dtype=np.int64), "outcome": [], "value": np.zeros(0)})
    return pd.concat(done).sort_values("row", kind="stable").reset_index(drop=True)
