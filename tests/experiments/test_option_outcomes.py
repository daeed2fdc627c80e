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
        assert outcomes["outcome"].to_numpy() == pytest.approx(expected, abs=1e-6)
        if outcome["type"] == "choice_prob":
            assert ((outcomes["outcome"] > 0) & (outcomes["outcome"] < 1)).all()
        summary = (result.folder / "summary.md").read_text(encoding="utf-8")
        assert {"choice_prob": "probability of the option 'yes'", "expected_value": "expected value yes=1"}[
            outcome["type"]
        ] in summary
