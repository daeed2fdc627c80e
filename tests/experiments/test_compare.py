"""`paribus compare`: two runs of one model agree on the planted effect; the model trained without it differs.

Three runs of the demo config (without patching and evidence, for speed): the demo model
with seeds 1 and 2 (different units, compared as independent samples), and
`builtin:triage-demo-fair` with seed 1 (the same units, compared unit by unit), whose
insurance effect is zero by construction where the demo's is about -1.5 log-odds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from causal import COMPARISON_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
PLANTED = ("ate", "total", "insurance", "none vs private")


def paribus(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "experiments.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900
    )


@pytest.fixture(scope="module")
def runs(example: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Runs a1, a2 (demo, seeds 1 and 2) and fair (the fair model, seed 1)."""
    base = tmp_path_factory.mktemp("compare")
    config = yaml.safe_load(example.read_text())
    config.pop("mediation")
    config.pop("evidence")
    config["inference"]["bootstrap"] = 200
    folders = {}
    for name, model, seed in (
        ("a1", "builtin:triage-demo", 1),
        ("a2", "builtin:triage-demo", 2),
        ("fair", "builtin:triage-demo-fair", 1),
    ):
        config["model"]["id"] = model
        (base / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        folders[name] = base / name
        done = paribus(
            "run",
            str(base / f"{name}.yaml"),
            "--units",
            "120",
            "--seed",
            str(seed),
            "--out",
            str(folders[name]),
            "--fail-on-hypotheses",
        )
        assert done.returncode == (3 if name == "fair" else 0), done.stderr
    return folders


def planted_row(comparison: Path) -> pd.Series:
    frame = pd.read_csv(comparison / "comparison.csv")
    assert tuple(frame.columns) == COMPARISON_COLUMNS
    rows = frame.set_index(["analysis", "estimand", "treatment", "contrast"]).loc[[PLANTED]]
    (row,) = [row for _, row in rows.iterrows() if row["method"] == "t" and pd.isna(row["moderator"])]
    return row


@pytest.mark.slow
def test_two_seeds_of_one_model_show_no_difference_in_the_planted_effect(runs: dict[str, Path], tmp_path: Path) -> None:
    done = paribus("compare", str(runs["a1"]), str(runs["a2"]), "--out", str(tmp_path / "same"))
    assert done.returncode == 0, done.stderr
    assert "The runs drew different units" in done.stdout
    row = planted_row(tmp_path / "same")
    assert row["pairing"] == "independent"
    assert not row["significant"]
    assert row["ci_low"] < 0 < row["ci_high"]
    assert row["estimate_a"] == pytest.approx(-1.5, abs=0.2) and row["estimate_b"] == pytest.approx(-1.5, abs=0.2)
    assert pd.read_csv(tmp_path / "same" / "verdict_changes.csv").empty


@pytest.mark.slow
def test_the_model_without_the_bias_differs_in_the_planted_effect(runs: dict[str, Path], tmp_path: Path) -> None:
    done = paribus("compare", str(runs["a1"]), str(runs["fair"]), "--out", str(tmp_path / "fair"))
    assert done.returncode == 0, done.stderr
    assert "Both runs drew the same units" in done.stdout
    row = planted_row(tmp_path / "fair")
    assert row["pairing"] == "paired"
    assert row["significant"]
    assert row["difference"] == pytest.approx(1.5, abs=0.2)
    assert row["ci_low"] > 1.0
    assert abs(row["estimate_b"]) < 0.2
    changes = pd.read_csv(tmp_path / "fair" / "verdict_changes.csv").set_index("id")
    assert changes.loc["H1", ["verdict_a", "verdict_b"]].tolist() == ["supported", "contradicted"]
    assert "| H1 | uninsured patients are referred less |" in (tmp_path / "fair" / "comparison.md").read_text()


def test_compare_refuses_a_folder_that_is_not_a_run_as_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    done = paribus("compare", str(tmp_path / "a"), str(tmp_path / "a"))
    assert done.returncode == 2
    assert f"{str(tmp_path / 'a')!r} is not a finished run folder: config.yaml is missing" in done.stderr
    assert "Traceback" not in done.stderr


def test_compare_refuses_an_output_folder_that_is_not_empty(runs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kept.txt").write_text("x")
    done = paribus("compare", str(runs["a1"]), str(runs["a2"]), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "already exists and is not empty; choose another --out" in done.stderr


def test_estimates_are_matched_by_outcome_and_differently_defined_outcomes_are_refused(
    example: Path, tmp_path: Path
) -> None:
    """Same model, same units: `refer` is defined alike in both runs and differs by exactly zero, unit by unit;
    `p` means P(yes) in run A and P(no) in run B, so it is not subtracted; B's `extra` is in one run only."""
    from experiments import load_experiment, run_experiment
    from experiments.report import compare_runs

    refer = {"name": "refer", "type": "logit_diff", "answers": {"positive": " yes", "negative": " no"}}
    answers = {"yes": " yes", "no": " no"}
    sides = {
        "a": [refer, {"name": "p", "type": "answer_prob", "answers": answers, "target": "yes"}],
        "b": [
            refer,
            {"name": "p", "type": "answer_prob", "answers": answers, "target": "no"},
            {"name": "extra", "type": "answer_prob", "answers": answers, "target": "yes"},
        ],
    }
    folders = {}
    for side, outcomes in sides.items():
        config = yaml.safe_load(example.read_text())
        for key in ("mediation", "evidence", "hypotheses", "fairness", "outcome"):
            config.pop(key)
        config.update(outcomes=outcomes, sampling={"units": 24, "seed": 4}, inference={"bootstrap": 200})
        path = tmp_path / f"{side}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        folders[side] = run_experiment(load_experiment(path), out_dir=tmp_path / side).folder
    comparison = compare_runs(folders["a"], folders["b"])
    assert comparison.refused == ("p",)
    frame = comparison.to_frame()
    assert set(frame["outcome"]) == {"refer"}
    average = frame[frame["analysis"] == "ate"]
    assert (average["pairing"] == "paired").all() and (average["difference"] == 0).all()
    unmatched = comparison.effects.unmatched_frame()
    assert set(unmatched["outcome"]) == {"extra"} and set(unmatched["side"]) == {"b"}
    assert "Not compared: the outcome p is defined differently in the two runs" in comparison.summary()


def test_compare_refuses_a_run_whose_effects_name_no_outcome(runs: dict[str, Path], tmp_path: Path) -> None:
    """A folder of an earlier version (effects.csv without `outcome`, checksums updated) is a user error that says so."""
    import hashlib
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(runs["a1"], old)
    effects = pd.read_csv(old / "effects.csv").drop(columns="outcome")
    effects.to_csv(old / "effects.csv", index=False)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["checksums"]["effects.csv"] = hashlib.sha256((old / "effects.csv").read_bytes()).hexdigest()
    (old / "manifest.json").write_text(json.dumps(manifest))
    done = paribus("compare", str(old), str(runs["a2"]), "--out", str(tmp_path / "cmp"))
    assert done.returncode == 2
    assert "written by an earlier Paribus whose effects.csv names no outcome" in done.stderr + done.stdout
