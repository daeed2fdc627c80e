"""The sequence-classifier path end to end: a tiny BERT built from a config, run in exact mode, against a hand enumeration."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, BertForSequenceClassification

from experiments import compile_config, parse_config, run_experiment
from tests.experiments._tiny_runs import save_tiny_classifier

FACTORS = {
    "sex": {"values": {"female": ["woman", "lady"], "male": ["man"]}},
    "insurance": {"values": {"private": ["private"], "public": ["Medicaid"], "none": ["no"]}},
    "symptom": {"values": {"mild": ["a headache"], "severe": ["chest pain", "sudden weakness"]}},
}
TEMPLATE = "A {sex} with {insurance} insurance and {symptom}. Refer?"


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-bert"), seed=7)


def hand_ate(folder: Path, treatment: str, treated: str, reference: str) -> float:
    """E[P(yes) | do(treated)] - E[P(yes) | do(reference)], every factor uniform, by plain transformers forwards."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = BertForSequenceClassification.from_pretrained(folder).eval()

    def mean_under(value: str) -> float:
        others = [name for name in FACTORS if name != treatment]
        total = 0.0
        for other_values in itertools.product(*(FACTORS[name]["values"] for name in others)):
            values = dict(zip(others, other_values), **{treatment: value})
            form_lists = [FACTORS[name]["values"][values[name]] for name in FACTORS]
            weight = np.prod([1 / len(FACTORS[name]["values"]) for name in others])
            for forms in itertools.product(*form_lists):
                text = TEMPLATE.format(**dict(zip(FACTORS, forms)))
                with torch.no_grad():
                    logits = model(**tokenizer(text, return_tensors="pt")).logits[0]
                total += weight / len(list(itertools.product(*form_lists))) * torch.softmax(logits, -1)[1].item()
        return total

    return mean_under(treated) - mean_under(reference)


def test_exact_run_on_a_classifier_matches_hand_enumeration(classifier_path: Path, tmp_path: Path) -> None:
    config = {
        "name": "classifier",
        "model": {"id": str(classifier_path), "task": "sequence-classifier", "device": "cpu"},
        "outcome": {"type": "class_prob", "label": "yes"},
        "prompt": {"template": TEMPLATE},
        "factors": FACTORS,
        "graph": {"edges": ["sex -> decision", "insurance -> decision", "symptom -> decision"]},
        "effects": [{"treatment": "insurance", "moderators": ["sex"]}, {"treatment": "sex"}],
        "sampling": {"mode": "exact"},
    }
    result = run_experiment(compile_config(parse_config(config)), out_dir=tmp_path / "run")
    effects = pd.read_csv(tmp_path / "run" / "effects.csv")
    ate = effects[effects["analysis"] == "ate"].set_index(["treatment", "contrast"])
    assert set(ate["method"]) == {"exact"}
    for treatment, treated, reference in [
        ("insurance", "none", "private"),
        ("insurance", "public", "private"),
        ("sex", "male", "female"),
    ]:
        expected = hand_ate(classifier_path, treatment, treated, reference)
        assert ate.loc[(treatment, f"{treated} vs {reference}"), "estimate"] == pytest.approx(expected, abs=1e-6)
    assert expected != 0
    assert result.manifest["n_units"] == len(pd.read_parquet(tmp_path / "run" / "units.parquet"))
