"""estimate_observational: known effects in simulated confounded tables, directions, rows that say why, errors."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.ensemble import GradientBoostingClassifier
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

METHODS = ("regression", "ipw", "aipw", "matching")
"""The default methods."""
ALL_METHODS = (*METHODS, "exact_matching")

GRAPH = CausalGraph.from_edges(
    ["age", "sex", "insurance", "weekday"],
    "decision",
    ["age -> insurance", "age -> decision", "insurance -> decision", "sex -> decision"],
)
TWO_CONFOUNDERS = CausalGraph.from_edges(
    ["age", "sex", "insurance"],
    "decision",
    ["age -> insurance", "sex -> insurance", "age -> decision", "sex -> decision", "insurance -> decision"],
)
NOT_REFUTED = "refuters run on regression and ipw only: dowhy cannot re-run aipw and matching"


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


def _varying(n, *, seed):
    """Two confounders, and an effect of 3 for the old, 0 for the young, -1 more for men.

    Old patients are mostly uninsured, so the effect on the uninsured (att) is far from
    the effect on the insured (atc).
    """
    rng = np.random.default_rng(seed)
    age, sex = rng.choice(["young", "old"], size=n), rng.choice(["female", "male"], size=n)
    p_none = np.where(age == "old", 0.7, 0.2) + np.where(sex == "male", 0.1, 0.0)
    none = rng.random(n) < p_none
    effect = 3.0 * (age == "old") - 1.0 * (sex == "male")
    outcome = 1.0 * (age == "old") + 0.5 * (sex == "male") + none * effect + rng.normal(size=n)
    return pd.DataFrame({"age": age, "sex": sex, "insurance": np.where(none, "none", "private"), "outcome": outcome})


def _estimate(frame, graph=GRAPH, **options):
    return estimate_observational(frame, graph=graph, treatment="insurance", contrast=("none", "private"), **options)


def _effect(result, method, stratum=None):
    (row,) = [e for e in result.effects.estimates if e.method == method and e.stratum == stratum]
    return row


def _kept(table):
    kept = table[table["insurance"].isin(["none", "private"])]
    return kept, (kept["insurance"] == "none").to_numpy(), kept["outcome"].to_numpy()


def _hajek(y, treated, weights):
    return np.average(y[treated], weights=weights[treated]) - np.average(y[~treated], weights=weights[~treated])


@pytest.fixture(scope="module")
def table():
    return _confounded(2000, seed=3)


@pytest.fixture(scope="module")
def result(table):
    """The default call (default methods, every refuter, 20 simulations) on 2000 documents."""
    return _estimate(table)


def test_naive_is_biased_and_backdoor_adjustment_covers_the_planted_effect(result):
    naive = _effect(result, "naive")
    assert naive.ci_low > EFFECT + 0.5
    for method in METHODS:
        row = _effect(result, method)
        assert row.ci_low < EFFECT < row.ci_high
        assert row.ci_high - row.ci_low < 0.5
        assert row.p_value < 1e-6
    assert result.adjustment_set == ("age",)
    assert "E[decision|age]" in result.estimand
    assert [e.method for e in result.effects.estimates] == ["naive", *METHODS]
    assert {
        (e.analysis, e.estimand, e.treatment, e.contrast, e.moderator, e.stratum, e.level, e.reason)
        for e in result.effects.estimates
    } == {("observational", "total", "insurance", "none vs private", None, None, 0.95, None)}


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


def test_with_one_binary_confounder_every_method_is_the_stratified_difference_of_means(table, result):
    """Saturated models: each stratum's own means, weighted by its share, whatever the method."""
    kept, treated, y = _kept(table)
    old = (kept["age"] == "old").to_numpy()
    stratified = sum(
        np.mean(stratum) * (y[stratum & treated].mean() - y[stratum & ~treated].mean()) for stratum in (old, ~old)
    )
    exact = _effect(_estimate(table, methods=("exact_matching",), refuters=()), "exact_matching")
    for row in (*(_effect(result, method) for method in METHODS), exact):
        assert row.estimate == pytest.approx(stratified, abs=1e-6)


def test_regression_is_g_computation_with_treatment_interactions():
    """The mean over documents of the predicted difference, from OLS on [1, t, x, t*x]."""
    frame = _varying(600, seed=8)
    treated = (frame["insurance"] == "none").to_numpy(dtype=float)[:, None]
    dummies = np.column_stack([frame["age"] == "young", frame["sex"] == "male"]).astype(float)
    fit = sm.OLS(frame["outcome"].to_numpy(), np.hstack([np.ones_like(treated), treated, dummies, treated * dummies]))
    params = fit.fit().params
    expected = np.mean(params[1] + dummies @ params[4:])
    row = _effect(_estimate(frame, graph=TWO_CONFOUNDERS, methods=("regression",), refuters=()), "regression")
    assert row.estimate == pytest.approx(expected)


