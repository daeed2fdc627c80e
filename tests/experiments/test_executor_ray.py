"""The Ray executor on a local Ray: the same outcomes as the local executor, and every unit once when an actor dies."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import RunError, run_experiment
from experiments.run import arm_texts, draw_units, realize_arms
from experiments.run._executor import LocalExecutor, RayExecutor, import_ray
from interventions import ModelAdapter
from tests.experiments._tiny_runs import ROOT, save_tiny_classifier, tiny_experiment


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A two-CPU Ray on this machine whose workers import this checkout."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}},
    )
    yield
    ray.shutdown()


def test_a_ray_run_equals_a_local_run(classifier: Path, tmp_path: Path, local_ray: None) -> None:
    local = run_experiment(tiny_experiment(classifier, executor={"shard_units": 8}), out_dir=tmp_path / "local")
    distributed = run_experiment(
        tiny_experiment(classifier, executor={"type": "ray", "num_workers": 2, "shard_units": 8}),
        out_dir=tmp_path / "ray",
    )
    assert distributed.manifest["executor"] == {
        "type": "ray",
        "workers": 2,
        "gpus_per_worker": 0.0,
        "resubmitted_shards": 0,
    }
    ours, theirs = (pd.read_parquet(run.folder / "outcomes.parquet") for run in (distributed, local))
    pd.testing.assert_frame_equal(ours.drop(columns="value"), theirs.drop(columns="value"))
    np.testing.assert_allclose(ours["value"], theirs["value"], rtol=0, atol=1e-6)
    ours, theirs = (pd.read_csv(run.folder / "effects.csv") for run in (distributed, local))
    numbers = ["estimate", "ci_low", "ci_high", "std_error", "p_value", "p_adjusted"]
    pd.testing.assert_frame_equal(ours.drop(columns=numbers), theirs.drop(columns=numbers))
    np.testing.assert_allclose(ours[numbers], theirs[numbers], rtol=0, atol=1e-6)


def test_a_killed_actor_still_yields_every_unit_exactly_once(classifier: Path, local_ray: None) -> None:
    import ray

    experiment = tiny_experiment(classifier)
    units = draw_units(experiment)
    items = arm_texts(experiment, units, realize_arms(experiment, units))
    shards = [shard.reset_index(drop=True) for _, shard in items.groupby(items["unit_id"] // 2)]
    finished: list[pd.DataFrame] = []
    with RayExecutor(experiment.model_spec, experiment.readers, batch_size=16, num_workers=2) as executor:

        def collect(shard: pd.DataFrame) -> None:
            if not finished:
                ray.kill(executor.actors[0])
            finished.append(shard)

        executor.evaluate(shards, collect)
    assert executor.resubmitted >= 1
    outcomes = pd.concat(finished, ignore_index=True)
    assert len(outcomes) == len(items) == len(units) * len(experiment.arms)
    assert not outcomes.duplicated(["unit_id", "arm"]).any()
    expected: list[pd.DataFrame] = []
    LocalExecutor(ModelAdapter.load(experiment.model_spec), experiment.readers, batch_size=16).evaluate(
        shards, expected.append
    )
    merged = outcomes.merge(pd.concat(expected), on=["unit_id", "arm", "outcome"], suffixes=("", "_local"))
    assert len(merged) == len(items)
    np.testing.assert_allclose(merged["value"], merged["value_local"], rtol=0, atol=1e-6)


def test_when_every_actor_died_the_run_fails_saying_so(classifier: Path, local_ray: None) -> None:
    import ray

    experiment = tiny_experiment(classifier)
    units = draw_units(experiment)
    items = arm_texts(experiment, units, realize_arms(experiment, units))
    shards = [shard.reset_index(drop=True) for _, shard in items.groupby(items["unit_id"] // 16)]
    with RayExecutor(experiment.model_spec, experiment.readers, num_workers=1) as executor:
        ray.kill(executor.actors[0])
        with pytest.raises(
            RunError, match=f"every Ray worker died; {len(shards)} of {len(shards)} shards were not evaluated"
        ):
            executor.evaluate(shards, lambda shard: None)


def test_a_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RunError, match=r"ray is not installed; install it with pip install 'paribus\[ray\]'"):
        import_ray()
