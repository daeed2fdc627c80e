"""The data-mode run on a confounded corpus with a known structure, scored by the demo model.

The corpus is rendered from the demo's triage structural model with strong confounding:
old patients are more often uninsured and more often have severe symptoms, which the
demo model refers more. The model's insurance effect is what rewriting the same notes
measures; the plain difference between insurance groups is biased by age, adjusting for
age (the declared graph's backdoor set) removes the bias.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal import EffectEstimate, EffectTable
from experiments import compile_config, load_experiment, parse_config, run_experiment
from experiments.config._yaml import load_yaml
from experiments.run import rewritten_pair
from experiments.steps import confounding_gap
from interventions import RewriteRules

EXAMPLES = Path(__file__).resolve().parents[2] / "experiments" / "examples"
RULES = """\
factor: insurance
values: [private, public, none]
forms:
  - {private: "private insurance", public: "Medicaid insurance", none: "no insurance"}
"""
AGE_RULES = """\
factor: age
values: [young, old]
forms:
  - {young: "24 year old", old: "67 year old"}
  - {young: "31 year old", old: "74 year old"}
  - {young: "38 year old", old: "81 year old"}
"""


def _estimate(analysis: str, method: str, estimate: float, std_error: float, n_units: int) -> EffectEstimate:
    return EffectEstimate(
        analysis=analysis,
        estimand="total",
        treatment="insurance",
        contrast="none vs private",
        moderator=None,
        stratum=None,
        estimate=estimate,
        ci_low=np.nan,
        ci_high=np.nan,
        std_error=std_error,
        p_value=np.nan,
        n_units=n_units,
        method=method,
        level=0.95,
    )


def test_the_confounding_gap_is_regression_minus_interventional_with_a_normal_interval() -> None:
    observational = EffectTable(
        (_estimate("observational", "naive", -1.0, 0.1, 200), _estimate("observational", "regression", -1.3, 0.3, 200))
    )
    interventional = EffectTable((_estimate("ate", "t", -1.5, 0.4, 190), _estimate("ate", "bootstrap", -1.5, 0.4, 190)))
    gap = confounding_gap(observational, interventional)
    assert (gap.analysis, gap.method, gap.n_units) == ("confounding_gap", "regression_minus_t", 190)
    assert gap.estimate == pytest.approx(0.2)
    assert gap.std_error == pytest.approx(0.5)  # sqrt(0.3^2 + 0.4^2)
    assert (gap.ci_low, gap.ci_high) == pytest.approx((0.2 - 1.959964 * 0.5, 0.2 + 1.959964 * 0.5))
    assert gap.p_value == pytest.approx(0.6891565, abs=1e-6)  # 2 * (1 - Phi(0.4))


def test_a_rewritten_pair_is_two_renders_of_one_template() -> None:
    rules = RewriteRules.load("builtin:sex", factor="sex")
    text = "A {curly} note: the woman said she had pain; her husband drove her in."
    rewrite = rules.rewrite(text, source="female", target="male")
    treated, reference, template = rewritten_pair(rewrite.rewritten, rewrite.original, "sex", " Refer? Answer:")
    assert template.slots == ("sex",) * len(rewrite.original.spans["sex"])
    assert template.literals[0] == "A {curly} note: the "
    assert template.literals[-1].endswith(" in. Refer? Answer:")
    for rendered in (treated, reference):
        forms = [rendered.text[start:end] for start, end in rendered.spans["sex"]]
        pieces = [template.literals[0]]
        for form, literal in zip(forms, template.literals[1:]):
            pieces += [form, literal]
        assert "".join(pieces) == rendered.text
    assert reference.text == text + " Refer? Answer:"
    assert treated.text == "A {curly} note: the man said he had pain; his husband drove him in. Refer? Answer:"


def test_the_shipped_example_validates_and_counts_its_bad_rows() -> None:
    from typer.testing import CliRunner

    from experiments.cli import app

    result = CliRunner().invoke(app, ["validate", str(EXAMPLES / "casenotes.yaml")])
    assert result.exit_code == 0, result.output
    assert (
        "363 of 367 documents kept (dropped: 1 empty_text, 1 unannotated, 1 unknown_value, 1 duplicate_id)"
        in result.output
    )
    assert "30 of 31 human pairs kept (dropped: 1 unknown_original)" in result.output


def test_an_all_bad_dataset_stops_the_run_before_the_model_loads_and_says_why(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from experiments.cli import app

    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    pd.DataFrame({"note": ["Patient with private insurance.", ""], "ins": ["gold", "none"]}).to_csv(
        tmp_path / "notes.csv", index=False
    )
    config = {
        "name": "bad",
        "model": {"id": "builtin:triage-demo"},
        "outcome": {"type": "logit_diff", "answers": {"positive": " yes", "negative": " no"}},
        "data": {"path": "notes.csv", "text": "note", "factors": {"insurance": "ins"}},
        "rewrite": {"insurance": "rules.yaml"},
        "factors": {"insurance": {"values": ["private", "public", "none"]}},
        "graph": {"edges": ["insurance -> decision"]},
        "effects": [{"treatment": "insurance"}],
    }
    (tmp_path / "bad.yaml").write_text(json.dumps(config), encoding="utf-8")
    message = (
        "data: no usable row among 2: 1 row(s) unknown value in column 'ins' (ids '0'; values ['gold']); "
        "1 row(s) empty text in column 'note' (ids '1')"
    )
    validated = CliRunner().invoke(app, ["validate", str(tmp_path / "bad.yaml")])
    assert validated.exit_code == 2 and message in " ".join(validated.output.split())
    with pytest.raises(ValueError, match=re.escape(message)):
        run_experiment(load_experiment(tmp_path / "bad.yaml"), out_dir=tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "failed" and "model_fingerprint" not in manifest


def _corpus(folder: Path, n_units: int, seed: int) -> pd.DataFrame:
    """Notes from the demo's structural model with age confounding insurance and (through symptoms) the decision."""
    data = load_yaml(EXAMPLES / "triage.yaml")
    factors = data["factors"]
    factors["insurance"]["distribution"] = {
        "young": {"private": 0.75, "public": 0.1, "none": 0.15},
        "old": {"private": 0.15, "public": 0.45, "none": 0.4},
    }
    factors["symptom"]["distribution"] = {
        "young": {"mild": 0.85, "severe": 0.15},
        "old": {"mild": 0.15, "severe": 0.85},
    }
    experiment = compile_config(parse_config(data))
    world = experiment.model.realize(experiment.model.sample_units(n_units, seed=seed))
    from interventions import render_world

    notes = pd.DataFrame(
        {
            "case_id": [f"N{i:05d}" for i in range(n_units)],
            "note": [rendered.text for rendered in render_world(experiment.templates, world)],
            **{name: world.values[name].astype(str) for name in ("age", "sex", "insurance")},
            "referred": (world.values["symptom"].astype(str) == "severe").astype(int),
        }
    )
    bad = pd.DataFrame(
        {
            "case_id": ["B1", "B2", "B3"],
            "note": ["", notes["note"][0], notes["note"][1]],
            "age": ["old", "old", None],
            "sex": ["male", "female", "male"],
            "insurance": ["none", "gold", "private"],
            "referred": [1, 0, 1],
        }
    )
    pd.concat([notes, bad], ignore_index=True).to_parquet(folder / "notes.parquet", index=False)
    private = notes[notes["insurance"] == "private"].head(12)
    edits = [
        {
            "id": f"E{i}",
            "original_id": row.case_id,
            "factor": "insurance",
            "from": "private",
            "to": "none",
            "text": row.note.replace("private insurance", "no insurance"),
        }
        for i, row in enumerate(private.itertuples())
    ]
    (folder / "edits.jsonl").write_text("".join(json.dumps(edit) + "\n" for edit in edits), encoding="utf-8")
    (folder / "insurance.yaml").write_text(RULES, encoding="utf-8")
    (folder / "age.yaml").write_text(AGE_RULES, encoding="utf-8")
    return notes


