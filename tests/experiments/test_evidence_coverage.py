"""Evidence that cannot cover a factor is kept and said so, and the rest is still linked: no aborted run.

In the tiny classifier's tokenizer "Medicaid" and "no" are not as long as "private", so
integrated gradients against the counterfactual skips every unit of insurance; gradient x
input reads every unit of every factor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from experiments import run_experiment
from tests.experiments._tiny_runs import save_tiny_classifier, tiny_experiment

EVIDENCE = {
    "methods": ["gradient_x_input", "integrated_gradients"],
    "units": 8,
    "baseline": "counterfactual",
    "steps": 4,
}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-bert"))


def test_a_reading_without_a_factor_is_kept_unlinked_and_the_others_are_linked(
    classifier: Path, tmp_path: Path
) -> None:
    result = run_experiment(tiny_experiment(classifier, evidence=EVIDENCE), out_dir=tmp_path / "run")
    record = json.loads((result.folder / "manifest.json").read_text(encoding="utf-8"))["evidence"]
    assert record["not_linked"] == [
        {
            "method": "integrated_gradients",
            "baseline": "counterfactual",
            "factors_without_units": ["insurance"],
            "reason": record["not_linked"][0]["reason"],
        }
    ]
    links = pd.read_csv(result.folder / "evidence_links.csv")
    assert set(links["method"]) == {"gradient_x_input"}
    assert set(links["factor"]) == {"insurance", "sex"}
    evidence = pd.read_parquet(result.folder / "evidence.parquet")
    integrated = evidence[evidence["method"] == "integrated_gradients"]
    assert set(integrated["factor"]) == {"sex"} and len(integrated) > 0
    summary = (result.folder / "summary.md").read_text(encoding="utf-8")
    assert "Not linked: integrated_gradients (counterfactual baseline) has no value for insurance" in summary
