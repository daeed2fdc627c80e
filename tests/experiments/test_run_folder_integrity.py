"""A run folder an auditor can trust: provenance checked on resume, checksums, verification, one writer, safe CSVs.

Interrupted runs are simulated in process: a progress listener raises after a few shards
are stored, and the pipeline marks the run failed, keeping its shards, as a crash would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from experiments import Experiment, compile_config, parse_config, run_experiment
from experiments._verify import verify_run
from experiments.errors import RunFolderError
from experiments.run import LockHolder, RunStore, read_table, verify_checksums
from tests.experiments._tiny_runs import ROOT, save_tiny_classifier, tiny_config, tiny_experiment

SECTIONS: dict[str, dict[str, Any]] = {"sampling": {"units": 60, "seed": 5}, "executor": {"shard_units": 4}}
LOCK = ".paribus.lock"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def finished(classifier: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny run with patching, evidence, hypotheses and fairness: every kind of file a run writes."""
    data = tiny_config(classifier)
    data["mediation"] = [
        {
            "treatment": "insurance",
            "contrast": ["none", "private"],
            "components": ["resid_pre"],
            "positions": ["last"],
            "units": 4,
        }
    ]
    data["evidence"] = {"methods": ["attention", "gradient_x_input"], "units": 6, "token_view_units": 2}
    data["hypotheses"] = [{"id": "H1", "claim": "sex does not matter", "effect": "sex[*]", "equivalence": 0.5}]
    data["fairness"] = {"protected": ["sex"], "threshold": 0.5}
    folder = tmp_path_factory.mktemp("runs") / "finished"
    run_experiment(compile_config(parse_config(data)), out_dir=folder)
    return folder


class _Interrupted(Exception):
    """Stands for a crash in the middle of the model evaluation."""


def _interrupted(experiment: Experiment, folder: Path, *, after: int = 3) -> dict[str, Any]:
    """Run `experiment` into `folder` and stop it once `after` shards are stored; the manifest it leaves."""
    stored = 0

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal stored
        if stage == "evaluating the model":
            stored += 1
            if stored >= after:
                raise _Interrupted

    with pytest.raises(_Interrupted):
        run_experiment(experiment, out_dir=folder, progress=progress)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "failed" and len(_shards(folder)) == after
    assert not (folder / LOCK).exists(), "a failed run releases its lock"
    return manifest


def _shards(folder: Path) -> dict[str, bytes]:
    return {f"shards/{path.name}": path.read_bytes() for path in sorted((folder / "shards").glob("outcomes-*.parquet"))}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# 1. provenance on resume


def test_resume_after_new_weights_in_the_model_folder_is_refused_and_uses_no_shard(tmp_path: Path) -> None:
    model = save_tiny_classifier(tmp_path / "model", seed=11)
    experiment = tiny_experiment(model, **SECTIONS)
    run = tmp_path / "run"
    stored = _interrupted(experiment, run)
    shards = _shards(run)
    save_tiny_classifier(model, seed=12)  # new weights saved into the same folder
    for _ in range(2):  # a refused attempt must not make the next one pass
        with pytest.raises(
            RunFolderError,
            match=r"these differ: model_fingerprint \('[0-9a-f]{64}' -> '[0-9a-f]{64}'\)\. "
            r"None of its 3 stored shards was used",
        ):
            run_experiment(experiment, out_dir=run, resume=True)
        assert _shards(run) == shards and not (run / "outcomes.parquet").exists()
        assert json.loads((run / "manifest.json").read_text())["model_fingerprint"] == stored["model_fingerprint"]
    save_tiny_classifier(model, seed=11)  # the weights it was run with: the resume goes through
    resumed = run_experiment(experiment, out_dir=run, resume=True)
    assert resumed.manifest["shards"]["reused"] == 3
    assert [entry["previous_status"] for entry in resumed.manifest["resumes"]] == ["failed", "failed", "failed"]
    whole = run_experiment(experiment, out_dir=tmp_path / "whole")
    pd.testing.assert_frame_equal(
        pd.read_parquet(run / "outcomes.parquet"), pd.read_parquet(whole.folder / "outcomes.parquet")
    )


