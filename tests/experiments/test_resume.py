"""Shards and resumable runs: a run killed mid-evaluation and resumed equals one never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments import ConfigError, RunError, compile_config, parse_config, run_experiment
from experiments.errors import RunFolderError
from experiments.run import arm_texts, realize_arms, stored_outcomes
from experiments.run._shards import ShardStore
from experiments.run._store import RunStore, base_manifest, config_hash
from experiments.run._templated import _evaluate_new_units
from tests.experiments._tiny_runs import ROOT, save_tiny_classifier, tiny_config, tiny_experiment

UNITS, SHARD_UNITS = 240, 2


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-bert"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from experiments.cli import app; app()", *args]


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _kill_after_shards(command: list[str], shards: Path, count: int) -> int:
    """Start `command`, SIGKILL it once `shards` holds `count` shard files; its pid."""
    process = subprocess.Popen(command, cwd=ROOT, env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if shards.is_dir() and len(list(shards.glob("outcomes-*.parquet"))) >= count:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, errors.decode()
    return process.pid


def _resume(config_file: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    """`paribus run CONFIG --resume FOLDER` in a fresh process; it must succeed."""
    done = subprocess.run(
        _cli("run", str(config_file), "--resume", str(folder)),
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_a_run_killed_mid_evaluation_and_resumed_equals_an_uninterrupted_run(classifier: Path, tmp_path: Path) -> None:
    sections = {"sampling": {"units": UNITS, "seed": 5}, "executor": {"shard_units": SHARD_UNITS}}
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(classifier, **sections), sort_keys=False))
    whole = run_experiment(tiny_experiment(classifier, **sections), out_dir=tmp_path / "whole")

    killed = tmp_path / "killed"
    pid = _kill_after_shards(_cli("run", str(config_file), "--out", str(killed)), killed / "shards", 3)
    files = sorted(f"shards/{path.name}" for path in (killed / "shards").glob("outcomes-*.parquet"))
    left = json.loads((killed / "manifest.json").read_text())
    listed = sorted(name for name in left["checksums"] if name.startswith("shards/"))
    total = whole.manifest["shards"]["stored"]
    assert 3 <= len(files) < total, "the run must be interrupted mid-evaluation"
    # A kill between writing a shard and listing it leaves one shard unlisted: it is not trusted.
    assert set(listed) <= set(files) and len(files) - len(listed) <= 1
    assert left["status"] == "running"
    assert json.loads((killed / ".paribus.lock").read_text())["pid"] == pid
    assert not (killed / "outcomes.parquet").exists()

    done = _resume(config_file, killed)
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert not (killed / "shards").exists() and not (whole.folder / "shards").exists()
    assert manifest["shards"] == {"stored": total, "reused": len(listed)}
    assert manifest["resumes"][0]["previous_status"] == "running"
    assert manifest["resumes"][0]["untrusted_shards_removed"] == sorted(set(files) - set(listed))
    assert manifest["lock_taken_over"]["pid"] == pid  # the killed run's stale lock
    assert f"took over the stale lock of pid {pid}" in done.stderr
    assert not (killed / ".paribus.lock").exists()
    assert manifest["config_hash"] == whole.manifest["config_hash"]

    outcomes = pd.read_parquet(killed / "outcomes.parquet")
    n_arms = len(tiny_experiment(classifier, **sections).arms)
    assert len(outcomes) == UNITS * n_arms
    assert not outcomes.duplicated(["unit_id", "arm"]).any()
    assert set(outcomes["unit_id"]) == set(range(UNITS))
    pd.testing.assert_frame_equal(outcomes, pd.read_parquet(whole.folder / "outcomes.parquet"))
    pd.testing.assert_frame_equal(pd.read_csv(killed / "effects.csv"), pd.read_csv(whole.folder / "effects.csv"))
    pd.testing.assert_frame_equal(
        pd.read_parquet(killed / "units.parquet"), pd.read_parquet(whole.folder / "units.parquet")
    )


def _unfinished_run(folder: Path, model: Path, **sections: dict) -> None:
    """A run folder as a run leaves it when killed before any outcome: config and a running manifest."""
    config = tiny_experiment(model, **sections).config
    store = RunStore(folder, config)
    store.write_config(config)
    store.write_manifest(base_manifest(config))
    store.close()


def test_a_config_that_changes_results_is_refused_with_the_fields_that_differ(classifier: Path, tmp_path: Path) -> None:
    _unfinished_run(tmp_path / "run", classifier)
    changed = tiny_experiment(classifier, sampling={"units": 40, "seed": 6}, inference={"bootstrap": 500})
    with pytest.raises(
        ConfigError, match=r"these fields differ and change its results: sampling\.seed \(5 -> 6\)\. Resume"
    ):
        run_experiment(changed, out_dir=tmp_path / "run")


def test_result_neutral_fields_may_change_on_resume(classifier: Path, tmp_path: Path) -> None:
    _unfinished_run(tmp_path / "run", classifier)
    changed = tiny_experiment(classifier, inference={"bootstrap": 500, "correction": "bh"}, executor={"shard_units": 7})
    store = RunStore(tmp_path / "run", changed.config, resume=True)
    assert store.previous is not None
    assert store.previous.changed == ("executor.shard_units", "inference.bootstrap", "inference.correction")


def test_a_complete_run_is_never_resumed_and_resume_needs_a_run(classifier: Path, tmp_path: Path) -> None:
    config = tiny_experiment(classifier).config
    _unfinished_run(tmp_path / "run", classifier)
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({**base_manifest(config), "status": "complete"}))
    with pytest.raises(RunFolderError, match="already exists and is not empty: it holds a complete run"):
        RunStore(tmp_path / "run", config)
    with pytest.raises(RunFolderError, match="--resume: .* holds no run to resume"):
        RunStore(tmp_path / "empty", config, resume=True)
    assert not (tmp_path / "empty").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="already exists and is not empty; choose another --out"):
        RunStore(tmp_path / "other", config)
    # A refused folder is left as it was: no lock file behind.
    assert sorted(path.name for path in (tmp_path / "other").iterdir()) == ["notes.txt"]
    assert not (tmp_path / "run" / ".paribus.lock").exists()


def _shard(units: list[int], arm: str = "factual") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unit_id": units,
            "arm": arm,
            "template": 0,
            "text": [f"t{u}" for u in units],
            "outcome": "decision",
            "value": [float(u) for u in units],
        }
    )


def test_shards_are_written_whole_and_no_pair_is_stored_twice(tmp_path: Path) -> None:
    shards = ShardStore(tmp_path)
    shards.append(_shard([0, 1]))
    shards.append(_shard([0, 1], arm="do(sex=male)"))
    (shards.folder / ".outcomes-partial.parquet.tmp").write_bytes(b"half a file")
    reopened = ShardStore(tmp_path)
    assert not list(shards.folder.glob(".*.tmp"))
    assert sorted(map(tuple, reopened.read()[["unit_id", "arm"]].to_numpy().tolist())) == [
        (0, "do(sex=male)"),
        (0, "factual"),
        (1, "do(sex=male)"),
        (1, "factual"),
    ]
    with pytest.raises(RunError, match="already exists: the same .unit, arm. pairs were evaluated twice"):
        reopened.append(_shard([0, 1]))
    reopened.append(_shard([1, 2]))
    with pytest.raises(
        RunError, match=r"2 outcome rows .* repeat a .unit, arm, outcome., e.g. unit 1 in factual \(decision\)"
    ):
        reopened.read()


class _CountingExecutor:
    """Outcome = text length; remembers the distinct texts of every shard (what evaluate_outcomes would run)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def evaluate(self, shards: list[pd.DataFrame], on_shard) -> None:
        for shard in shards:
            self.texts += shard["text"].unique().tolist()
            on_shard(shard.assign(outcome="decision", value=shard["text"].str.len().astype(float)))