def _config(folder: Path) -> Path:
    config = {
        "name": "confounded-notes",
        "model": {"id": "builtin:triage-demo"},
        "outcome": {"type": "logit_diff", "answers": {"positive": " yes", "negative": " no"}},
        "data": {
            "path": "notes.parquet",
            "text": "note",
            "id": "case_id",
            "factors": {"age": "age", "sex": "sex", "insurance": "insurance"},
            "label": "referred",
        },
        "rewrite": {"insurance": "insurance.yaml", "age": "age.yaml"},
        "pairs": {"path": "edits.jsonl"},
        "factors": {
            "age": {"values": ["young", "old"]},
            "sex": {"values": ["female", "male"]},
            "insurance": {"values": ["private", "public", "none"]},
            "symptom": {"values": ["mild", "severe"]},
            "weekday": {"values": ["weekday", "weekend"]},
        },
        "graph": {
            "outcome": "decision",
            "edges": [
                "age -> insurance",
                "age -> symptom",
                "symptom -> decision",
                "insurance -> decision",
                "sex -> decision",
            ],
        },
        "effects": [
            {"treatment": "insurance", "contrast": ["none", "private"]},
            {"treatment": "age", "contrast": ["old", "young"], "estimand": "direct"},
        ],
        "mediation": [
            {
                "treatment": "insurance",
                "contrast": ["none", "private"],
                "components": ["resid_pre"],
                "layers": [0],
                "positions": ["all", "factor", "last"],
                "units": 6,
            }
        ],
        "fairness": {"protected": ["sex"]},
        "evidence": {
            "methods": ["attention", "gradient_x_input", "integrated_gradients", "probe"],
            "units": 60,
            "baseline": "counterfactual",
            "steps": 64,
            "token_view_units": 2,
        },
        "inference": {"bootstrap": 200},
    }
    path = folder / "confounded.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    return path