def test_a_changed_paribus_version_and_label_mapping_are_listed_field_by_field(tmp_path: Path) -> None:
    """Swapping a classifier's labels keeps its weights and vocabulary (the fingerprint) but changes what class_prob reads."""
    model = save_tiny_classifier(tmp_path / "model")
    experiment = tiny_experiment(model, **SECTIONS)
    run = tmp_path / "run"
    manifest = _interrupted(experiment, run)
    (run / "manifest.json").write_text(
        json.dumps({**manifest, "packages": {**manifest["packages"], "paribus": "0.0.1"}})
    )
    config = json.loads((model / "config.json").read_text())
    config.update(id2label={"0": "yes", "1": "no"}, label2id={"yes": 0, "no": 1})
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunFolderError) as refused:
        run_experiment(experiment, out_dir=run, resume=True)
    message = str(refused.value)
    assert f"packages.paribus ('0.0.1' -> {manifest['packages']['paribus']!r})" in message
    assert (
        "outcome_definitions ({'decision': {'spec': \"ClassProb(label='yes')\", 'labels': {'0': 'no', '1': 'yes'}}} -> "
        in message
    )
    assert "'labels': {'0': 'yes', '1': 'no'}}})" in message
    assert "model_fingerprint" not in message


# 2. checksums


def test_the_manifest_lists_every_file_the_run_wrote_with_its_sha256(finished: Path) -> None:
    manifest = json.loads((finished / "manifest.json").read_text())
    written = {path.relative_to(finished).as_posix() for path in finished.rglob("*") if path.is_file()}
    assert set(manifest["checksums"]) == written - {"manifest.json", "report.html"}
    assert {"mediation_0_insurance.png", "token_view.html", "config.yaml", "summary.md", "hypotheses.csv"} <= written
    assert all(_sha256(finished / name) == digest for name, digest in manifest["checksums"].items())
    assert not (finished / "shards").exists() and not (finished / LOCK).exists()
    verify_checksums(finished)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda run: (run / "effects.csv").write_text("edited\n"), r"effects\.csv changed since the run wrote it"),
        (lambda run: (run / "units.parquet").unlink(), r"units\.parquet is listed in manifest\.json but missing"),
        (lambda run: (run / "notes.txt").write_text("mine"), r"notes\.txt is not listed in manifest\.json"),
        (
            lambda run: (run / "manifest.json").write_text(
                json.dumps(
                    {k: v for k, v in json.loads((run / "manifest.json").read_text()).items() if k != "checksums"}
                )
            ),
            "written before checksums were kept",
        ),
    ],
    ids=["changed", "missing", "unlisted", "no-checksums"],
)
def test_verify_checksums_names_the_file_and_what_to_do(
    finished: Path, tmp_path: Path, change: Any, message: str
) -> None:
    run = Path(shutil.copytree(finished, tmp_path / "copy"))
    verify_checksums(run)
    change(run)
    with pytest.raises(RunFolderError, match=message):
        verify_checksums(run)


def test_an_edited_shard_is_refused_on_resume(classifier: Path, tmp_path: Path) -> None:
    experiment = tiny_experiment(classifier, **SECTIONS)
    run = tmp_path / "run"
    _interrupted(experiment, run)
    edited = sorted((run / "shards").glob("outcomes-*.parquet"))[1]
    shard = pd.read_parquet(edited)
    shard.assign(value=shard["value"] + 100).to_parquet(edited, index=False)
    with pytest.raises(
        RunFolderError,
        match=rf"cannot be resumed: shards/{edited.name} changed since the run wrote it .* no stored shard was used",
    ):
        run_experiment(experiment, out_dir=run, resume=True)
    assert not (run / "outcomes.parquet").exists()


def test_a_shard_written_but_never_listed_is_recomputed_and_the_resume_says_so(
    classifier: Path, tmp_path: Path
) -> None:
    """As a run killed between writing a shard and listing it leaves the folder; the unlisted shard is also wrong."""
    experiment = tiny_experiment(classifier, **SECTIONS)
    run = tmp_path / "run"
    manifest = _interrupted(experiment, run)
    unlisted = sorted(name for name in manifest["checksums"] if name.startswith("shards/"))[0]
    shard = pd.read_parquet(run / unlisted)
    shard.assign(value=shard["value"] + 100).to_parquet(run / unlisted, index=False)
    del manifest["checksums"][unlisted]
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / ".units.parquet.tmp").write_bytes(b"half a file")
    resumed = run_experiment(experiment, out_dir=run, resume=True)
    assert resumed.manifest["resumes"][0]["untrusted_shards_removed"] == [unlisted]
    assert resumed.manifest["shards"]["reused"] == 2
    whole = run_experiment(experiment, out_dir=tmp_path / "whole")
    pd.testing.assert_frame_equal(
        pd.read_parquet(run / "outcomes.parquet"), pd.read_parquet(whole.folder / "outcomes.parquet")
    )
    verify_checksums(run)