def test_each_distinct_text_is_evaluated_once_across_shards_and_batches(classifier: Path, tmp_path: Path) -> None:
    experiment = tiny_experiment(classifier, sampling={"units": 300, "seed": 5}, executor={"shard_units": 8})
    units = experiment.model.sample_units(300, seed=5)
    worlds = realize_arms(experiment, units)
    shards, executor = ShardStore(tmp_path), _CountingExecutor()
    first = experiment.model.sample_units(120, seed=5)
    _evaluate_new_units(experiment, first, realize_arms(experiment, first), executor, shards, None)
    _evaluate_new_units(experiment, units, worlds, executor, shards, None, start=120)
    items = arm_texts(experiment, units, worlds)
    assert len(executor.texts) == items["text"].nunique() < len(items)
    outcomes = stored_outcomes(experiment, units, shards)
    assert len(outcomes) == len(items)
    assert (outcomes["value"] == outcomes["text"].str.len()).all()


def test_cli_resume_and_out_must_name_one_folder(classifier: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from experiments.cli import app

    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(classifier), sort_keys=False))
    done = CliRunner().invoke(
        app, ["run", str(config_file), "--out", str(tmp_path / "a"), "--resume", str(tmp_path / "b")]
    )
    assert done.exit_code == 2
    assert "name different folders; a resumed run writes into the folder it resumes" in done.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_reordered_factor_values_are_a_different_config(classifier: Path, tmp_path: Path) -> None:
    """The order of a factor's values decides what each unit's noise picks, so a reordering is refused."""
    _unfinished_run(tmp_path / "run", classifier)
    factors = tiny_config(classifier)["factors"]
    reordered = {**factors, "insurance": {"values": dict(reversed(factors["insurance"]["values"].items()))}}
    experiment = compile_config(parse_config({**tiny_config(classifier), "factors": reordered}))
    assert config_hash(experiment.config) != config_hash(tiny_experiment(classifier).config)
    with pytest.raises(
        ConfigError,
        match=r"factors\.insurance\.values \(key order\) \(\['private', 'public', 'none'\] -> \['none', 'public', 'private'\]\)",
    ):
        run_experiment(experiment, out_dir=tmp_path / "run")


