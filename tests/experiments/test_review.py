"""The review step: config rules for hypotheses and fairness, and its wiring into a run of the demo model.

The verdict logic itself is tested on constructed tables in tests/causal; here a demo run must
write hypotheses.csv, fairness.csv and the surrogate files, lead summary.md with the verdicts,
find the planted mechanisms again, and exit with status 3 under --fail-on-hypotheses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from causal import FAIRNESS_COLUMNS, VERDICT_COLUMNS
from experiments import ConfigError, compile_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def paribus(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI of this checkout (cwd = repository root, so its packages come first)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "experiments.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )


def demo_config(example: Path, **changes: Any) -> dict[str, Any]:
    """The shipped demo config without its patching and evidence blocks (fast), with `changes` applied."""
    config = yaml.safe_load(example.read_text())
    config.pop("mediation")
    config.pop("evidence")
    config["inference"]["bootstrap"] = 200
    config.update(changes)
    return config


def compiled(example: Path, **changes: Any):
    return compile_config(parse_config(demo_config(example, **changes)))


def test_example_config_declares_the_issue_hypotheses(example: Path) -> None:
    experiment = compiled(example)
    first, second = experiment.hypotheses
    assert (first.id, first.treatment, first.contrast, first.direction, first.min_effect) == (
        "H1",
        "insurance",
        "none vs private",
        "negative",
        0.05,
    )
    assert (second.id, second.treatment, second.contrast, second.equivalence) == ("H2", "weekday", None, 0.02)
    assert experiment.decision_threshold == 0.0
    assert experiment.config.fairness.protected == ["sex", "insurance"]


def test_validate_counts_hypotheses_and_fairness(example: Path) -> None:
    done = paribus("validate", str(example))
    assert done.returncode == 0, done.stderr
    assert "evidence on, 2 hypotheses, fairness on" in done.stdout


@pytest.mark.parametrize(
    ("hypothesis", "message"),
    [
        (
            {"effect": "insurance[private vs none]", "direction": "negative"},
            (
                r"^hypotheses\[0\]\.effect: 'insurance\[private vs none\]' \(total\) is not among the effects this config "
                r"estimates: .*insurance\[none vs private\]"
            ),
        ),
        (
            {"effect": "weekday[*]", "estimand": "direct", "equivalence": 0.1},
            r"^hypotheses\[0\]\.effect: 'weekday\[\*\]' \(direct\) is not among",
        ),
        (
            {"effect": "insurance none", "direction": "negative"},
            r"^hypotheses\[0\]\.effect: an effect reads 'treatment\[a vs b\]'",
        ),
        (
            {"effect": "weekday[*]", "direction": "negative", "equivalence": 0.1},
            r"^hypotheses\[0\]: give exactly one of direction",
        ),
        (
            {"effect": "weekday[*]", "equivalence": 0.1, "min_effect": 0.2},
            r"^hypotheses\[0\]: min_effect belongs to a directional claim",
        ),
        ({"effect": "weekday[*]", "equivalence": -0.1}, r"^hypotheses\[0\]\.equivalence: .*greater than 0"),
    ],
)
def test_bad_hypotheses_name_their_yaml_path(example: Path, hypothesis: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        compiled(example, hypotheses=[{"id": "H", "claim": "a claim", **hypothesis}])


def test_hypothesis_ids_are_unique(example: Path) -> None:
    claim = {"claim": "c", "effect": "weekday[*]", "equivalence": 0.1}
    with pytest.raises(ConfigError, match=r"^hypotheses\[1\]\.id: id 'H' is used by an earlier hypothesis"):
        compiled(example, hypotheses=[{"id": "H", **claim}, {"id": "H", **claim}])


@pytest.mark.parametrize(
    ("task", "outcome", "threshold"),
    [
        ("causal-lm", {"type": "logit_diff", "answers": {"positive": " yes", "negative": " no"}}, 0.0),
        ("causal-lm", {"type": "answer_prob", "answers": {"positive": " yes", "negative": " no"}}, 0.5),
        ("sequence-classifier", {"type": "class_prob", "label": "yes"}, 0.5),
        ("sequence-classifier", {"type": "class_logit", "label": "yes"}, 0.0),
        ("causal-lm", {"type": "choice_prob", "options": {"y": [" yes"], "n": [" no"]}, "target": "y"}, 0.5),
        ("causal-lm", {"type": "generation", "max_new_tokens": 2, "parse": {"y": "yes"}, "target": "y"}, 0.5),
    ],
)
def test_decision_threshold_defaults_by_outcome_type(
    example: Path, task: str, outcome: dict[str, Any], threshold: float
) -> None:
    model = {"id": "a-classifier-or-lm", "task": task}
    assert compiled(example, model=model, outcome=outcome).decision_threshold == threshold
    fairness = {"protected": ["sex"], "threshold": -1.5}
    assert compiled(example, model=model, outcome=outcome, fairness=fairness).decision_threshold == -1.5


def test_a_log_likelihood_outcome_needs_a_threshold(example: Path) -> None:
    outcome = {"type": "continuation_logprob", "continuation": " yes"}
    with pytest.raises(
        ConfigError, match=r"^fairness\.threshold: outcome 'decision' \(continuation_logprob\) has no natural"
    ):
        compiled(example, outcome=outcome)
    assert compiled(example, outcome=outcome, fairness=None).decision_threshold is None


def test_protected_factors_must_exist(example: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^fairness\.protected\[1\]: 'insurence' is not a factor; did you mean 'insurance'"
    ):
        compiled(example, fairness={"protected": ["sex", "insurence"]})


def test_report_section_rejects_unknown_keys(example: Path) -> None:
    with pytest.raises(ConfigError, match=r"^report: unknown key 'redact_text'; did you mean 'redact_texts'"):
        compiled(example, report={"redact_text": True})


def test_review_of_an_enumerated_run_matches_a_hand_computation(tmp_path: Path) -> None:
    """Exact mode, a planted decision rule (refer iff private insurance), no model.

    P(private | female) = 0.8 and P(private | male) = 0.4 (sex weighted 1:3). By hand: every
    unit's decision flips between do(none) and do(private); under do(sex) it flips when the
    unit's insurance noise lies in [0.4, 0.8), a share of 0.4; women are referred at 0.8 and
    men at 0.4 (impact ratio 0.5, parity difference 0.4), which only weighting by the units'
    probabilities gets right (unweighted, the enumerated cells give 0.5 each).
    """
    from experiments._pipeline import run_review
    from experiments.run import arm_texts, draw_units, realize_arms
    from experiments.run._store import RunStore
    from experiments.run._templated import _units_frame

    experiment = compile_config(
        parse_config(
            {
                "name": "planted",
                "model": {"id": "unused"},
                "outcome": {"type": "logit_diff", "answers": {"positive": " yes", "negative": " no"}},
                "prompt": {"template": "A {sex} with {insurance} insurance. Refer?"},
                "factors": {
                    "sex": {
                        "values": {"female": ["woman"], "male": ["man", "gentleman"]},
                        "distribution": {"female": 0.25, "male": 0.75},
                    },
                    "insurance": {
                        "values": {"private": ["private"], "none": ["no"]},
                        "parents": ["sex"],
                        "distribution": {
                            "female": {"private": 0.8, "none": 0.2},
                            "male": {"private": 0.4, "none": 0.6},
                        },
                    },
                },
                "graph": {"edges": ["sex -> insurance", "sex -> decision", "insurance -> decision"]},
                "effects": [{"treatment": "insurance", "contrast": ["none", "private"]}, {"treatment": "sex"}],
                "fairness": {"protected": ["sex", "insurance"]},
                "sampling": {"mode": "exact"},
            }
        )
    )
    units = draw_units(experiment)
    worlds = realize_arms(experiment, units)
    outcomes = arm_texts(experiment, units, worlds)
    private = {arm.label: world.values["insurance"] == "private" for arm, world in worlds.items()}
    outcomes["outcome"] = "decision"
    outcomes["value"] = [
        1.0 if private[arm][unit] else -1.0 for arm, unit in zip(outcomes["arm"], outcomes["unit_id"], strict=True)
    ]
    store = RunStore(tmp_path / "run", experiment.config)
    store.write_table("units.parquet", _units_frame(units, worlds[experiment.arms[0]]))
    store.write_table("outcomes.parquet", outcomes)

    review = run_review(experiment, store)
    figures = pd.read_csv(store.folder / "fairness.csv")
    by = {
        (row.metric, row.factor, row.contrast if isinstance(row.contrast, str) else row.value): row
        for row in figures.itertuples()
    }
    assert by[("flip_rate", "insurance", "none vs private")].estimate == 1.0
    assert by[("flip_rate", "sex", "male vs female")].estimate == pytest.approx(0.4)
    assert by[("positive_rate", "insurance", "private")].estimate == 1.0
    assert by[("positive_rate", "insurance", "none")].estimate == 0.0
    assert by[("positive_rate", "sex", "female")].estimate == pytest.approx(0.8)
    assert by[("positive_rate", "sex", "male")].estimate == pytest.approx(0.4)
    assert by[("demographic_parity_difference", "sex", "female vs male")].estimate == pytest.approx(0.4)
    assert figures[figures["metric"] == "disparate_impact_ratio"].set_index("factor")[
        "estimate"
    ].to_dict() == pytest.approx({"sex": 0.5, "insurance": 0.0})
    assert review.record["four_fifths_violations"] == ["sex", "insurance"]
    assert (
        figures["ci_low"].dropna() == figures["estimate"][figures["ci_low"].notna()]
    ).all()  # exact: no sampling error
    assert "insurance=" in (store.folder / "surrogate_rules.txt").read_text()
    assert not (store.folder / "hypotheses.csv").exists()


@pytest.fixture(scope="module")
def contradicted_run(
    example: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A demo run whose third hypothesis (weekend raises referral by >= 0.5) the planted rule contradicts."""
    config = demo_config(example)
    config["hypotheses"].append(
        {
            "id": "H3",
            "claim": "weekends raise referral",
            "effect": "weekday[weekend vs weekday]",
            "direction": "positive",
            "min_effect": 0.5,
        }
    )
    folder = tmp_path_factory.mktemp("review")
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    done = paribus(
        "run",
        str(folder / "config.yaml"),
        "--units",
        "120",
        "--seed",
        "5",
        "--out",
        str(folder / "run"),
        "--fail-on-hypotheses",
    )
    return folder / "run", done


