"""A relative model.id is a folder next to the config file, as data paths are, whatever the working directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from experiments import load_experiment, run_experiment
from experiments.cli import app
from experiments.config import stored_config
from tests.experiments._tiny_runs import save_tiny_classifier, tiny_config


@pytest.fixture
def config_beside_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "audit"
    save_tiny_classifier(folder / "models" / "tiny")
    data = tiny_config(Path("models/tiny"), sampling={"units": 8})
    path = folder / "audit.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return path


def test_a_relative_model_id_is_read_next_to_the_config(config_beside_model: Path) -> None:
    experiment = load_experiment(config_beside_model)
    folder = config_beside_model.parent / "models" / "tiny"
    assert experiment.model_spec.path == str(folder.resolve())
    assert experiment.config.model.id == "models/tiny"  # the config as written
    assert stored_config(experiment).model.id == str(folder.resolve())  # the run folder's copy runs anywhere


def test_validate_and_run_work_from_another_folder(config_beside_model: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(config_beside_model)])
    assert result.exit_code == 0, result.output
    run = run_experiment(load_experiment(config_beside_model), out_dir=Path("run"))
    manifest = json.loads((run.folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "complete"
    copy = load_experiment(run.folder / "config.yaml")
    assert copy.model_spec.path == str((config_beside_model.parent / "models" / "tiny").resolve())


@pytest.mark.parametrize("model_id", ["org/some-model", "builtin:triage-demo"])
def test_hub_and_builtin_ids_are_kept_as_written(tmp_path: Path, model_id: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(Path(model_id))), encoding="utf-8")
    assert load_experiment(path).model_spec.path == model_id
