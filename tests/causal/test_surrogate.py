"""fit_surrogates: planted decision rules are recovered, fidelity is honest about noise."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from causal import SURROGATE_COLUMNS, EstimationError, fit_surrogates

FACTORS = ["insurance", "sex", "symptom"]


def _units(n, *, seed, flip=0.0):
    """Decision 0 exactly for uninsured patients with mild symptoms; `flip` of them inverted at random."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "insurance": rng.choice(["none", "public", "private"], n),
            "sex": rng.choice(["female", "male"], n),
            "symptom": rng.choice(["mild", "severe"], n),
        }
    )
    planted = ((frame["insurance"] != "none") | (frame["symptom"] == "severe")).astype(int)
    frame["decision"] = np.where(rng.random(n) < flip, 1 - planted, planted)
    return frame


def test_a_planted_rule_is_recovered_with_fidelity_one():
    result = fit_surrogates(_units(300, seed=0), factors=FACTORS, seed=0)
    assert (result.n_train, result.n_test) == (210, 90)
    for fidelity in (result.tree_fidelity, result.logistic_fidelity):
        assert (fidelity.fidelity, fidelity.n_test) == (1.0, 90)
        assert (fidelity.ci_low, fidelity.ci_high) == pytest.approx((stats.beta.ppf(0.025, 90, 1), 1.0))
    assert "insurance=none" in result.rules and "symptom=severe" in result.rules
    assert "sex=" not in result.rules
    coefficients = dict(result.coefficients)
    assert result.coefficients[0][0] == "(intercept)"
    assert coefficients["insurance=none"] < 0 < coefficients["symptom=severe"]
    assert abs(coefficients["sex=male"]) < abs(coefficients["insurance=none"]) / 10


def test_fidelity_reflects_decisions_no_factor_explains():
    # 20% of decisions are flipped at random: the best description agrees on about 80%
    result = fit_surrogates(_units(1000, seed=1, flip=0.2), factors=FACTORS, seed=1)
    tree = result.tree_fidelity
    assert tree.ci_low <= 0.8 <= tree.ci_high and tree.fidelity < 0.9
    assert result.majority_fidelity.fidelity < tree.fidelity


def test_majority_baseline_is_the_share_of_the_common_decision():
    frame = _units(400, seed=2).assign(insurance="none", symptom="mild", decision=0)
    frame.loc[::4, "decision"] = 1  # one in four positive, unrelated to any factor value
    result = fit_surrogates(frame, factors=FACTORS, seed=2)
    held_out = result.majority_fidelity
    assert held_out.fidelity == pytest.approx(0.75, abs=0.06)
    assert result.tree_fidelity.fidelity <= held_out.fidelity + 1e-12


def test_same_seed_same_result_other_seed_other_split():
    frame = _units(200, seed=3, flip=0.1)
    first = fit_surrogates(frame, factors=FACTORS, seed=5)
    assert first == fit_surrogates(frame, factors=FACTORS, seed=5)
    assert first != fit_surrogates(frame, factors=FACTORS, seed=6)


def test_frames_summary_and_caveat():
    frame = _units(100, seed=4)
    before = frame.copy()
    result = fit_surrogates(frame, factors=FACTORS, seed=0, max_depth=1, test_share=0.5, level=0.9)
    pd.testing.assert_frame_equal(frame, before)
    table = result.to_frame()
    assert list(table.columns) == list(SURROGATE_COLUMNS)
    assert table["surrogate"].tolist() == ["tree", "logistic", "majority"]
    assert list(result.coefficient_frame().columns) == ["feature", "coefficient"]
    assert len(result.coefficient_frame()) == 1 + 3 + 2 + 2
    lines = result.summary().splitlines()
    assert "(describes the model's decisions; not a causal claim)" in lines[0]
    assert lines[1].startswith("tree fidelity") and lines[1].endswith("(90% CI)")
    assert lines[4] == "tree of depth <= 1:" and lines[5].startswith("|--- ")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.rules = ""


@pytest.mark.parametrize(
    "change, options, message",
    [
        (lambda f: f.assign(decision=1), {}, r"all have decision 1; a surrogate needs both decisions"),
        (lambda f: f, {"factors": []}, r"factors is empty"),
        (lambda f: f.drop(columns="sex"), {}, r"frame lacks columns \['sex'\]"),
        (lambda f: f, {"test_share": 1.0}, r"test_share must lie strictly between 0 and 1; got 1.0"),
        (lambda f: f.iloc[:2], {}, r"2 units with test_share 0.3 leave 1 held-out and 1 training"),
        (lambda f: f.assign(decision=0.5), {}, r"'decision' must hold 0/1"),
        (lambda f: f, {"max_depth": 0}, r"max_depth must be >= 1; got 0"),
    ],
)
def test_bad_inputs_raise(change, options, message):
    with pytest.raises(EstimationError, match=message):
        fit_surrogates(change(_units(50, seed=0)), **{"factors": FACTORS, "seed": 0, **options})