# 3. verify_run


def test_a_finished_run_verifies(finished: Path) -> None:
    verification = verify_run(finished)
    assert verification.ok, verification.summary()
    assert verification.checksums_ok and verification.fingerprint_matches and not verification.problems
    assert verification.checked_outcomes == 20 < verification.stored_outcomes
    assert verification.max_abs_difference <= 1e-4
    assert verification.summary().splitlines()[-1] == "verdict: ok"


def test_an_edited_outcome_with_its_checksum_updated_is_caught_by_reevaluation(finished: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(finished, tmp_path / "copy"))
    outcomes = pd.read_parquet(run / "outcomes.parquet")
    outcomes.loc[17, "value"] += 0.25
    outcomes.to_parquet(run / "outcomes.parquet", index=False)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["checksums"]["outcomes.parquet"] = _sha256(run / "outcomes.parquet")
    (run / "manifest.json").write_text(json.dumps(manifest))

    verification = verify_run(run, sample=10_000)
    assert verification.checksums_ok and verification.fingerprint_matches
    assert verification.checked_outcomes == len(outcomes)
    assert verification.max_abs_difference == pytest.approx(0.25, abs=1e-4)
    assert (
        verification.worst
        == f"unit {outcomes.loc[17, 'unit_id']}, {outcomes.loc[17, 'arm']}, {outcomes.loc[17, 'outcome']}"
    )
    assert not verification.ok and verification.summary().endswith("verdict: NOT OK")


def test_an_edited_table_and_other_weights_are_reported(classifier: Path, tmp_path: Path) -> None:
    model = save_tiny_classifier(tmp_path / "model")
    run = run_experiment(tiny_experiment(model), out_dir=tmp_path / "run").folder
    (run / "effects.csv").write_text((run / "effects.csv").read_text().replace("insurance", "sex", 1))
    verification = verify_run(run, sample=5)
    assert not verification.checksums_ok and not verification.ok
    assert len(verification.problems) == 1 and verification.problems[0].startswith("effects.csv changed since")
    assert verification.max_abs_difference <= 1e-4
    assert "problem: effects.csv changed since the run wrote it" in verification.summary()

    save_tiny_classifier(model, seed=12)
    verification = verify_run(run, sample=5)
    assert not verification.fingerprint_matches and verification.max_abs_difference > 1e-3
    assert f"model fingerprint: DIFFERS: the manifest says {verification.stored_fingerprint}" in verification.summary()


def test_verify_refuses_what_is_not_a_run(finished: Path, tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="is not a run folder: it holds no manifest.json"):
        verify_run(tmp_path)
    with pytest.raises(ValueError, match="sample .--sample. must be at least 1, got 0"):
        verify_run(finished, sample=0)