@pytest.mark.slow
def test_fail_on_hypotheses_exits_3_after_the_folder_is_complete(contradicted_run) -> None:
    folder, done = contradicted_run
    assert done.returncode == 3, done.stderr
    assert "contradicted hypotheses: H3" in done.stderr
    assert json.loads((folder / "manifest.json").read_text())["status"] == "complete"
    assert json.loads((folder / "manifest.json").read_text())["review"]["contradicted"] == ["H3"]
    assert (folder / "report.html").stat().st_size > 0
    assert f"run folder: {folder}" in done.stdout


@pytest.mark.slow
def test_verdicts_follow_the_planted_rule(contradicted_run) -> None:
    folder, _ = contradicted_run
    verdicts = pd.read_csv(folder / "hypotheses.csv")
    assert tuple(verdicts.columns) == VERDICT_COLUMNS
    assert dict(zip(verdicts["id"], verdicts["verdict"], strict=True)) == {
        "H1": "supported",
        "H2": "supported",
        "H3": "contradicted",
    }


@pytest.mark.slow
def test_summary_leads_with_the_verdicts(contradicted_run) -> None:
    folder, done = contradicted_run
    summary = (folder / "summary.md").read_text()
    headings = [line for line in summary.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Hypotheses"
    assert (
        headings.index("## Hypotheses") < headings.index("## Effects") < headings.index("## Fairness of the decisions")
    )
    assert (
        "| H3 | weekends raise referral | `weekday[weekend vs weekday]` | directional | **CONTRADICTED** |" in summary
    )
    assert summary in done.stdout


@pytest.mark.slow
def test_fairness_and_surrogate_find_the_planted_mechanisms(contradicted_run) -> None:
    """The rule ignores sex and lowers referral without insurance; the decisions follow symptom and insurance."""
    folder, _ = contradicted_run
    fairness = pd.read_csv(folder / "fairness.csv")
    assert tuple(fairness.columns) == ("outcome", *FAIRNESS_COLUMNS)
    assert set(fairness["outcome"]) == {"decision"}
    flips = fairness[fairness["metric"] == "flip_rate"].set_index(["factor", "contrast"])
    assert flips.loc[("sex", "male vs female"), "estimate"] < 0.05  # only units at the threshold flip
    assert flips.loc[("insurance", "none vs private"), "ci_low"] > flips.loc[("sex", "male vs female"), "ci_high"]
    impact = fairness[fairness["metric"] == "disparate_impact_ratio"].set_index("factor")
    assert bool(impact.loc["insurance", "four_fifths_violated"])
    units = pd.read_parquet(folder / "units.parquet")
    rates = fairness[fairness["metric"] == "positive_rate"].set_index(["factor", "value"])
    assert rates.loc[("sex", "female"), "n_units"] == (units["sex"] == "female").sum()
    rules = (folder / "surrogate_rules.txt").read_text()
    assert "symptom=" in rules and "insurance=none" in rules
    fidelity = pd.read_csv(folder / "surrogate.csv").set_index("surrogate")
    assert fidelity.loc["tree", "fidelity"] > fidelity.loc["majority", "fidelity"]
