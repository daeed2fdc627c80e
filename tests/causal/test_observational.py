"""estimate_observational: known effects in simulated confounded tables, refuters, overlap, errors."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from causal import (
    EFFECT_COLUMNS,
    OVERLAP_COLUMNS,
    REFUTATION_COLUMNS,
    EstimationError,
    ObservationalResult,
    estimate_observational,
)
from graphs import CausalGraph

EFFECT = -1.0
"""Planted effect of insurance=none vs private on the outcome, the same in every stratum."""

GRAPH = CausalGraph.from_edges(
    ["age", "sex", "insurance", "weekday"],
    "decision",
    ["age -> insurance", "age -> decision", "insurance -> decision", "sex -> decision"],
)


def _confounded(n, *, seed, none_by_age=None):
    """Age drives both insurance and the outcome; sex only the outcome; weekday nothing.

    Old patients are mostly uninsured and score 2 higher, so the naive difference
    (none minus private) is pushed up from the planted -1 by roughly +0.9.
    """
    none_by_age = none_by_age or {"young": 0.2, "old": 0.7}
    rng = np.random.default_rng(seed)
    age = rng.choice(list(none_by_age), size=n)
    p_none = np.vectorize(none_by_age.get)(age)
    draw = rng.random(n)
    insurance = np.where(draw < p_none, "none", np.where(draw < p_none + 0.1, "public", "private"))
    sex = rng.choice(["female", "male"], size=n)
    outcome = 2.0 * (age == "old") + EFFECT * (insurance == "none") + 0.5 * (sex == "male") + rng.normal(size=n)
    return pd.DataFrame(
        {
            "doc_id": np.arange(n),
            "age": age,
            "sex": sex,
            "insurance": insurance,
            "weekday": rng.choice(["weekday", "weekend"], size=n),
            "outcome": outcome,
        }
    )


def _estimate(frame, **options):
    return estimate_observational(frame, graph=GRAPH, treatment="insurance", contrast=("none", "private"), **options)


def _effect(result, method):
    (row,) = [e for e in result.effects.estimates if e.method == method]
    return row


@pytest.fixture(scope="module")
def table():
    return _confounded(2000, seed=3)


@pytest.fixture(scope="module")
def result(table):
    """The default call (both methods, every refuter, 20 simulations) on 2000 documents."""
    return _estimate(table)


def test_naive_is_biased_and_backdoor_adjustment_covers_the_planted_effect(result):
    naive = _effect(result, "naive")
    assert naive.ci_low > EFFECT + 0.5
    for method in ("regression", "ipw"):
        row = _effect(result, method)
        assert row.ci_low < EFFECT < row.ci_high
        assert row.ci_high - row.ci_low < 0.5
        assert row.p_value < 1e-6
    assert result.adjustment_set == ("age",)
    assert "E[decision|age]" in result.estimand
    assert [e.method for e in result.effects.estimates] == ["naive", "regression", "ipw"]
    assert {
        (e.analysis, e.estimand, e.treatment, e.contrast, e.moderator, e.level) for e in result.effects.estimates
    } == {("observational", "total", "insurance", "none vs private", None, 0.95)}


def test_rows_outside_the_contrast_are_left_out_and_the_frame_is_untouched(table, result):
    expected = int(table["insurance"].isin(["none", "private"]).sum())
    assert expected < len(table)
    assert {e.n_units for e in result.effects.estimates} == {expected}
    assert result.overlap["n_treated"].sum() == (table["insurance"] == "none").sum()
    assert list(table.columns) == ["doc_id", "age", "sex", "insurance", "weekday", "outcome"]


def test_naive_row_is_the_welch_difference_of_means(table, result):
    none = table.loc[table["insurance"] == "none", "outcome"]
    private = table.loc[table["insurance"] == "private", "outcome"]
    naive = _effect(result, "naive")
    assert naive.estimate == pytest.approx(none.mean() - private.mean())
    assert naive.std_error == pytest.approx(math.sqrt(none.var() / len(none) + private.var() / len(private)))


def test_regression_is_the_ols_coefficient_with_one_hot_confounders(table, result):
    kept = table[table["insurance"].isin(["none", "private"])]
    design = np.column_stack([np.ones(len(kept)), kept["insurance"] == "none", kept["age"] == "young"])
    coefficients, *_ = np.linalg.lstsq(design.astype(float), kept["outcome"].to_numpy(), rcond=None)
    assert _effect(result, "regression").estimate == pytest.approx(coefficients[1])


def test_ipw_is_the_hajek_estimate_with_the_overlap_propensities(table, result):
    kept = table[table["insurance"].isin(["none", "private"])]
    propensity = kept["age"].map(
        dict(zip(result.overlap["stratum"].str.removeprefix("age="), result.overlap["propensity_min"], strict=True))
    )
    propensity = propensity.clip(0.05, 0.95)
    treated = (kept["insurance"] == "none").to_numpy()
    y = kept["outcome"].to_numpy()
    weights = np.where(treated, 1 / propensity, 1 / (1 - propensity))
    hajek = np.average(y[treated], weights=weights[treated]) - np.average(y[~treated], weights=weights[~treated])
    assert _effect(result, "ipw").estimate == pytest.approx(hajek, abs=1e-9)


def test_placebo_refutation_is_near_zero_and_the_others_keep_the_estimate(result):
    frame = result.refutations
    assert list(frame.columns) == list(REFUTATION_COLUMNS)
    assert [tuple(r) for r in frame[["method", "refuter"]].itertuples(index=False)] == [
        (m, r) for m in ("regression", "ipw") for r in ("placebo_treatment", "random_common_cause", "data_subset")
    ]
    for row in frame.itertuples(index=False):
        assert row.estimate == _effect(result, row.method).estimate
        if row.refuter == "placebo_treatment":
            assert abs(row.new_effect) < 0.1
        else:
            assert row.new_effect == pytest.approx(row.estimate, abs=0.05)
        assert 0 <= row.p_value <= 1


def test_overlap_counts_each_stratum_of_the_adjustment_set(table, result):
    overlap = result.overlap
    assert list(overlap.columns) == list(OVERLAP_COLUMNS)
    assert overlap["stratum"].tolist() == ["age=old", "age=young"]
    kept = table[table["insurance"].isin(["none", "private"])]
    for row in overlap.itertuples(index=False):
        stratum = kept[kept["age"] == row.stratum.removeprefix("age=")]
        assert row.n_treated == (stratum["insurance"] == "none").sum()
        assert row.n_reference == (stratum["insurance"] == "private").sum()
        share = row.n_treated / len(stratum)
        assert row.propensity_min == pytest.approx(share, abs=0.01)
    assert overlap["supported"].all()
    assert result.warnings == ()


def test_result_is_frozen_and_renders(result):
    assert isinstance(result, ObservationalResult)
    assert list(result.to_frame().columns) == list(EFFECT_COLUMNS)
    with pytest.raises(AttributeError):
        result.treatment = "age"
    text = result.summary()
    assert text.startswith("observational effect of insurance (none vs private), adjusting for age")
    assert "refuter placebo_treatment on ipw" in text and str(result) == text


def test_a_stratum_without_treated_units_is_named_in_a_warning():
    frame = _confounded(600, seed=1, none_by_age={"young": 0.3, "old": 0.6, "middle": 0.0})
    result = _estimate(frame, refuters=())
    middle = result.overlap.set_index("stratum").loc["age=middle"]
    assert middle["n_treated"] == 0 and middle["n_reference"] > 0 and not middle["supported"]
    assert any(w.startswith("no treated units in strata age=middle:") for w in result.warnings)
    assert not any("reference units" in w for w in result.warnings)


def test_propensities_outside_the_clipping_bounds_are_warned_about():
    frame = _confounded(1500, seed=2, none_by_age={"young": 0.3, "old": 0.88})
    result = _estimate(frame, methods=("ipw",), refuters=())
    assert any(w.startswith("propensity outside [0.05, 0.95] in strata age=old:") for w in result.warnings)


def test_an_unannotated_confounder_is_named_in_the_error():
    frame = _confounded(200, seed=0).drop(columns="age")
    with pytest.raises(EstimationError, match=r"adjusting needs \['age'\], which the frame does not annotate"):
        _estimate(frame, refuters=())


def test_a_factor_without_a_path_to_the_outcome_is_estimated_and_flagged():
    frame = _confounded(800, seed=4)
    result = estimate_observational(
        frame, graph=GRAPH, treatment="weekday", contrast=("weekend", "weekday"), refuters=()
    )
    assert result.adjustment_set == ()
    assert any("declares no directed path from weekday to decision" in w for w in result.warnings)
    assert any(w.startswith("ipw left out") for w in result.warnings)
    naive, regression = result.effects.estimates
    assert regression.method == "regression" and regression.ci_low < 0 < regression.ci_high
    assert regression.estimate == pytest.approx(naive.estimate)
    assert result.overlap["stratum"].tolist() == ["all"]


def test_same_seed_same_numbers_and_each_refuter_has_its_own_stream():
    frame = _confounded(400, seed=5)
    options = dict(methods=("ipw",), n_refutation_simulations=3, seed=7)
    first, second = _estimate(frame, **options), _estimate(frame, **options)
    pd.testing.assert_frame_equal(first.refutations, second.refutations)
    alone = _estimate(frame, refuters=("data_subset",), **options).refutations
    pd.testing.assert_frame_equal(alone, first.refutations.iloc[[2]].reset_index(drop=True))
    other = _estimate(frame, **{**options, "seed": 8}).refutations
    assert not other["new_effect"].equals(first.refutations["new_effect"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(contrast=("none", "unknown")), r"at least 2 documents; 'insurance' has \{'unknown': 0\}"),
        (dict(contrast=("none", "none")), "contrast must be two different values"),
        (dict(treatment="mood"), "treatment 'mood' is not a factor of the graph"),
        (dict(methods="ipw"), r"methods must be a sequence of names; got 'ipw' \(write \['ipw'\]\)"),
        (dict(methods=("ipw", "matching")), r"methods must be distinct names out of \['regression', 'ipw'\]"),
        (dict(refuters=("placebo_treatment", "placebo_treatment")), "refuters must be distinct names"),
        (dict(n_refutation_simulations=True), "n_refutation_simulations must be an integer >= 2; got True"),
        (dict(outcome="score"), r"frame must have column\(s\) \['score'\]"),
        (dict(level=1.5), "level must lie strictly between 0 and 1"),
        (dict(seed=-1), "seed must be a non-negative integer"),
    ],
)
def test_bad_arguments_raise(options, message):
    arguments = dict(graph=GRAPH, treatment="insurance", contrast=("none", "private"), refuters=())
    with pytest.raises(EstimationError, match=message):
        estimate_observational(_confounded(50, seed=0), **{**arguments, **options})


def test_bad_cells_raise_with_their_index():
    frame = _confounded(50, seed=0)
    kept = frame.index[frame["insurance"] == "none"]
    frame.loc[kept[1], "outcome"] = np.nan
    with pytest.raises(EstimationError, match=rf"must be finite; 1 document\(s\) are not, first at index {kept[1]}"):
        _estimate(frame, refuters=())
    frame = _confounded(50, seed=0).astype({"age": object})
    frame.loc[kept[0], "age"] = None
    with pytest.raises(EstimationError, match=rf"frame\['age'\] must annotate every document .* index {kept[0]}"):
        _estimate(frame, refuters=())


def test_the_overlap_propensity_model_matches_the_one_dowhy_fits(table):
    kept = table[table["insurance"].isin(["none", "private"])]
    features = (kept[["age"]] == "young").astype(float).to_numpy()
    fitted = LogisticRegression().fit(features, kept["insurance"] == "none")
    expected = fitted.predict_proba([[0.0], [1.0]])[:, 1]
    result = _estimate(table, methods=("regression",), refuters=())
    assert result.overlap["propensity_max"].to_numpy() == pytest.approx(expected)


def test_adjusted_intervals_cover_the_planted_effect_across_seeds_and_the_naive_one_does_not():
    covered = {"naive": 0, "regression": 0, "ipw": 0}
    seeds = range(30)
    for seed in seeds:
        result = _estimate(_confounded(300, seed=100 + seed), refuters=())
        for row in result.effects.estimates:
            covered[row.method] += row.ci_low < EFFECT < row.ci_high
    assert covered["regression"] >= 25 and covered["ipw"] >= 26
    assert covered["naive"] <= 3


def test_strata_of_two_confounders_are_their_joint_values():
    graph = CausalGraph.from_edges(
        ["age", "sex", "insurance"],
        "decision",
        ["age -> insurance", "sex -> insurance", "age -> decision", "sex -> decision", "insurance -> decision"],
    )
    frame = _confounded(400, seed=6)
    result = estimate_observational(
        frame, graph=graph, treatment="insurance", contrast=("none", "private"), refuters=()
    )
    assert result.adjustment_set == ("age", "sex")
    assert result.overlap["stratum"].tolist() == [
        "age=old, sex=female",
        "age=old, sex=male",
        "age=young, sex=female",
        "age=young, sex=male",
    ]
    assert result.overlap[["n_treated", "n_reference"]].to_numpy().sum() == result.effects.estimates[0].n_units
