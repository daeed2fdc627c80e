"""Precision-targeted sampling: units drawn in batches until every confidence sequence is narrow enough."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal import confidence_sequence
from experiments import ConfigError, compile_config, parse_config, run_experiment
from tests.experiments._tiny_runs import save_tiny_classifier, tiny_config, tiny_experiment

BATCH, BUDGET, DESIGN = 10, 50, 30


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-bert"))


def _sampling(target: float) -> dict:
    return {"units": DESIGN, "seed": 5, "target_half_width": target, "batch_units": BATCH, "max_units": BUDGET}


def _widths_at_each_look(folder: Path, plans: list, looks: list[int]) -> np.ndarray:
    """Half width of every contrast's sequence (rows) at each look's first n units (columns), from the stored outcomes."""
    return _widths_of(pd.read_parquet(folder / "outcomes.parquet"), plans, looks)


def _widths_of(outcomes: pd.DataFrame, plans: list, looks: list[int]) -> np.ndarray:
    """As `_widths_at_each_look`, from the rows of one outcome."""
    by_arm = outcomes.pivot(index="unit_id", columns="arm", values="value")
    return np.array(
        [
            [
                confidence_sequence(
                    (by_arm[plan.treated.label] - by_arm[plan.reference.label]).to_numpy()[:n], design_size=DESIGN
                ).half_width
                for n in looks
            ]
            for plan in plans
        ]
    )


def test_a_sequential_run_stops_at_the_first_look_within_the_target(classifier: Path, tmp_path: Path) -> None:
    experiment = tiny_experiment(classifier, sampling=_sampling(1e-9))
    budget_run = run_experiment(experiment, out_dir=tmp_path / "budget")
    looks = list(range(BATCH, BUDGET + 1, BATCH))
    stopping = budget_run.manifest["stopping"]
    assert (stopping["reason"], stopping["n_units"], stopping["batches"]) == ("max_units", BUDGET, len(looks))
    widths = _widths_at_each_look(budget_run.folder, list(experiment.contrasts), looks)
    np.testing.assert_allclose(list(stopping["half_widths"].values()), widths[:, -1], rtol=1e-12)
    units = pd.read_parquet(budget_run.folder / "units.parquet")
    one_shot = experiment.model.sample_units(BUDGET, seed=5)
    np.testing.assert_array_equal(units["unit_id"], one_shot.ids)

    widest = widths.max(axis=0)
    assert widest[2] < widest[1], "the widest interval must narrow between the second and third look"
    target = float(widest[2])
    targeted = run_experiment(tiny_experiment(classifier, sampling=_sampling(target)), out_dir=tmp_path / "target")
    stopping = targeted.manifest["stopping"]
    assert (stopping["reason"], stopping["n_units"], stopping["batches"]) == ("target_half_width", 3 * BATCH, 3)
    assert max(stopping["half_widths"].values()) <= target
    same_units = pd.read_parquet(targeted.folder / "outcomes.parquet")
    earlier = pd.read_parquet(budget_run.folder / "outcomes.parquet")
    pd.testing.assert_frame_equal(same_units, earlier[earlier["unit_id"] < 3 * BATCH].reset_index(drop=True))

    effects = pd.read_csv(targeted.folder / "effects.csv")
    sequence_rows = effects[effects["method"] == "asymptotic_cs"]
    assert len(sequence_rows) == len(experiment.contrasts)
    assert set(sequence_rows["n_units"]) == {3 * BATCH} and set(sequence_rows["analysis"]) == {"ate"}
    np.testing.assert_allclose((sequence_rows["ci_high"] - sequence_rows["ci_low"]) / 2, widths[:, 2], rtol=1e-12)
    assert {"t", "bootstrap"} <= set(effects["method"])
    summary = (targeted.folder / "summary.md").read_text(encoding="utf-8")
    assert f"sampling stopped after {3 * BATCH} units in 3 batches: every effect's anytime-valid interval" in summary
    fixed = effects[effects["method"] != "asymptotic_cs"]["p_value"].notna().sum()
    assert f"across all {fixed} fixed-sample tests" in summary


def test_target_half_width_needs_sampled_units(classifier: Path) -> None:
    data = tiny_config(classifier, sampling={"mode": "exact", "target_half_width": 0.01})
    with pytest.raises(ConfigError, match="sampling: .*target_half_width draws units .* but mode is exact"):
        parse_config(data)


def test_with_several_outcomes_the_first_decides_when_to_stop_and_each_gets_its_sequences(
    classifier: Path, tmp_path: Path
) -> None:
    """P(yes), the first outcome, stops the run at the third look; the logit, narrower here, was within the
    target at the first look and stopped nothing, yet gets its own anytime-valid rows."""
    budget = tiny_config(classifier, sampling=_sampling(1e-9))
    budget.pop("outcome")
    budget["outcomes"] = [
        {"name": "p_yes", "type": "class_prob", "label": "yes"},
        {"name": "logit_yes", "type": "class_logit", "label": "yes"},
    ]
    experiment = compile_config(parse_config(budget))
    stored = pd.read_parquet(run_experiment(experiment, out_dir=tmp_path / "budget").folder / "outcomes.parquet")
    looks = list(range(BATCH, BUDGET + 1, BATCH))
    plans = list(experiment.contrasts)
    first, second = (
        _widths_of(stored[stored["outcome"] == name], plans, looks).max(axis=0) for name in ("p_yes", "logit_yes")
    )
    target = float(first[2])
    assert first[1] > target and second[0] <= target
    result = run_experiment(
        compile_config(parse_config(dict(budget, sampling=_sampling(target)))), out_dir=tmp_path / "t"
    )
    assert result.manifest["stopping"]["n_units"] == looks[2]
    effects = pd.read_csv(result.folder / "effects.csv")
    sequences = effects[effects["method"] == "asymptotic_cs"]
    assert sequences["outcome"].value_counts().to_dict() == {"p_yes": len(plans), "logit_yes": len(plans)}
    kept = stored[(stored["outcome"] == "logit_yes") & (stored["unit_id"] < looks[2])]
    expected = _widths_of(kept, plans, [looks[2]])[:, 0]
    widths = (
        sequences[sequences["outcome"] == "logit_yes"]["ci_high"]
        - sequences[sequences["outcome"] == "logit_yes"]["ci_low"]
    ) / 2
    np.testing.assert_allclose(widths.to_numpy(), expected, rtol=1e-9)
