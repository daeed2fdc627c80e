"""Several outcomes in one run: equal to one run per outcome, read in one forward pass per distinct text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import interventions._evaluate as evaluate_module
from experiments import ConfigError, load_experiment, run_experiment
from experiments.config import load_yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "experiments" / "examples"
YES_NO = {"yes": [" yes", " Yes"], "no": [" no", " No"]}
OUTCOMES: list[dict[str, Any]] = [
    {"name": "refer", "type": "logit_diff", "answers": {"positive": " yes", "negative": " no"}},
    {"name": "p_yes", "type": "answer_prob", "answers": {"yes": " yes", "no": " no"}, "target": "yes"},
    {"name": "p_refer", "type": "choice_prob", "options": YES_NO, "target": "yes"},
    {"name": "score", "type": "expected_value", "options": YES_NO, "values": {"yes": 5.0, "no": 1.0}},
    {"name": "p_no", "type": "answer_prob", "answers": {"yes": " yes", "no": " no"}, "target": "no"},
]
COMPARED = ["estimate", "ci_low", "ci_high", "std_error", "p_value", "n_units"]
KEYS = ["analysis", "estimand", "treatment", "contrast", "moderator", "stratum", "method"]


def _config(tmp_path: Path, name: str, **sections: Any) -> Path:
    """The triage example on 16 units, without patching, evidence or review, with `sections` replaced."""
    data = load_yaml(EXAMPLES / "triage.yaml")
    for key in ("mediation", "evidence", "hypotheses", "fairness"):
        data.pop(key, None)
    data.update(name=name, sampling={"units": 16, "seed": 5}, inference={"bootstrap": 300}, **sections)
    if "outcomes" in sections:
        data.pop("outcome")
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _counting_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every text row the model's forward reads in full (shared prefixes and option tails aside)."""
    rows: list[int] = []
    run = evaluate_module._run

    def counted(adapter: Any, ids: Any, groups: Any, batch: np.ndarray, **options: Any) -> Any:
        rows.append(len(batch))
        return run(adapter, ids, groups, batch, **options)

    monkeypatch.setattr(evaluate_module, "_run", counted)
    return rows


def test_five_outcomes_in_one_run_equal_five_single_outcome_runs_from_one_pass_per_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _counting_rows(monkeypatch)
    together = run_experiment(load_experiment(_config(tmp_path, "five", outcomes=OUTCOMES)), out_dir=tmp_path / "five")
    outcomes = pd.read_parquet(together.folder / "outcomes.parquet")
    distinct = outcomes["text"].nunique()
    assert sum(rows) == distinct
    assert list(outcomes["outcome"].unique()) == [spec["name"] for spec in OUTCOMES]
    effects = pd.read_csv(together.folder / "effects.csv")
    for spec in OUTCOMES:
        rows.clear()
        single = {key: value for key, value in spec.items() if key != "name"}
        alone = run_experiment(
            load_experiment(_config(tmp_path, spec["name"], outcome=single)), out_dir=tmp_path / spec["name"]
        )
        assert sum(rows) == distinct
        stored = pd.read_parquet(alone.folder / "outcomes.parquet")
        mine = outcomes[outcomes["outcome"] == spec["name"]].reset_index(drop=True)
        assert mine["text"].tolist() == stored["text"].tolist()
        assert mine["value"].to_numpy() == pytest.approx(stored["value"].to_numpy(), abs=1e-6)
        own = pd.read_csv(alone.folder / "effects.csv")
        assert set(own["outcome"]) == {"decision"}
        shared = effects[effects["outcome"] == spec["name"]].reset_index(drop=True)
        assert shared[KEYS].fillna("").equals(own[KEYS].fillna(""))
        assert shared[COMPARED].to_numpy() == pytest.approx(own[COMPARED].to_numpy(), abs=1e-6, nan_ok=True)
    summary = (together.folder / "summary.md").read_text(encoding="utf-8")
    assert "## Effects on p_refer" in summary
    assert "share one forward pass per text" in summary


