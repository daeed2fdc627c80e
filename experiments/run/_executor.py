"""Executors: evaluate the outcome of (unit, arm, text) work items, here or on Ray actors.

Stage: run. May import interventions, experiments.errors and the config stage.

A run front cuts its work into shards (frames with columns unit_id, arm, template, text)
and hands them to an executor, which returns each shard with an `outcome` column through
`on_shard` as soon as it is done (a generation outcome adds `answers`, each text's
generated answers, and `unparsed`, how many of them no pattern matched). Both executors
call `evaluated` on one shard at a time, so they give the same numbers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from experiments.config import Experiment
from experiments.errors import RunError
from experiments.run._progress import Progress, counting, stage
from interventions import Generation, ModelAdapter, ModelSpec, Outcome, evaluate_outcomes, generate_outcomes

ShardSink = Callable[[pd.DataFrame], None]
BatchSize = int | Literal["auto"]


class Executor(Protocol):
    """Evaluates shards of work items; used as a context manager that holds its workers."""

    def __enter__(self) -> Executor: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None: ...

    def evaluate(self, shards: Sequence[pd.DataFrame], on_shard: ShardSink) -> None: ...

    def record(self) -> dict[str, Any]: ...


def evaluated(
    adapter: ModelAdapter, texts: list[str], outcome: Outcome | Generation, *, batch_size: BatchSize, seed: int
) -> pd.DataFrame:
    """Each text's outcome; for a generation outcome also its answers and how many no pattern matched.

    A generated value is nan when no answer of the text parsed (and `unparsed` gives them no value).
    """
    if isinstance(outcome, Generation):
        result = generate_outcomes(adapter, texts, outcome, seed=seed, batch_size=batch_size)
        return pd.DataFrame(
            {
                "outcome": np.asarray(result.values, dtype=np.float64),
                "answers": [list(answers) for answers in result.answers],
                "unparsed": np.asarray(result.unparsed, dtype=np.int64),
            }
        )
    values = evaluate_outcomes(adapter, texts, outcome, batch_size=batch_size)
    return pd.DataFrame({"outcome": np.asarray(values, dtype=np.float64)})


def _with_outcomes(shard: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    return shard.assign(**{column: values[column].tolist() for column in values.columns})


class LocalExecutor:
    """Evaluates every shard in this process with an already loaded model."""

    def __init__(
        self, adapter: ModelAdapter, outcome: Outcome | Generation, *, batch_size: BatchSize = 32, seed: int = 0
    ) -> None:
        self.adapter = adapter
        self.outcome = outcome
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
                self.adapter, shard["text"].tolist(), self.outcome, batch_size=self.batch_size, seed=self.seed
            )
            on_shard(_with_outcomes(shard, values))

    def record(self) -> dict[str, Any]:
        return {"type": "local", "workers": 1}


class _Worker:
    """One model replica in a Ray actor."""

    def __init__(self, spec: ModelSpec, outcome: Outcome | Generation, batch_size: BatchSize, seed: int) -> None:
        self.adapter = ModelAdapter.load(spec)
        self.outcome = outcome
        self.batch_size = batch_size
        self.seed = seed

    def evaluate(self, texts: list[str]) -> pd.DataFrame:
        return evaluated(self.adapter, texts, self.outcome, batch_size=self.batch_size, seed=self.seed)


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
    `resubmitted`, and only a shard's first result is ever handed on. Joins a running Ray
    (or starts one at `address`) and shuts down only a Ray it started.
    """

    def __init__(
        self,
        spec: ModelSpec,
        outcome: Outcome | Generation,
        *,
        batch_size: BatchSize = 32,
        seed: int = 0,
        address: str | None = None,
        num_workers: int | None = None,
        num_gpus_per_worker: float | None = None,
    ) -> None:
        self.spec = spec
        self.outcome = outcome
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
        self.actors = [actor.remote(self.spec, self.outcome, self.batch_size, self.seed) for _ in range(workers)]
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
        ray = import_ray()
        if not self.actors:
            raise RunError("RayExecutor.evaluate needs its actors; use it inside `with RayExecutor(...) as executor:`")
        queue = deque(range(len(shards)))
        live = set(range(len(self.actors)))
        in_flight: dict[Any, tuple[int, int]] = {}
        death: Exception | None = None
        while queue or in_flight:
            for worker in sorted(live):
                while queue and sum(1 for held, _ in in_flight.values() if held == worker) < 2:
                    index = queue.popleft()
                    texts = shards[index]["text"].tolist()
                    in_flight[self.actors[worker].evaluate.remote(texts)] = (worker, index)
            if not in_flight:
                raise RunError(
                    f"every Ray worker died; {len(queue)} of {len(shards)} shards were not evaluated "
                    f"(the last worker to die said: {death}); the finished shards are kept, resume the run"
                ) from death
            (ready,), _ = ray.wait(list(in_flight), num_returns=1)
            worker, index = in_flight.pop(ready)
            try:
                values = ray.get(ready)
            except ray.exceptions.RayActorError as error:
                death = error
                live.discard(worker)
                queue.appendleft(index)
                self.resubmitted += 1
                continue
            except ray.exceptions.RayTaskError as error:
                raise error.as_instanceof_cause() from None
            on_shard(_with_outcomes(shards[index], values))

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
        return LocalExecutor(adapter, experiment.outcome, batch_size=batch_size, seed=seed)
    return RayExecutor(
        replace(experiment.model_spec, path=adapter.spec.path),
        experiment.outcome,
        batch_size=batch_size,
        seed=seed,
        address=settings.address,
        num_workers=settings.num_workers,
        num_gpus_per_worker=settings.num_gpus_per_worker,
    )


def evaluate_texts(
    experiment: Experiment, adapter: ModelAdapter, texts: list[str], progress: Progress | None
) -> pd.DataFrame:
    """Every text's outcome (a generation outcome: also answers and unparsed), one row per text in order,
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
            advance(len(shard))

    with executor_for(experiment, adapter) as executor:
        executor.evaluate(work, store)
    if not done:
        return pd.DataFrame({"outcome": np.zeros(0)})
    return pd.concat(done).set_index("row").sort_index().reset_index(drop=True)