@pytest.mark.parametrize(
    ("propensity", "model"),
    [
        ("logistic", None),  # statsmodels' Logit: maximum likelihood, another implementation
        ("logistic_l2", LogisticRegression(tol=1e-10)),  # sklearn's default penalty, solved to the optimum
        ("gradient_boosting", GradientBoostingClassifier(random_state=0)),
    ],
)
def test_ipw_and_the_overlap_table_use_the_chosen_propensity_model(propensity, model):
    frame = _varying(600, seed=9)
    treated = (frame["insurance"] == "none").to_numpy()
    dummies = np.column_stack([frame["age"] == "young", frame["sex"] == "male"]).astype(float)
    if model is None:
        scores = sm.Logit(treated.astype(float), sm.add_constant(dummies)).fit(disp=0).predict()
    else:
        scores = model.fit(dummies, treated).predict_proba(dummies)[:, 1]
    result = _estimate(frame, graph=TWO_CONFOUNDERS, methods=("ipw",), propensity=propensity, refuters=())
    strata = "age=" + frame["age"] + ", sex=" + frame["sex"]
    expected = pd.Series(scores).groupby(strata).min()
    assert result.overlap.set_index("stratum")["propensity_min"].to_numpy() == pytest.approx(expected, abs=1e-6)
    clipped = np.clip(scores, 0.05, 0.95)
    weights = np.where(treated, 1 / clipped, 1 / (1 - clipped))
    hajek = _hajek(frame["outcome"].to_numpy(), treated, weights)
    assert _effect(result, "ipw").estimate == pytest.approx(hajek, abs=1e-6)


def test_placebo_refutation_is_near_zero_and_the_others_keep_the_estimate(result):
    frame = result.refutations
    assert list(frame.columns) == list(REFUTATION_COLUMNS)
    assert [tuple(r) for r in frame[["method", "refuter"]].itertuples(index=False)] == [
        (m, r) for m in ("regression", "ipw") for r in ("placebo_treatment", "random_common_cause", "data_subset")
    ]
    for row in frame.itertuples(index=False):
        # dowhy re-implements the same estimator (interacted regression, clipped Hajek weights)
        assert row.estimate == pytest.approx(_effect(result, row.method).estimate, abs=1e-5)
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
        # the unpenalised logistic model on one binary confounder fits each stratum's share
        assert row.propensity_min == pytest.approx(row.n_treated / len(stratum), abs=1e-6)
    assert overlap["supported"].all()
    assert result.warnings == (NOT_REFUTED,)


def test_result_is_frozen_and_renders(result):
    assert isinstance(result, ObservationalResult)
    assert list(result.to_frame().columns) == list(EFFECT_COLUMNS)
    with pytest.raises(AttributeError):
        result.treatment = "age"
    text = result.summary()
    assert text.startswith("observational effect of insurance (none vs private), adjusting for age")
    assert "refuter placebo_treatment on ipw" in text and str(result) == text
    assert f"warning: {NOT_REFUTED}" in text


def test_directions_add_the_effect_on_the_treated_and_on_the_reference_documents(table):
    result = _estimate(table, methods=ALL_METHODS, directions=True, refuters=())
    rows = result.effects.estimates
    assert [(e.method, e.moderator, e.stratum) for e in rows] == [("naive", None, None)] + [
        (method, moderator, stratum)
        for method in ALL_METHODS
        for moderator, stratum in ((None, None), ("insurance", "none"), ("insurance", "private"))
    ]
    kept, treated, _ = _kept(table)
    n_units = {None: len(kept), "none": int(treated.sum()), "private": int((~treated).sum())}
    assert all(e.n_units == n_units[e.stratum] for e in rows)
    for e in rows[1:]:  # the planted effect is the same everywhere, so every population's interval covers it
        assert e.ci_low < EFFECT < e.ci_high