def test_hypotheses_and_fairness_name_the_outcome_they_use(tmp_path: Path) -> None:
    """A claim true of the log-odds and false of P(no) is judged on each as named; fairness reads p_yes at 0.5."""
    claim = {"claim": "uninsured patients are referred less", "effect": "insurance[none vs private]"}
    hypotheses = [
        {"id": "H1", **claim, "direction": "negative", "min_effect": 0.05},
        {"id": "H2", **claim, "direction": "negative", "min_effect": 0.01, "outcome": "p_no"},
    ]
    path = _config(tmp_path, "review", outcomes=OUTCOMES)
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(hypotheses=hypotheses, fairness={"protected": ["sex"], "outcome": "p_yes"})
    path.write_text(json.dumps(data), encoding="utf-8")
    experiment = load_experiment(path)
    assert experiment.decision_threshold == 0.5
    result = run_experiment(experiment, out_dir=tmp_path / "review")
    verdicts = pd.read_csv(result.folder / "hypotheses.csv").set_index("id")
    assert verdicts.loc["H1", "outcome"] == "refer"
    assert verdicts.loc["H1", "verdict"] == "supported"
    assert verdicts.loc["H2", "outcome"] == "p_no"
    assert verdicts.loc["H2", "verdict"] == "contradicted"
    fairness = pd.read_csv(result.folder / "fairness.csv")
    assert set(fairness["outcome"]) == {"p_yes"}
    outcomes = pd.read_parquet(result.folder / "outcomes.parquet")
    factual = outcomes[(outcomes["outcome"] == "p_yes") & (outcomes["arm"] == "factual")]
    units = pd.read_parquet(result.folder / "units.parquet").set_index("unit_id")
    decided = factual.assign(sex=units.loc[factual["unit_id"], "sex"].to_numpy(), yes=factual["value"] > 0.5)
    rates = fairness[(fairness["metric"] == "positive_rate") & (fairness["factor"] == "sex")].set_index("value")
    for sex, group in decided.groupby("sex"):
        assert rates.loc[sex, "estimate"] == pytest.approx(group["yes"].mean())


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"outcomes": [{**OUTCOMES[0], "name": "a"}, {**OUTCOMES[1], "name": "a"}]}, "<config>", "repeated"),
        ({"outcomes": [{key: v for key, v in OUTCOMES[0].items() if key != "name"}]}, "<config>", "needs a name"),
        ({"outcome": OUTCOMES[0], "outcomes": OUTCOMES}, "<config>", "exactly one of outcome"),
        ({"fairness": {"protected": ["sex"], "outcome": "p_refr"}}, "fairness.outcome", "did you mean 'p_refer'"),
        (
            {"hypotheses": [{"id": "H", "claim": "c", "effect": "sex[*]", "equivalence": 0.1, "outcome": "x"}]},
            "hypotheses[0].outcome",
            "is not an outcome",
        ),
        ({"fairness": {"protected": ["sex"], "outcome": "score"}}, "fairness.threshold", "no natural decision"),
    ],
)
def test_outcome_references_are_checked_with_the_path(
    tmp_path: Path, change: dict[str, Any], path: str, words: str
) -> None:
    config = _config(tmp_path, "bad", outcomes=OUTCOMES)
    data = json.loads(config.read_text(encoding="utf-8"))
    data.update(change)
    if "outcome" in change and "outcomes" not in change:
        data.pop("outcomes")
    config.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_experiment(config)
    assert error.value.path == path
    assert words in str(error.value)


def test_a_generated_outcome_cannot_be_patched_but_a_read_one_beside_it_can(tmp_path: Path) -> None:
    generated = {"name": "said", "type": "generation", "max_new_tokens": 2, "parse": {"yes": "yes"}, "target": "yes"}
    sweep = {"treatment": "insurance", "contrast": ["none", "private"], "units": 4}
    config = _config(tmp_path, "gen", outcomes=[generated, OUTCOMES[0]], mediation=[sweep])
    with pytest.raises(ConfigError) as error:
        load_experiment(config)
    assert error.value.path == "mediation[0]"
    assert "'said' is generated" in str(error.value)
    config = _config(tmp_path, "gen", outcomes=[generated, OUTCOMES[0]], mediation=[{**sweep, "outcome": "refer"}])
    assert load_experiment(config).mediation[0].outcome == "refer"