def test_verify_finds_an_edited_shard_of_an_unfinished_run(classifier: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _interrupted(tiny_experiment(classifier, **SECTIONS), run)
    edited = sorted((run / "shards").glob("outcomes-*.parquet"))[0]
    shard = pd.read_parquet(edited)
    shard.assign(value=shard["value"] + 100).to_parquet(edited, index=False)
    verification = verify_run(run, sample=10_000)
    assert verification.problems[0].startswith(f"shards/{edited.name} changed since the run wrote it")
    assert "the run is not complete (manifest status 'failed')" in verification.problems[1]
    assert verification.max_abs_difference == pytest.approx(100, abs=1e-4)


# 4. one writer per folder


def _lock_file(folder: Path, pid: int, host: str | None = None) -> dict[str, Any]:
    holder = {"pid": pid, "host": host or socket.gethostname(), "started_at": "2024-01-01T00:00:00+00:00"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK).write_text(json.dumps(holder))
    return holder


def test_a_second_writer_is_refused_at_once_naming_the_holder(classifier: Path, tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = _lock_file(tmp_path / "run", sleeper.pid)
        started = time.monotonic()
        with pytest.raises(
            RunFolderError, match=rf"is being written by another run: pid {sleeper.pid} on .* since 2024-01-01"
        ):
            run_experiment(tiny_experiment(classifier), out_dir=tmp_path / "run")
        assert time.monotonic() - started < 1
        assert json.loads((tmp_path / "run" / LOCK).read_text()) == holder
        assert sorted(path.name for path in (tmp_path / "run").iterdir()) == [LOCK]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_run_started_into_a_folder_being_written_is_refused_and_the_first_completes(
    classifier: Path, tmp_path: Path
) -> None:
    """The issue's scenario: two runs into one folder; the second used to 'resume' the running one and break it."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(classifier, sampling={"units": 400, "seed": 5}), sort_keys=False))
    run = tmp_path / "run"
    first = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from experiments import load_experiment, run_experiment; "
            "run_experiment(load_experiment(sys.argv[1]), out_dir=Path(sys.argv[2]))",
            str(config),
            str(run),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not (run / "config.yaml").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(RunFolderError, match=rf"is being written by another run: pid {first.pid} on "):
        run_experiment(tiny_experiment(classifier, sampling={"units": 400, "seed": 5}), out_dir=run, resume=True)
    assert time.monotonic() - started < 1
    _, errors = first.communicate(timeout=300)
    assert first.returncode == 0, errors.decode()
    assert json.loads((run / "manifest.json").read_text())["status"] == "complete"
    verify_checksums(run)


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_recorded(classifier: Path, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = _lock_file(tmp_path / "run", dead.pid)
    result = run_experiment(tiny_experiment(classifier), out_dir=tmp_path / "run")
    assert result.lock_taken_over == LockHolder(**holder)
    assert result.manifest["lock_taken_over"] == holder
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["lock_taken_over"] == holder
    assert not (tmp_path / "run" / LOCK).exists()


def test_a_lock_from_another_host_or_this_process_is_never_taken_over(classifier: Path, tmp_path: Path) -> None:
    config = tiny_experiment(classifier).config
    _lock_file(tmp_path / "elsewhere", 1, host="other-machine.example")
    with pytest.raises(RunFolderError, match="pid 1 on other-machine.example .*another host: whether it still runs"):
        RunStore(tmp_path / "elsewhere", config)
    store = RunStore(tmp_path / "mine", config)
    with pytest.raises(RunFolderError, match=rf"pid {os.getpid()} on "):
        RunStore(tmp_path / "mine", config)
    store.close()
    RunStore(tmp_path / "mine", config).close()


# 5. CSV cells that a spreadsheet would run


def test_csv_text_cells_are_neutralised_and_read_back_as_written(tmp_path: Path, classifier: Path) -> None:
    frame = pd.DataFrame(
        {
            "text": ["=1+1", "+1", "-1 vs 0", "@SUM(A1)", "\tx", "\rx", "'quoted", "plain", None],
            "number": [-1.5, 2.0, -3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        }
    )
    store = RunStore(tmp_path / "run", tiny_experiment(classifier).config)
    path = store.write_table("table.csv", frame)
    store.close()
    written = pd.read_csv(path)
    assert written["text"].tolist()[:7] == ["'=1+1", "'+1", "'-1 vs 0", "'@SUM(A1)", "'\tx", "'\rx", "''quoted"]
    assert written["text"].tolist()[7] == "plain" and written["number"].tolist() == frame["number"].tolist()
    assert "\n-1.5," not in path.read_text() and ",-1.5\n" in path.read_text()
    pd.testing.assert_frame_equal(read_table(tmp_path / "run", "table.csv"), frame)


def test_a_dataset_cell_that_is_a_formula_lands_neutralised_in_dropped_csv(classifier: Path, tmp_path: Path) -> None:
    notes = [
        {"case_id": f"N{i}", "note": f"A {30 + i} year old woman with {insurance} insurance.", "insurance": insurance}
        for i, insurance in enumerate(["private", "none"] * 8)
    ]
    notes.append({"case_id": "=1+1", "note": "A man with gold insurance.", "insurance": "=HYPERLINK(1)"})
    pd.DataFrame(notes).to_csv(tmp_path / "notes.csv", index=False)
    (tmp_path / "rules.yaml").write_text(
        'factor: insurance\nvalues: [private, none]\nforms:\n  - {private: "private insurance", none: "no insurance"}\n'
    )
    config = {
        "name": "formulas",
        "model": {"id": str(classifier), "task": "sequence-classifier", "device": "cpu"},
        "outcome": {"type": "class_prob", "label": "yes"},
        "data": {
            "path": "notes.csv",
            "text": "note",
            "id": "case_id",
            "factors": {"insurance": "insurance"},
            "suffix": " Refer?",
        },
        "rewrite": {"insurance": "rules.yaml"},
        "factors": {"insurance": {"values": ["private", "none"]}},
        "graph": {"edges": ["insurance -> decision"]},
        "effects": [{"treatment": "insurance", "contrast": ["none", "private"]}],
        "inference": {"bootstrap": 200},
    }
    experiment = compile_config(parse_config(config), base_dir=tmp_path)
    run = run_experiment(experiment, out_dir=tmp_path / "run").folder
    dropped = pd.read_csv(run / "dropped.csv")
    assert dropped[["id", "value"]].values.tolist() == [["'=1+1", "'=HYPERLINK(1)"]]
    assert read_table(run, "dropped.csv")["id"].tolist() == ["=1+1"]
    verification = verify_run(run, sample=10_000)  # documents are re-read with their suffix
    assert verification.ok, verification.summary()


def test_a_contrast_starting_with_a_minus_still_matches_its_hypothesis(classifier: Path, tmp_path: Path) -> None:
    data = tiny_config(classifier)
    data["factors"] = {**data["factors"], "insurance": {"values": {"private": ["private"], "-none": ["no"]}}}
    data["effects"] = [{"treatment": "insurance", "contrast": ["-none", "private"]}]
    data["hypotheses"] = [{"id": "H1", "claim": "no effect", "effect": "insurance[-none vs private]", "equivalence": 5}]
    run = run_experiment(compile_config(parse_config(data)), out_dir=tmp_path / "run").folder
    assert "'-none vs private" in (run / "effects.csv").read_text()
    verdicts = read_table(run, "hypotheses.csv")
    assert verdicts[["id", "verdict"]].values.tolist() == [["H1", "supported"]]


# 6. a folder that cannot be written


def test_an_out_folder_under_a_file_is_a_run_folder_error(classifier: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    experiment = tiny_experiment(classifier)
    with pytest.raises(RunFolderError, match=r"cannot create run folder '.*/file/run': \[Errno 20\] Not a directory"):
        run_experiment(experiment, out_dir=tmp_path / "file" / "run")
    with pytest.raises(RunFolderError, match=r"cannot create run folder '.*/file': \[Errno 17\] File exists"):
        run_experiment(experiment, out_dir=tmp_path / "file")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions that bind (not root)")
def test_an_out_folder_in_a_read_only_folder_is_a_run_folder_error(classifier: Path, tmp_path: Path) -> None:
    (tmp_path / "locked").mkdir()
    (tmp_path / "existing").mkdir()
    (tmp_path / "locked").chmod(0o500)
    (tmp_path / "existing").chmod(0o500)
    try:
        with pytest.raises(RunFolderError, match=r"cannot create run folder '.*/locked/run': .*Permission denied"):
            run_experiment(tiny_experiment(classifier), out_dir=tmp_path / "locked" / "run")
        with pytest.raises(RunFolderError, match=r"'.*/existing': cannot create its lock file .*Permission denied"):
            run_experiment(tiny_experiment(classifier), out_dir=tmp_path / "existing")
    finally:
        (tmp_path / "locked").chmod(0o700)
        (tmp_path / "existing").chmod(0o700)


def test_report_and_compare_refuse_a_folder_whose_files_changed(finished: Path, tmp_path: Path) -> None:
    """Both read a folder only after its checksums hold; a redacted report needs no edit of the folder."""
    from experiments.report import compare_runs, render_report

    edited = tmp_path / "edited"
    shutil.copytree(finished, edited)
    effects = edited / "effects.csv"
    effects.write_text(effects.read_text().replace("0.", "1.", 1))
    for read in (lambda: render_report(edited), lambda: compare_runs(finished, edited)):
        with pytest.raises(RunFolderError, match=r"effects\.csv changed since the run wrote it"):
            read()
    assert "sha256:" in render_report(finished, redact_texts=True)