def test_directional_rows_equal_hand_computations_where_the_effect_differs_by_factual_value():
    frame = _varying(800, seed=10)
    result = _estimate(frame, graph=TWO_CONFOUNDERS, methods=ALL_METHODS, directions=True, refuters=())
    y = frame["outcome"].to_numpy()
    treated = (frame["insurance"] == "none").to_numpy()
    strata = ("age=" + frame["age"] + ", sex=" + frame["sex"]).to_numpy()
    dummies = np.column_stack([frame["age"] == "young", frame["sex"] == "male"]).astype(float)
    t = treated.astype(float)[:, None]
    params = sm.OLS(y, np.hstack([np.ones_like(t), t, dummies, t * dummies])).fit().params
    m0 = params[0] + dummies @ params[2:4]
    m1 = m0 + params[1] + dummies @ params[4:]
    e = np.clip(sm.Logit(t[:, 0], sm.add_constant(dummies)).fit(disp=0).predict(), 0.05, 0.95)
    for stratum, members in (("none", treated), ("private", ~treated)):
        counts = pd.Series(strata[members]).value_counts(normalize=True)
        stratified = sum(
            share * (y[(strata == s) & treated].mean() - y[(strata == s) & ~treated].mean())
            for s, share in counts.items()
        )
        assert _effect(result, "exact_matching", stratum).estimate == pytest.approx(stratified)
        assert _effect(result, "regression", stratum).estimate == pytest.approx(np.mean((m1 - m0)[members]))
        # ipw: the other arm weighted by its odds of having the population's value; aipw: the regression corrected
        odds = e / (1 - e) if stratum == "none" else (1 - e) / e
        weights = np.where(members, 1.0, odds)
        assert _effect(result, "ipw", stratum).estimate == pytest.approx(_hajek(y, treated, weights), abs=1e-6)
        if stratum == "none":
            aipw = np.sum(treated * (y - m0) - ~treated * (y - m0) * odds) / treated.sum()
        else:
            aipw = np.sum(~treated * (m1 - y) + treated * (y - m1) * odds) / (~treated).sum()
        assert _effect(result, "aipw", stratum).estimate == pytest.approx(aipw, abs=1e-6)
    att, atc = _effect(result, "exact_matching", "none"), _effect(result, "exact_matching", "private")
    assert att.ci_low > atc.ci_high  # the old and the women, where the effect is largest, are mostly uninsured


def test_a_contrast_value_without_enough_documents_gives_rows_that_say_so():
    frame = _confounded(300, seed=11)
    result = estimate_observational(
        frame, graph=GRAPH, treatment="insurance", contrast=("none", "unknown"), directions=True, refuters=()
    )
    reason = "no document has insurance=unknown; each contrast value needs at least 2 documents"
    assert [(e.method, e.stratum) for e in result.effects.estimates] == [("naive", None)] + [
        (m, s) for m in METHODS for s in (None, "none", "unknown")
    ]
    for row in result.effects.estimates:
        assert not row.estimable and row.reason == reason
        assert math.isnan(row.estimate) and math.isnan(row.ci_low)
    assert result.refutations.empty
    one = frame[frame["insurance"] != "public"].copy()
    one.loc[one.index[0], "insurance"] = "public"
    single = estimate_observational(
        one, graph=GRAPH, treatment="insurance", contrast=("public", "private"), refuters=()
    )
    assert {e.reason for e in single.effects.estimates} == {
        "only 1 document has insurance=public; each contrast value needs at least 2 documents"
    }


def test_a_stratum_without_reference_documents_leaves_matching_without_an_estimate_and_the_rest_estimated():
    frame = _confounded(900, seed=12, none_by_age={"young": 0.3, "old": 0.6, "middle": 1.0})
    result = _estimate(frame, methods=ALL_METHODS, directions=True, refuters=())
    middle = result.overlap.set_index("stratum").loc["age=middle"]
    assert middle["n_treated"] > 0 and middle["n_reference"] == 0 and not middle["supported"]
    for method in ("matching", "exact_matching"):
        reason = (
            f"no reference documents in strata age=middle; {method} cannot find matches for the treated documents there"
        )
        assert _effect(result, method).reason == reason
        assert _effect(result, method, "none").reason == reason
        assert _effect(result, method, "private").estimable  # the insured all have matches
    for method in ("naive", "regression", "ipw", "aipw"):
        assert _effect(result, method).estimable
    assert result.warnings[0] == (
        "positivity fails in 1 of 3 strata (one arm has no document there; see overlap): regression extrapolates "
        "into them; ipw and aipw cannot balance them; matching and exact_matching give no estimate for a "
        "population that needs the missing arm"
    )


def test_a_stratum_without_treated_documents_is_one_warning_line_and_nothing_is_printed():
    frame = _confounded(600, seed=1, none_by_age={"young": 0.3, "old": 0.6, "middle": 0.0})
    with warnings.catch_warnings(record=True) as printed:
        warnings.simplefilter("always")
        result = _estimate(frame, methods=ALL_METHODS, refuters=())
    assert printed == []
    assert [w.split(" (")[0] for w in result.warnings] == [
        "positivity fails in 1 of 3 strata",
        "the outcome regression is rank-deficient",  # no uninsured middle-aged: their interaction is unidentified
    ]
    assert _effect(result, "matching").reason == (
        "no treated documents in strata age=middle; matching cannot find matches for the reference documents there"
    )
    assert "strata without both arms: age=middle" in result.summary()
    assert "matching: not estimable: no treated documents in strata age=middle" in result.summary()