@pytest.mark.slow
def test_a_confounded_corpus_naive_is_biased_backdoor_covers_the_rewrite_effect(tmp_path: Path) -> None:
    notes = _corpus(tmp_path, 1200, seed=5)
    result = run_experiment(load_experiment(_config(tmp_path)), out_dir=tmp_path / "run")
    folder = result.folder
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "complete"

    # Bad rows: the run completes on the good ones and reports the rest.
    assert manifest["data"]["documents"] == {
        "rows": 1203,
        "kept": 1200,
        "dropped": {"empty_text": 1, "unknown_value": 1, "unannotated": 1},
    }
    dropped = pd.read_csv(folder / "dropped.csv")
    assert dropped["id"].tolist() == ["B1", "B2", "B3"]
    documents = pd.read_parquet(folder / "documents.parquet")
    assert documents["doc_id"].tolist() == notes["case_id"].tolist()

    # Rewrites: every note names its insurance as the rules do; the recorded spans hold the forms.
    rewrites = pd.read_parquet(folder / "rewrites.parquet")
    assert set(rewrites["status"]) == {"rewritten", "unchanged"}
    by_id = notes.set_index("case_id")["note"]
    for row in rewrites[rewrites["status"] == "rewritten"].head(50).itertuples():
        ((start, end),) = row.original_spans
        assert (
            by_id[row.doc_id][start:end]
            == {"private": "private insurance", "public": "Medicaid insurance", "none": "no insurance"}[row.source]
        )

    # The interventional effect on the documents of the two groups, by hand from outcomes.parquet.
    outcomes = pd.read_parquet(folder / "outcomes.parquet").pivot(index="doc_id", columns="arm", values="value")
    in_groups = notes[notes["insurance"].isin(["none", "private"])]["case_id"]
    difference = outcomes["do(insurance=none)"] - outcomes["do(insurance=private)"]
    truth = float(difference.loc[in_groups].mean())
    effects = pd.read_csv(folder / "effects.csv")
    insurance = effects[effects["treatment"] == "insurance"]
    row = insurance.set_index(["analysis", "method"]).loc
    assert row[("ate", "t"), "estimate"] == pytest.approx(float(difference.loc[notes["case_id"]].mean()))
    naive, regression, ipw = (
        row[("observational", "naive")],
        row[("observational", "regression")],
        row[("observational", "ipw")],
    )
    assert not naive["ci_low"] <= truth <= naive["ci_high"]  # biased by age
    assert naive["estimate"] > truth + 0.3  # toward the severe (old) uninsured
    assert regression["ci_low"] <= truth <= regression["ci_high"]
    assert ipw["ci_low"] <= truth <= ipw["ci_high"]
    gap = row[("confounding_gap", "regression_minus_t")]
    assert gap["estimate"] == pytest.approx(regression["estimate"] - truth)
    assert gap["ci_low"] <= 0 <= gap["ci_high"]

    refutations = pd.read_csv(folder / "refutations.csv")
    placebo = refutations[refutations["refuter"] == "placebo_treatment"]
    assert len(placebo) == 2 and (placebo["new_effect"].abs() < 0.1).all()

    # Human pairs: outcome on the edit minus on the original, averaged; the edits equal the rewrites here.
    edited = notes[notes["insurance"] == "private"].head(12)["case_id"]
    by_hand = (outcomes.loc[edited, "do(insurance=none)"] - outcomes.loc[edited, "factual"]).mean()
    assert row[("human_pairs", "t"), "estimate"] == pytest.approx(by_hand)
    assert row[("human_pairs", "t"), "contrast"] == "none vs private"

    # Rewriting age holds the symptom the note states: the direct effect, which the demo's rule does not have.
    age = effects[effects["treatment"] == "age"]
    assert set(age["analysis"]) == {"ate"} and (age["estimand"] == "direct").all()
    assert abs(age[age["method"] == "t"]["estimate"].iloc[0]) < 0.1
    # A direct effect has no observational source (dowhy's backdoor estimate is a total effect), and no edit of age
    # gives a human-pair row by default.
    age_plan = next(plan for plan in load_experiment(folder / "config.yaml").contrasts if plan.treatment == "age")
    assert age_plan.sources == ("rewrite", "human_pairs")

    # Patching through the rewrites' spans: resid_pre.0 patched at every position is the whole effect.
    mediation = pd.read_parquet(folder / "mediation.parquet")
    t_rows = mediation[mediation["method"] == "t"]
    total = t_rows[t_rows["effect"] == "total"]["estimate"].iloc[0]
    everywhere = t_rows[
        (t_rows["effect"] == "indirect") & (t_rows["site"] == "resid_pre.0") & (t_rows["position"] == "all")
    ]
    assert everywhere["estimate"].iloc[0] == pytest.approx(total, abs=1e-4)
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert "1200 of 1203 rows" in summary and "regression with interactions (g-computation)" in summary

    # Fairness over the documents: their labels give equal opportunity, computed here by hand.
    decided = notes.assign(decision=(outcomes.loc[notes["case_id"], "factual"].to_numpy() > 0).astype(int))
    true_positive = decided[decided["referred"] == 1].groupby("sex")["decision"].mean()
    fairness = pd.read_csv(folder / "fairness.csv").set_index("metric")
    assert fairness.loc["equal_opportunity_difference", "estimate"] == pytest.approx(
        true_positive.max() - true_positive.min()
    )
    assert "Fairness of the decisions" in (folder / "report.html").read_text(encoding="utf-8")

    # Evidence through the rewrites' spans: counterfactual-baseline IG over the rewritten notes sums to
    # each note's effect, which holds only if every arm's insurance span sits on the right tokens.
    evidence = pd.read_parquet(folder / "evidence.parquet")
    assert set(evidence["factor"]) == {"insurance"} and evidence["unit"].nunique() == 60
    assert manifest["evidence"]["completeness_max_abs_delta"] < 0.02
    # Against the counterfactual only the insurance words differ, so IG on the carried span is the whole effect
    # (a span on the wrong tokens would read about zero).
    ig = evidence[evidence["method"] == "integrated_gradients"].set_index("unit")["value"]
    drawn = pd.Index(manifest["evidence"]["unit_ids"])[ig.index]
    per_note = difference.loc[drawn].to_numpy()
    assert len(ig) >= 50 and np.abs(ig.to_numpy() - per_note).max() < 0.02
    assert len(manifest["evidence"]["unit_ids"]) == 60 and set(manifest["evidence"]["unit_ids"]) <= set(
        notes["case_id"]
    )
    assert (folder / "token_view.html").is_file() and (folder / "probes.csv").is_file()
