"""Outcomes over options of any token length, from config to run folder, equal to the interventions readers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from experiments import load_experiment, run_experiment
from experiments.config import load_yaml
from experiments.run import load_model
from interventions import ChoiceProb, ExpectedValue, evaluate_outcomes

EXAMPLES = Path(__file__).resolve().parents[2] / "experiments" / "examples"


def test_choice_and_expected_value_outcomes_run_end_to_end_and_equal_the_interventions_readers(tmp_path: Path) -> None:
    """The demo's causal LM read as P(yes among yes/no strings) and as an expected value; equal to the readers."""
    options = {"yes": [" yes", " Yes"], "no": [" no"]}
    for outcome, reader in (
        ({"type": "choice_prob", "options": options, "target": "yes"}, ChoiceProb(options=options, target="yes")),
        (
            {"type": "expected_value", "options": options, "values": {"yes": 1.0, "no": -1.0}},
            ExpectedValue(values={"yes": 1.0, "no": -1.0}, options=options),
        ),
    ):
        data = load_yaml(EXAMPLES / "triage.yaml")
        data.update(name="options", outcome=outcome, sampling={"units": 12, "seed": 2}, inference={"bootstrap": 200})
        for key in ("mediation", "evidence", "hypotheses", "fairness"):
            data.pop(key, None)
        path = tmp_path / f"{outcome['type']}.yaml"
        path.write_text(json.dumps(data), encoding="utf-8")
        result = run_experiment(load_experiment(path), out_dir=tmp_path / outcome["type"])
        outcomes = pd.read_parquet(result.folder / "outcomes.parquet")
        adapter, _ = load_model(load_experiment(result.folder / "config.yaml"))
        expected = evaluate_outcomes(adapter, outcomes["text"].tolist(), reader, share_prefix=False)
        assert outcomes["value"].to_numpy() == pytest.approx(expected, abs=1e-6)
        if outcome["type"] == "choice_prob":
            assert ((outcomes["value"] > 0) & (outcomes["value"] < 1)).all()
        summary = (result.folder / "summary.md").read_text(encoding="utf-8")
        assert {"choice_prob": "probability of the option 'yes'", "expected_value": "expected value yes=1"}[
            outcome["type"]
        ] in summary


def test_a_generation_outcome_stores_every_answer_and_counts_the_unparsed(tmp_path: Path) -> None:
    """Greedy answers of the demo model, parsed by regular expressions; values equal generate_outcomes by hand."""
    from interventions import Generation, generate_outcomes

    data = load_yaml(EXAMPLES / "triage.yaml")
    parse = {"yes": r"^\s*yes\b", "no": r"^\s*no\b"}
    data.update(
        name="generated",
        outcome={"type": "generation", "max_new_tokens": 2, "parse": parse, "target": "yes"},
        sampling={"units": 12, "seed": 2},
        inference={"bootstrap": 200},
    )
    for key in ("mediation", "evidence"):
        data.pop(key, None)
    data["fairness"] = {**data.get("fairness", {}), "threshold": 0.5}
    path = tmp_path / "generated.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = run_experiment(load_experiment(path), out_dir=tmp_path / "run")
    outcomes = pd.read_parquet(result.folder / "outcomes.parquet")
    assert {"answers", "unparsed"} <= set(outcomes.columns)
    adapter, _ = load_model(load_experiment(result.folder / "config.yaml"))
    by_hand = generate_outcomes(adapter, outcomes["text"].tolist(), Generation(2, parse, target="yes"), seed=2)
    assert outcomes["value"].to_numpy() == pytest.approx(by_hand.values, nan_ok=True)
    assert [list(answers) for answers in outcomes["answers"]] == [list(answers) for answers in by_hand.answers]
    assert outcomes["unparsed"].tolist() == by_hand.unparsed.tolist()
    manifest = json.loads((result.folder / "manifest.json").read_text(encoding="utf-8"))
    per_arm = {record["arm"]: record for record in manifest["generation"]}
    for arm, rows in outcomes.groupby("arm"):
        assert per_arm[arm]["unparsed"] == int(rows["unparsed"].sum())
        assert per_arm[arm]["answers"] == len(rows)
    summary = (result.folder / "summary.md").read_text(encoding="utf-8")
    assert "- generated answers of decision (outcomes.parquet has each):" in summary


def test_units_whose_answers_never_parse_are_left_out_and_counted_not_dropped_in_silence(tmp_path: Path) -> None:
    data = load_yaml(EXAMPLES / "triage.yaml")
    parse = {"yes": r"^\s*yes\b", "no": r"^\s*nope\b"}  # the model's " no" matches nothing
    data.update(
        name="unparsed",
        outcome={"type": "generation", "max_new_tokens": 2, "parse": parse, "target": "yes"},
        sampling={"units": 16, "seed": 2},
        inference={"bootstrap": 200},
    )
    for key in ("mediation", "evidence", "fairness"):
        data.pop(key, None)
    path = tmp_path / "unparsed.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = run_experiment(load_experiment(path), out_dir=tmp_path / "run")
    outcomes = pd.read_parquet(result.folder / "outcomes.parquet")
    assert outcomes["value"].isna().any() and (outcomes["value"].dropna() == 1.0).all()
    by_arm = outcomes.pivot(index="unit_id", columns="arm", values="value")
    kept = (by_arm["do(insurance=none)"] - by_arm["do(insurance=private)"]).notna()
    effects = pd.read_csv(result.folder / "effects.csv")
    row = effects[
        (effects["contrast"] == "none vs private") & (effects["analysis"] == "ate") & (effects["method"] == "t")
    ]
    assert int(row["n_units"].iloc[0]) == int(kept.sum()) < 16
    summary = (result.folder / "summary.md").read_text(encoding="utf-8")
    assert f"insurance (none vs private): {16 - int(kept.sum())} of 16 units have no parsed generated answer" in summary