def test_an_estimator_that_fails_gives_its_row_the_error_and_the_others_still_estimate():
    """Two uninsured documents, one per age: exact matching has no within-stratum variance for them."""
    frame = _confounded(200, seed=13)
    frame = frame[frame["insurance"] == "private"].copy()
    frame.loc[frame.index[frame["age"] == "young"][0], "insurance"] = "none"
    frame.loc[frame.index[frame["age"] == "old"][0], "insurance"] = "none"
    result = _estimate(frame, methods=ALL_METHODS, refuters=())
    assert _effect(result, "exact_matching").reason == (
        "exact_matching failed: ValueError: every stratum has at most one document of an arm, "
        "so no within-stratum variance exists"
    )
    assert all(_effect(result, method).estimable for method in ("naive", *METHODS))


def test_propensities_outside_the_clipping_bounds_are_warned_about():
    frame = _confounded(1500, seed=2, none_by_age={"young": 0.3, "old": 0.88})
    result = _estimate(frame, methods=("ipw",), refuters=())
    assert result.warnings == (
        "propensity outside [0.05, 0.95] in 1 of 2 strata (see overlap): ipw clips it there, which biases it",
    )


def test_an_unannotated_confounder_is_named_in_the_error():
    frame = _confounded(200, seed=0).drop(columns="age")
    with pytest.raises(EstimationError, match=r"adjusting needs \['age'\], which the frame does not annotate"):
        _estimate(frame, refuters=())


def test_a_factor_without_a_path_to_the_outcome_is_estimated_and_flagged():
    frame = _confounded(800, seed=4)
    result = estimate_observational(
        frame, graph=GRAPH, treatment="weekday", contrast=("weekend", "weekday"), refuters=("placebo_treatment",)
    )
    assert result.adjustment_set == ()
    assert any("declares no directed path from weekday to decision" in w for w in result.warnings)
    assert any(w.startswith("ipw is not refuted: dowhy's ipw needs a confounder") for w in result.warnings)
    naive, *adjusted = result.effects.estimates
    for row in adjusted:  # nothing to adjust for: every method is the difference of means
        assert row.estimate == pytest.approx(naive.estimate)
        assert row.ci_low < 0 < row.ci_high
    assert result.refutations["method"].tolist() == ["regression"]
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
        (dict(contrast=("none", "none")), "contrast must be two different values"),
        (dict(treatment="mood"), "treatment 'mood' is not a factor of the graph"),
        (dict(methods="ipw"), r"methods must be a sequence of names; got 'ipw' \(write \['ipw'\]\)"),
        (
            dict(methods=("ipw", "stratification")),
            r"methods must be distinct names out of \['regression', 'ipw', 'aipw', 'matching', 'exact_matching'\]",
        ),
        (dict(refuters=("placebo_treatment", "placebo_treatment")), "refuters must be distinct names"),
        (dict(n_refutation_simulations=True), "n_refutation_simulations must be an integer >= 2; got True"),
        (dict(propensity="probit"), r"propensity must be one of \['logistic', 'logistic_l2', 'gradient_boosting'\]"),
        (dict(directions="yes"), "directions must be True or False; got 'yes'"),
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


def test_adjusted_intervals_cover_the_planted_effect_across_seeds_and_the_naive_one_does_not():
    covered = dict.fromkeys(("naive", *METHODS), 0)
    for seed in range(30):
        result = _estimate(_confounded(300, seed=100 + seed), refuters=())
        for row in result.effects.estimates:
            covered[row.method] += row.ci_low < EFFECT < row.ci_high
    assert min(covered[method] for method in METHODS) >= 25
    assert covered["naive"] <= 3


def test_strata_of_two_confounders_are_their_joint_values():
    frame = _confounded(400, seed=6)
    result = _estimate(frame, graph=TWO_CONFOUNDERS, refuters=())
    assert result.adjustment_set == ("age", "sex")
    assert result.overlap["stratum"].tolist() == [
        "age=old, sex=female",
        "age=old, sex=male",
        "age=young, sex=female",
        "age=young, sex=male",
    ]
    assert result.overlap[["n_treated", "n_reference"]].to_numpy().sum() == result.effects.estimates[0].n_units
