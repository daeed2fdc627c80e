"""Fairness figures against hand computations on small tables."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from causal import (
    FAIRNESS_COLUMNS,
    EstimationError,
    FairnessTable,
    counterfactual_flip_rates,
    group_fairness,
)

Z = stats.norm.ppf(0.975)


def _clopper_pearson(k, n, level=0.95):
    tail = (1 - level) / 2
    low = 0.0 if k == 0 else stats.beta.ppf(tail, k, n - k + 1)
    high = 1.0 if k == n else stats.beta.ppf(1 - tail, k + 1, n - k)
    return low, high


def _wilson(k, n):
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return centre - half, centre + half


def _newcombe(k1, n1, k2, n2):
    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = _wilson(k1, n1), _wilson(k2, n2)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def _rows(table, **fields):
    frame = table.to_frame()
    for column, value in fields.items():
        frame = frame.loc[frame[column] == value]
    return frame


def _one(table, **fields):
    rows = _rows(table, **fields)
    assert len(rows) == 1, rows
    return rows.iloc[0]


@pytest.fixture
def sexes():
    """10 women (6 referred) and 8 men (2 referred), with ground-truth labels."""
    return pd.DataFrame(
        {
            "sex": ["female"] * 10 + ["male"] * 8,
            "decision": [1, 1, 1, 1, 1, 1, 0, 0, 0, 0] + [1, 1, 0, 0, 0, 0, 0, 0],
            "label": [1, 1, 1, 0, 0, 0, 1, 1, 0, 0] + [1, 0, 1, 0, 1, 0, 0, 0],
        }
    )


def test_flip_rates_count_changed_decisions_with_clopper_pearson_intervals():
    decisions = pd.DataFrame(
        {
            "treatment": ["insurance"] * 7 + ["sex"] * 4,
            "contrast": ["none vs private"] * 7 + ["male vs female"] * 4,
            "decision_treated": [0, 0, 1, 1, 0, 1, 0] + [1, 0, 1, 0],
            "decision_reference": [1, 1, 1, 1, 0, 1, 1] + [1, 0, 1, 0],
        }
    )
    table = counterfactual_flip_rates(decisions)
    insurance, sex = table.metrics
    assert (insurance.factor, insurance.contrast, insurance.n_units) == ("insurance", "none vs private", 7)
    assert insurance.estimate == pytest.approx(3 / 7)
    assert (insurance.ci_low, insurance.ci_high) == pytest.approx(_clopper_pearson(3, 7))
    assert sex.estimate == 0.0 and (sex.ci_low, sex.ci_high) == pytest.approx(_clopper_pearson(0, 4))
    assert table.summary().splitlines()[1] == ("insurance (none vs private): flip rate 0.429 [0.099, 0.816] [n=7]")


def test_weighted_flip_rates_are_exact_shares():
    decisions = pd.DataFrame(
        {
            "treatment": "insurance",
            "contrast": "none vs private",
            "decision_treated": [0, 1, 1],
            "decision_reference": [1, 1, 0],
            "weight": [0.5, 0.3, 0.2],
        }
    )
    metric = counterfactual_flip_rates(decisions, weight="weight").metrics[0]
    assert metric.estimate == metric.ci_low == metric.ci_high == pytest.approx(0.7)


def test_demographic_parity_and_disparate_impact_by_hand(sexes):
    table = group_fairness(sexes, factor="sex")
    female, male = (_one(table, metric="positive_rate", value=v) for v in ("female", "male"))
    assert (female["estimate"], female["n_units"]) == (0.6, 10)
    assert (female["ci_low"], female["ci_high"]) == pytest.approx(_clopper_pearson(6, 10))
    assert (male["estimate"], male["n_units"]) == (0.25, 8)
    parity = _one(table, metric="demographic_parity_difference")
    assert (parity["contrast"], parity["n_units"]) == ("female vs male", 18)
    assert parity["estimate"] == pytest.approx(0.35)
    assert (parity["ci_low"], parity["ci_high"]) == pytest.approx(_newcombe(6, 10, 2, 8))
    impact = _one(table, metric="disparate_impact_ratio")
    assert impact["contrast"] == "male vs female"
    assert impact["estimate"] == pytest.approx(0.25 / 0.6) and impact["four_fifths_violated"]
    assert table.four_fifths_violations == ("sex",)
    assert _rows(table, metric="equal_opportunity_difference").empty


def test_equal_opportunity_compares_true_positive_rates(sexes):
    table = group_fairness(sexes, factor="sex", label="label")
    # positives: women 0,1,2,6,7 -> decisions 1,1,1,0,0; men 0,2,4 -> decisions 1,0,0
    female, male = (_one(table, metric="true_positive_rate", value=v) for v in ("female", "male"))
    assert (female["estimate"], female["n_units"]) == (0.6, 5)
    assert (male["estimate"], male["n_units"]) == pytest.approx((1 / 3, 3))
    assert (male["ci_low"], male["ci_high"]) == pytest.approx(_clopper_pearson(1, 3))
    gap = _one(table, metric="equal_opportunity_difference")
    assert gap["estimate"] == pytest.approx(0.6 - 1 / 3) and gap["contrast"] == "female vs male"
    assert (gap["ci_low"], gap["ci_high"]) == pytest.approx(_newcombe(3, 5, 1, 3))
    assert gap["four_fifths_violated"] is None


def test_three_values_compare_the_highest_and_lowest_rates_and_meet_four_fifths():
    frame = pd.DataFrame(
        {
            "insurance": ["private"] * 20 + ["public"] * 20 + ["none"] * 20,
            "decision": [1] * 18 + [0] * 2 + [1] * 17 + [0] * 3 + [1] * 16 + [0] * 4,
        }
    )
    table = group_fairness(frame, factor="insurance")
    assert _rows(table, metric="positive_rate")["value"].tolist() == ["none", "private", "public"]
    parity = _one(table, metric="demographic_parity_difference")
    assert parity["contrast"] == "private vs none" and parity["estimate"] == pytest.approx(0.1)
    impact = _one(table, metric="disparate_impact_ratio")
    assert impact["estimate"] == pytest.approx(0.8 / 0.9) and not impact["four_fifths_violated"]
    assert table.four_fifths_violations == ()


def test_weighted_units_give_exact_rates(sexes):
    weighted = sexes.assign(weight=np.where(sexes["decision"] == 1, 2.0, 1.0))
    table = group_fairness(weighted, factor="sex", weight="weight")
    # women: 6 positives of weight 2, 4 negatives of weight 1 -> 12 / 16; men: 4 / 10
    female, male = (_one(table, metric="positive_rate", value=v) for v in ("female", "male"))
    assert female["estimate"] == female["ci_low"] == female["ci_high"] == pytest.approx(0.75)
    assert male["estimate"] == pytest.approx(0.4)
    parity = _one(table, metric="demographic_parity_difference")
    assert parity["estimate"] == parity["ci_low"] == parity["ci_high"] == pytest.approx(0.35)


def test_categorical_order_one_value_and_all_negative_edge_cases():
    frame = pd.DataFrame({"sex": pd.Categorical(["male", "female"], categories=["male", "female"]), "decision": [0, 0]})
    table = group_fairness(frame, factor="sex")
    assert _rows(table, metric="positive_rate")["value"].tolist() == ["male", "female"]
    single = group_fairness(frame.assign(sex="male"), factor="sex")
    assert math.isnan(_one(single, metric="demographic_parity_difference")["estimate"])
    assert _one(single, metric="disparate_impact_ratio")["four_fifths_violated"] is None


def test_a_ratio_of_two_zero_rates_is_undefined_neither_met_nor_violated():
    """No woman and no man is referred: 0 / 0 is no evidence of parity, so the rule is not passed."""
    frame = pd.DataFrame({"sex": ["female"] * 6 + ["male"] * 4, "decision": [0] * 10})
    table = group_fairness(frame, factor="sex")
    impact = next(m for m in table.metrics if m.metric == "disparate_impact_ratio")
    assert math.isnan(impact.estimate) and impact.four_fifths_violated is None
    assert impact.contrast == "female vs male" and table.four_fifths_violations == ()
    assert impact.summary() == (
        "sex (female vs male): disparate impact ratio undefined (no positive decisions in either group) [n=10]"
    )
    parity = _one(table, metric="demographic_parity_difference")
    assert parity["estimate"] == 0.0  # the difference of two zero rates is defined


def test_frame_columns_concat_and_frozen(sexes):
    flips = counterfactual_flip_rates(
        pd.DataFrame(
            {
                "treatment": ["sex"],
                "contrast": ["male vs female"],
                "decision_treated": [True],
                "decision_reference": [False],
            }
        )
    )
    joined = FairnessTable.concat([flips, group_fairness(sexes, factor="sex")])
    assert list(joined.to_frame().columns) == list(FAIRNESS_COLUMNS)
    assert joined.to_frame()["metric"].tolist()[:2] == ["flip_rate", "positive_rate"]
    assert "sex (male vs female): disparate impact ratio 0.417; four-fifths rule violated [n=18]" in (
        joined.summary().splitlines()
    )
    with pytest.raises(EstimationError, match=r"share one level; got levels \[0.9, 0.95\]"):
        FairnessTable.concat([flips, group_fairness(sexes, factor="sex", level=0.9)])
    with pytest.raises(dataclasses.FrozenInstanceError):
        joined.level = 0.5


def test_inputs_are_untouched(sexes):
    before = sexes.copy()
    group_fairness(sexes, factor="sex", label="label")
    pd.testing.assert_frame_equal(sexes, before)


@pytest.mark.parametrize(
    "change, options, message",
    [
        (lambda f: f.assign(decision=0.3), {}, r"'decision' must hold 0/1 .*got values \['0.3'\]"),
        (lambda f: f.drop(columns="decision"), {}, r"frame lacks columns \['decision'\]"),
        (lambda f: f.iloc[:0], {}, r"frame is empty"),
        (lambda f: f.assign(w=-1.0), {"weight": "w"}, r"'w' must be finite, >= 0 and not all zero"),
        (lambda f: f, {"level": 1.0}, r"strictly between 0 and 1; got 1.0"),
    ],
)
def test_bad_inputs_raise(sexes, change, options, message):
    with pytest.raises(EstimationError, match=message):
        group_fairness(change(sexes), factor="sex", **options)


def test_flip_rates_need_their_columns():
    with pytest.raises(EstimationError, match=r"decisions lacks columns \['decision_reference'\]"):
        counterfactual_flip_rates(pd.DataFrame({"treatment": ["t"], "contrast": ["a vs b"], "decision_treated": [1]}))