def test_a_generation_run_killed_and_resumed_keeps_every_answer_as_an_uninterrupted_run(tmp_path: Path) -> None:
    """Generated answers and their unparsed counts live in the shards, so a resume neither loses nor redraws them."""
    data = yaml.safe_load((ROOT / "experiments" / "examples" / "triage.yaml").read_text(encoding="utf-8"))
    data.update(
        name="generated",
        outcome={
            "type": "generation",
            "max_new_tokens": 2,
            "parse": {"yes": r"^\s*yes\b", "no": r"^\s*nope\b"},
            "target": "yes",
            "samples": 2,
            "temperature": 1.0,
        },
        sampling={"units": 120, "seed": 4},
        executor={"shard_units": 2},
        inference={"bootstrap": 200},
    )
    for key in ("mediation", "evidence", "fairness", "hypotheses"):
        data.pop(key, None)
    config_file = tmp_path / "generated.yaml"
    config_file.write_text(yaml.safe_dump(data, sort_keys=False))
    whole = run_experiment(compile_config(parse_config(data), base_dir=tmp_path), out_dir=tmp_path / "whole")
    killed = tmp_path / "killed"
    _kill_after_shards(_cli("run", str(config_file), "--out", str(killed)), killed / "shards", 3)
    _resume(config_file, killed)
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["shards"]["reused"] >= 2
    outcomes = pd.read_parquet(killed / "outcomes.parquet")
    assert {"answers", "unparsed"} <= set(outcomes.columns) and outcomes["unparsed"].sum() > 0
    pd.testing.assert_frame_equal(outcomes, pd.read_parquet(whole.folder / "outcomes.parquet"))
    assert manifest["generation"] == whole.manifest["generation"]
    pd.testing.assert_frame_equal(pd.read_csv(killed / "effects.csv"), pd.read_csv(whole.folder / "effects.csv"))
