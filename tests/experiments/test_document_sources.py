"""Data mode draws each effect from the sources it asks for, per direction, and loses nothing it cannot estimate.

Reviews annotated with one concept (food: Positive, Negative or unknown) and a confounder
(service), scored by the demo model; rewrite rules know only some phrasings, so some
documents cannot be rewritten. Every expected number is computed by hand from the
per-text outcomes the run stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from experiments import ConfigError, load_experiment, run_experiment
from experiments.cli import app
from experiments.run import load_model, read_table
from interventions import evaluate_outcomes

RULES = """\
factor: food
values: [Positive, Negative, unknown]
forms:
  - {Positive: "the food was delicious", Negative: "the food was awful", unknown: "the food was served"}
"""
POSITIVE = [
    "We came on a Monday and the food was delicious, the waiter was quick.",
    "Loud room, but the food was delicious and the wine cheap.",
    "The food was delicious; we waited an hour for the bill.",
    "A quiet lunch where the food was delicious and the chairs were hard.",
]
NEGATIVE = [
    "We came on a Friday and the food was awful, the waiter was slow.",
    "Nice room, but the food was awful and the wine dear.",
    "The food was awful; the bill came at once.",
]
UNREWRITABLE = [
    ("The soup was bland and cold, the staff friendly.", "Negative"),
    ("Booked for six, seated at seven, no comment on dinner.", "unknown"),
    ("Parking was easy and the terrace pleasant.", "unknown"),
]


def _corpus(folder: Path, *, rewritable_negative: bool = True, service: list[str] | None = None) -> None:
    texts = POSITIVE + (NEGATIVE if rewritable_negative else []) + [text for text, _ in UNREWRITABLE]
    food = ["Positive"] * len(POSITIVE) + (["Negative"] * len(NEGATIVE) if rewritable_negative else [])
    food += [value for _, value in UNREWRITABLE]
    service = service or ["good", "bad"] * (len(texts) // 2) + ["good"] * (len(texts) % 2)
    pd.DataFrame(
        {"review_id": [f"R{i:02d}" for i in range(len(texts))], "review": texts, "food": food, "service": service}
    ).to_csv(folder / "reviews.csv", index=False)
    edits = [
        {
            "id": "E1",
            "original_id": "R00",
            "factor": "food",
            "from": "Positive",
            "to": "Negative",
            "text": "We came on a Monday and the food was inedible, the waiter was quick.",
        },
        {
            "id": "E2",
            "original_id": "R01",
            "factor": "food",
            "from": "Positive",
            "to": "Negative",
            "text": "Loud room, and the food was bad and the wine cheap.",
        },
        {
            "id": "E3",
            "original_id": "R02",
            "factor": "food",
            "from": "Positive",
            "to": "Negative",
            "text": "The food was terrible; we waited an hour for the bill.",
        },
    ]
    if rewritable_negative:
        edits += [
            {
                "id": "E4",
                "original_id": "R04",
                "factor": "food",
                "from": "Negative",
                "to": "Positive",
                "text": "We came on a Friday and the food was superb, the waiter was slow.",
            },
            {
                "id": "E5",
                "original_id": "R05",
                "factor": "food",
                "from": "Negative",
                "to": "Positive",
                "text": "Nice room, and the food was lovely and the wine dear.",
            },
        ]
    edits.append(
        {
            "id": "E9",
            "original_id": "R03",
            "factor": "food",
            "from": "Positive",
            "to": "unknown",
            "text": "A quiet lunch and the chairs were hard.",
        }
    )
    (folder / "edits.jsonl").write_text("".join(json.dumps(edit) + "\n" for edit in edits), encoding="utf-8")
    (folder / "food.yaml").write_text(RULES, encoding="utf-8")


def _config(folder: Path, effects: list[dict], *, rules: bool = True, **sections: dict) -> Path:
    config = {
        "name": "reviews",
        "model": {"id": "builtin:triage-demo"},
        "outcome": {"type": "logit_diff", "answers": {"positive": " yes", "negative": " no"}},
        "data": {
            "path": "reviews.csv",
            "text": "review",
            "id": "review_id",
            "factors": {"food": "food", "service": "service"},
            "suffix": " Recommend? Answer:",
        },
        **({"rewrite": {"food": "food.yaml"}} if rules else {}),
        "pairs": {"path": "edits.jsonl"},
        "factors": {"food": {"values": ["Positive", "Negative", "unknown"]}, "service": {"values": ["good", "bad"]}},
        "graph": {"outcome": "rating", "edges": ["service -> food", "food -> rating", "service -> rating"]},
        "effects": effects,
        "inference": {"bootstrap": 200},
        **sections,
    }
    path = folder / "reviews.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def _run(folder: Path, config: Path) -> tuple[Path, pd.DataFrame]:
    result = run_experiment(load_experiment(config), out_dir=folder / "run")
    effects = read_table(result.folder, "effects.csv")
    return result.folder, effects


def _by_arm(folder: Path) -> pd.DataFrame:
    outcomes = pd.read_parquet(folder / "outcomes.parquet")
    return outcomes.pivot(index="doc_id", columns="arm", values="value")


def _row(effects: pd.DataFrame, **fields: object) -> pd.Series:
    mask = pd.Series(True, index=effects.index)
    for column, value in fields.items():
        mask &= effects[column].isna() if value is None else effects[column] == value
    assert mask.sum() == 1, effects[mask]
    return effects[mask].iloc[0]


def _t(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(values.mean())
    half = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return mean, mean - half, mean + half


def test_directional_rows_equal_hand_computations_for_the_rewrite_and_the_human_pairs(tmp_path: Path) -> None:
    _corpus(tmp_path)
    effects_config = [
        {
            "treatment": "food",
            "contrast": ["Positive", "Negative"],
            "sources": ["rewrite", "human_pairs"],
            "directions": True,
        }
    ]
    folder, effects = _run(tmp_path, _config(tmp_path, effects_config))
    arms = _by_arm(folder)
    documents = pd.read_parquet(folder / "documents.parquet").set_index("doc_id")
    difference = (arms["do(food=Positive)"] - arms["do(food=Negative)"]).dropna()
    factual = documents.loc[difference.index, "food"]
    assert set(factual) == {"Positive", "Negative"}  # unknown and unlocated documents have no rewrite
    for value in ("Positive", "Negative"):
        mine = difference[factual == value].to_numpy()
        row = _row(effects, analysis="cate", method="t", moderator="food", stratum=value)
        assert (row["estimate"], row["ci_low"], row["ci_high"]) == pytest.approx(_t(mine), abs=1e-9)
        assert row["n_units"] == mine.size
    overall = _row(effects, analysis="ate", method="t", moderator=None)
    assert overall["estimate"] == pytest.approx(difference.mean(), abs=1e-9)
    positive_effect = _row(effects, analysis="cate", method="t", stratum="Positive")["estimate"]
    negative_effect = _row(effects, analysis="cate", method="t", stratum="Negative")["estimate"]
    assert abs(positive_effect - negative_effect) > 1e-3  # the corpus makes the directions differ

    edits = pd.read_json(tmp_path / "edits.jsonl", lines=True).rename(columns={"from": "source", "to": "target"})
    pairs = _human_differences(folder, edits, arms)
    for value in ("Positive", "Negative"):
        row = _row(effects, analysis="human_pairs", method="t", moderator="food", stratum=value)
        # the edits are re-scored in other batches here: float32 logits agree to about 1e-6
        assert (row["estimate"], row["ci_low"], row["ci_high"]) == pytest.approx(_t(pairs[value]), abs=1e-5)
    whole = _row(effects, analysis="human_pairs", method="t", moderator=None)
    assert whole["estimate"] == pytest.approx(np.concatenate(list(pairs.values())).mean(), abs=1e-5)
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert "| were Negative | rewrite (paired t) |" in summary
    assert "| were Negative | human-edited pairs (paired t) |" in summary
    assert "1 human edit(s) enter no estimate" in summary and "food Positive -> unknown (1)" in summary


def _edit_outcomes(folder: Path, edits: pd.DataFrame) -> dict[str, float]:
    """Each edit's outcome, scored by the run's model exactly as the run scores texts."""
    experiment = load_experiment(folder / "config.yaml")
    adapter, _ = load_model(experiment)

    texts = [text + experiment.data.config.suffix for text in edits["text"]]
    values = evaluate_outcomes(adapter, texts, experiment.outcome)
    return dict(zip(edits["id"], np.asarray(values, dtype=float), strict=True))


def _human_differences(folder: Path, edits: pd.DataFrame, arms: pd.DataFrame) -> dict[str, np.ndarray]:
    scores = _edit_outcomes(folder, edits)
    signed: dict[str, list[float]] = {"Positive": [], "Negative": []}
    for edit in edits.itertuples():
        if {edit.source, edit.target} != {"Positive", "Negative"}:
            continue
        change = scores[edit.id] - arms.loc[edit.original_id, "factual"]
        signed[edit.source].append(change if edit.target == "Positive" else -change)
    return {value: np.array(changes) for value, changes in signed.items()}


def test_an_effect_with_only_human_pairs_needs_no_rewrite_rules(tmp_path: Path) -> None:
    _corpus(tmp_path)
    config = _config(
        tmp_path,
        [{"treatment": "food", "contrast": ["Positive", "Negative"], "sources": ["human_pairs"]}],
        rules=False,
        evidence={"units": 4},
    )
    folder, effects = _run(tmp_path, config)
    assert set(effects["analysis"]) == {"human_pairs"}
    # Evidence reads rendered or rewritten texts: with none, it is recorded as not computed, and says why.
    why = "evidence is read on the rendered or rewritten texts of an estimated total effect"
    assert why in json.loads((folder / "manifest.json").read_text())["evidence"]["not_estimable"]
    assert f"Not computed: {why}" in (folder / "summary.md").read_text(encoding="utf-8")
    assert f"<p>Not computed: {why}" in (folder / "report.html").read_text(encoding="utf-8")
    assert (folder / "summary.md").is_file() and (folder / "report.html").is_file()
    assert "rewrites.parquet" in json.loads((folder / "manifest.json").read_text())["checksums"]


def test_an_unrewritable_contrast_is_a_not_estimable_row_and_the_run_completes(tmp_path: Path) -> None:
    """The reported failure: no document annotated unknown or Negative can be rewritten; Positive ones can."""
    _corpus(tmp_path, rewritable_negative=False)
    documents = pd.read_csv(tmp_path / "reviews.csv")
    assert len(documents) == 7 and (documents["food"] == "Positive").sum() == 4
    # Pad to ten documents the rules cannot read, so only the four Positive ones rewrite.
    extra = pd.DataFrame(
        {
            "review_id": ["R20", "R21", "R22"],
            "review": ["Dinner happened.", "The bread was stale.", "Great cocktails."],
            "food": ["unknown", "Negative", "unknown"],
            "service": ["bad", "good", "bad"],
        }
    )
    pd.concat([documents, extra]).to_csv(tmp_path / "reviews.csv", index=False)
    effects_config = [
        {"treatment": "food", "contrast": ["unknown", "Negative"], "sources": ["rewrite", "observational"]},
        {"treatment": "food", "contrast": ["Positive", "Negative"], "sources": ["human_pairs"]},
    ]
    folder, effects = _run(tmp_path, _config(tmp_path, effects_config, evidence={"units": 4}))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    gap = _row(effects, analysis="confounding_gap")
    assert np.isnan(gap["estimate"])
    assert gap["reason"].startswith("no document annotated unknown or Negative could be rewritten to both values")
    assert "4 documents with other values were" in gap["reason"]
    rewrite = _row(effects, analysis="ate", method="t", contrast="unknown vs Negative")
    assert rewrite["n_units"] == 4 and np.isfinite(rewrite["estimate"])
    assert _row(effects, analysis="human_pairs", method="t", moderator=None)["n_units"] == 3
    for name in ("effects.csv", "outcomes.parquet", "rewrites.parquet", "summary.md", "report.html"):
        assert (folder / name).is_file(), name
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert "confounding gap: regression minus rewrite | not estimable | no document annotated unknown" in summary
    # Four texts cannot be split into cross-validation folds: the probes say so, the rest of the evidence stands.
    assert "Linear probes: not computed: factor 'food' has value counts" in summary
    assert "<h3>Linear probes</h3>\n<p>Not computed: factor &#39;food&#39; has value counts" in (
        folder / "report.html"
    ).read_text(encoding="utf-8")


def test_validate_counts_each_contrasts_support_per_source_before_the_model_loads(tmp_path: Path) -> None:
    _corpus(tmp_path, rewritable_negative=False)
    effects_config = [
        {"treatment": "food", "contrast": ["unknown", "Negative"], "sources": ["rewrite", "observational"]},
        {"treatment": "food", "contrast": ["Positive", "Negative"], "sources": ["human_pairs", "rewrite"]},
    ]
    result = CliRunner().invoke(app, ["validate", str(_config(tmp_path, effects_config))])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "  food (unknown vs Negative), rewrite: 4 documents rewritable to both unknown and Negative" in lines
    assert any(
        line.startswith("  food (unknown vs Negative), observational: 2 documents at unknown, 1 at Negative -> NOT")
        for line in lines
    )
    assert (
        "  food (Positive vs Negative), human_pairs: 0 edits Negative -> Positive, 3 edits Positive -> Negative"
        in lines
    )


def test_sources_default_to_what_the_data_supports_and_keep_the_order_asked(tmp_path: Path) -> None:
    _corpus(tmp_path)
    default = load_experiment(_config(tmp_path, [{"treatment": "food", "contrast": ["Positive", "Negative"]}]))
    assert default.contrasts[0].sources == ("rewrite", "observational", "human_pairs")
    no_rules = load_experiment(
        _config(tmp_path, [{"treatment": "food", "contrast": ["Positive", "Negative"]}], rules=False)
    )
    assert no_rules.contrasts[0].sources == ("observational", "human_pairs")
    asked = load_experiment(
        _config(
            tmp_path,
            [{"treatment": "food", "contrast": ["Positive", "Negative"], "sources": ["human_pairs", "rewrite"]}],
        )
    )
    assert asked.contrasts[0].sources == ("human_pairs", "rewrite")
    with pytest.raises(ConfigError, match=r"hypotheses\[0\].effect: .* judged on an effect's rewrite rows"):
        load_experiment(
            _config(
                tmp_path,
                [{"treatment": "food", "contrast": ["Positive", "Negative"], "sources": ["human_pairs"]}],
                hypotheses=[
                    {"id": "H1", "claim": "c", "effect": "food[Positive vs Negative]", "direction": "positive"}
                ],
            )
        )


def test_an_effect_with_only_observational_estimates_runs_with_directions(tmp_path: Path) -> None:
    service = ["good", "good", "bad", "good", "bad", "bad", "good", "bad", "good", "bad"]
    _corpus(tmp_path, service=service)
    config = _config(
        tmp_path,
        [
            {
                "treatment": "food",
                "contrast": ["Positive", "Negative"],
                "sources": ["observational"],
                "directions": True,
            }
        ],
        rules=False,
        observational={"estimators": ["regression", "exact_matching"]},
    )
    folder, effects = _run(tmp_path, config)
    assert set(effects["analysis"]) == {"observational"}
    methods = effects.groupby("method")["stratum"].apply(lambda s: sorted(s.fillna("all")))
    assert methods.to_dict() == {
        "exact_matching": ["Negative", "Positive", "all"],
        "naive": ["all"],
        "regression": ["Negative", "Positive", "all"],
    }
    # Exact matching's effect on the Positive documents, by hand: per service stratum, the difference of the
    # arms' mean outcomes, weighted by the stratum's Positive documents.
    documents = pd.read_parquet(folder / "documents.parquet").set_index("doc_id")
    factual = _by_arm(folder)["factual"]
    kept = documents[documents["food"].isin(["Positive", "Negative"])].assign(outcome=factual)
    means = kept.groupby(["service", "food"])["outcome"].mean().unstack()
    weights = kept[kept["food"] == "Positive"].groupby("service").size()
    by_hand = float(((means["Positive"] - means["Negative"]) * weights).sum() / weights.sum())
    row = _row(effects, method="exact_matching", stratum="Positive")
    assert row["estimate"] == pytest.approx(by_hand, abs=1e-9)
    assert row["n_units"] == weights.sum()
