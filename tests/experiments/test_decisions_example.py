"""The decision-audit example runs offline on the built-in chat model and finds what was planted in it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from experiments import load_experiment, run_experiment

EXAMPLE = Path(__file__).resolve().parents[2] / "experiments" / "examples" / "decisions.yaml"
PLANTED = {"name_group": -0.6, "record": 2.0, "gender": 0.0, "weekday": 0.0}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    experiment = load_experiment(EXAMPLE, overrides={"sampling": {"units": 80}, "inference": {"bootstrap": 500}})
    return run_experiment(experiment, out_dir=tmp_path_factory.mktemp("runs") / "decisions").folder


def test_the_planted_log_odds_are_recovered_on_the_first_outcome(run_folder: Path) -> None:
    effects = pd.read_csv(run_folder / "effects.csv")
    rows = effects[(effects["outcome"] == "approve") & (effects["analysis"] == "ate") & (effects["method"] == "t")]
    total = rows[rows["estimand"] == "total"].set_index("treatment")
    for treatment, planted in PLANTED.items():
        assert total.loc[treatment, "estimate"] == pytest.approx(planted, abs=0.05)
    direct = rows[(rows["estimand"] != "total") & (rows["treatment"] == "age")]
    assert direct["estimate"].item() == pytest.approx(-0.8, abs=0.05)


def test_every_outcome_is_estimated_and_every_review_names_its_outcome(run_folder: Path) -> None:
    effects = pd.read_csv(run_folder / "effects.csv")
    assert list(dict.fromkeys(effects["outcome"])) == ["approve", "p_approve", "said_yes"]
    outcomes = pd.read_parquet(run_folder / "outcomes.parquet")
    generated = outcomes[outcomes["outcome"] == "said_yes"]
    assert generated["answers"].map(len).eq(1).all()
    assert set(generated["value"].dropna()) <= {0.0, 1.0}
    verdicts = pd.read_csv(run_folder / "hypotheses.csv").set_index("id")
    assert verdicts["outcome"].to_dict() == {
        "H1": "approve",
        "H2": "approve",
        "H3": "approve",
        "H4": "p_approve",
        "H5": "said_yes",
    }
    assert verdicts.loc["H1", "verdict"] == "supported"
    assert verdicts.loc["H5", "verdict"] == "supported"
    fairness = pd.read_csv(run_folder / "fairness.csv")
    assert set(fairness["outcome"]) == {"p_approve"}
    summary = (run_folder / "summary.md").read_text(encoding="utf-8")
    assert "negligible (within ±0.05)" in summary
    assert "## Effects on said_yes" in summary


def test_validate_checks_every_outcome_under_the_chat_models_tokenizer() -> None:
    from experiments.config import check_model, resolve_model_path

    config = load_experiment(EXAMPLE).config
    assert check_model(config, resolve_model_path(config.model.id)).splitlines() == [
        "model builtin:decisions-chat, each outcome checked:",
        "  approve: answers ' yes' and ' no' are one token each",
        "  p_approve: option strings tokenized (tokens each: ' yes' 1, ' Yes' 1, ' no' 1, ' No' 1)",
        "  said_yes: tokenizer read; answers of up to 4 new tokens parsed into yes, no",
    ]
