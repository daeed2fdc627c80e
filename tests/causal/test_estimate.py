"""estimate_paired_effects: CATE, heterogeneity, exact mode, inputs untouched, errors."""

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from causal import EstimationError, estimate_paired_effects


def _estimate(paired, **options):
    return estimate_paired_effects(paired, treatment="insurance", contrast="none vs private", **options)


def _rows(table, **fields):
    return [e for e in table.estimates if all(getattr(e, k) == v for k, v in fields.items())]


def _planted(shift_old, *, seed, n=120):
    rng = np.random.default_rng(seed)
    age = np.repeat(["young", "old"], n)
    noise = rng.normal(size=2 * n)
    return pd.DataFrame(
        {"difference": noise + np.where(age == "old", shift_old, 0.0), "weight": 1 / (2 * n), "age": age}
    )


def test_cate_estimates_equal_stratum_means_exactly():
    paired = pd.DataFrame({"difference": [1.0, 10.0, 2.0, 20.0, 3.0], "sex": ["f", "m", "f", "m", "f"]})
    table = _estimate(paired, moderators=["sex"], n_bootstrap=50)
    for stratum, mean, n in (("f", 2.0, 3), ("m", 15.0, 2)):
        rows = _rows(table, analysis="cate", moderator="sex", stratum=stratum)
        assert [r.method for r in rows] == ["t", "bootstrap"]
        assert all(r.estimate == mean and r.n_units == n for r in rows)
    assert _rows(table, analysis="ate")[0].estimate == 36.0 / 5


def test_rows_come_in_a_fixed_order_with_the_given_labels():
    paired = _planted(1.0, seed=0)
    paired["age"] = pd.Categorical(paired["age"], categories=["young", "middle", "old"])
    table = _estimate(paired, moderators=["age"], estimand="direct", level=0.9)
    assert [(e.analysis, e.stratum, e.method) for e in table.estimates] == [
        ("ate", None, "t"),
        ("ate", None, "bootstrap"),
        ("cate", "young", "t"),
        ("cate", "young", "bootstrap"),
        ("cate", "old", "t"),
        ("cate", "old", "bootstrap"),
        ("heterogeneity", None, "wald_hc3"),
    ]
    assert {(e.treatment, e.contrast, e.estimand, e.level) for e in table.estimates} == {
        ("insurance", "none vs private", "direct", 0.9)
    }


def test_uncategorical_strata_are_sorted():
    table = _estimate(_planted(1.0, seed=0), moderators=["age"])
    assert [e.stratum for e in _rows(table, analysis="cate", method="t")] == ["old", "young"]


def test_adding_a_moderator_leaves_the_ate_rows_unchanged():
    paired = _planted(1.0, seed=1)
    assert _rows(_estimate(paired), analysis="ate") == _rows(_estimate(paired, moderators=["age"]), analysis="ate")


def test_heterogeneity_detects_planted_difference():
    (row,) = _rows(_estimate(_planted(1.0, seed=2), moderators=["age"]), analysis="heterogeneity")
    assert row.p_value < 1e-6
    assert row.estimate == pytest.approx(stats.chi2.isf(row.p_value, df=1), rel=1e-6)
    assert math.isnan(row.ci_low) and math.isnan(row.ci_high) and math.isnan(row.std_error)
    assert (row.moderator, row.stratum, row.n_units) == ("age", None, 240)


def test_heterogeneity_is_not_significant_without_planted_difference():
    (row,) = _rows(_estimate(_planted(0.0, seed=2), moderators=["age"]), analysis="heterogeneity")
    assert row.p_value > 0.01


def test_heterogeneity_equals_statsmodels_hc3_wald_test():
    rng = np.random.default_rng(6)
    stratum = np.repeat(["a", "b", "c"], [30, 50, 20])
    scale = np.select([stratum == "a", stratum == "b"], [1.0, 3.0], 0.5)
    paired = pd.DataFrame({"difference": rng.normal(scale=scale) + (stratum == "c") * 0.4, "stratum": stratum})
    (row,) = _rows(_estimate(paired, moderators=["stratum"]), analysis="heterogeneity")
    fit = smf.ols("difference ~ C(stratum)", data=paired).fit(cov_type="HC3")
    reference = fit.wald_test(np.eye(3)[1:], scalar=True, use_f=False)
    assert row.estimate == pytest.approx(float(reference.statistic), rel=1e-10)
    assert row.p_value == pytest.approx(float(reference.pvalue), rel=1e-10)


def test_one_stratum_gives_no_heterogeneity_row():
    paired = pd.DataFrame({"difference": [1.0, 2.0, 3.0], "age": "old"})
    table = _estimate(paired, moderators=["age"])
    assert not _rows(table, analysis="heterogeneity")
    assert len(_rows(table, analysis="cate")) == 2


def test_single_unit_stratum_gives_nan_intervals_and_nan_test():
    paired = pd.DataFrame({"difference": [1.0, 2.0, 4.0, 7.0], "age": ["y", "y", "y", "o"]})
    table = _estimate(paired, moderators=["age"])
    for row in _rows(table, analysis="cate", stratum="o"):
        assert row.estimate == 7.0 and math.isnan(row.ci_low) and math.isnan(row.ci_high)
    (wald,) = _rows(table, analysis="heterogeneity")
    assert math.isnan(wald.estimate) and math.isnan(wald.p_value)


@pytest.mark.parametrize(("old_value", "statistic", "p_value"), [(1.0, math.inf, 0.0), (0.5, 0.0, 1.0)])
def test_constant_strata_follow_the_constant_rule(old_value, statistic, p_value):
    paired = pd.DataFrame({"difference": [0.5, 0.5, old_value, old_value], "age": ["y", "y", "o", "o"]})
    (wald,) = _rows(_estimate(paired, moderators=["age"]), analysis="heterogeneity")
    assert (wald.estimate, wald.p_value) == (statistic, p_value)


def test_exact_mode_gives_weighted_means():
    paired = pd.DataFrame(
        {"difference": [1.0, 2.0, 4.0, 8.0], "weight": [0.125, 0.375, 0.25, 0.25], "age": ["y", "y", "o", "o"]}
    )
    table = _estimate(paired, moderators=["age"], exact=True)
    expected = {(None, None): 0.125 + 0.75 + 1.0 + 2.0, ("age", "o"): 6.0, ("age", "y"): (0.125 + 0.75) / 0.5}
    assert {(e.moderator, e.stratum): e.estimate for e in table.estimates} == expected
    for row in table.estimates:
        assert row.method == "exact"
        assert row.ci_low == row.ci_high == row.estimate
        assert row.std_error == 0.0 and math.isnan(row.p_value)
    assert [e.analysis for e in table.estimates] == ["ate", "cate", "cate"]


def test_sampled_mode_needs_no_weight_column():
    table = _estimate(pd.DataFrame({"difference": [1.0, 2.0, 3.0]}))
    assert [e.method for e in table.estimates] == ["t", "bootstrap"]


@pytest.mark.parametrize("exact", [False, True])
def test_input_frame_is_not_mutated(exact):
    paired = _planted(1.0, seed=3)
    paired["age"] = pd.Categorical(paired["age"])
    before = paired.copy()
    _estimate(paired, moderators=["age"], exact=exact)
    pd.testing.assert_frame_equal(paired, before)


@pytest.mark.parametrize(
    ("paired", "options", "match"),
    [
        (pd.DataFrame({"difference": []}), {}, "paired has no rows"),
        (pd.DataFrame({"diff": [1.0]}), {}, r"must have column\(s\) \['difference'\]"),
        (pd.DataFrame({"difference": [1.0, 2.0]}), {"exact": True}, r"\['weight'\]"),
        (pd.DataFrame({"difference": [1.0, 2.0]}), {"moderators": ["age"]}, r"\['age'\]"),
        (pd.DataFrame({"difference": [1.0, np.nan]}), {}, "'difference'.* must be finite"),
        (pd.DataFrame({"difference": [1.0, np.inf]}), {}, "must be finite; 1 row"),
        (pd.DataFrame({"difference": ["a", "b"]}), {}, "must be numeric"),
        (pd.DataFrame({"difference": [1.0], "weight": [0.0]}), {"exact": True}, "'weight'.* must be positive"),
        (pd.DataFrame({"difference": [1.0], "age": [None]}), {"moderators": ["age"]}, "must label every unit"),
        (
            pd.DataFrame({"difference": [1.0], "age": ["o"]}),
            {"moderators": ["age", "age"]},
            "moderators must be distinct",
        ),
        (
            pd.DataFrame({"difference": [1.0], "age": ["o"]}),
            {"moderators": "age"},
            r"moderators must be a sequence of column names; got 'age' \(write \['age'\]\)",
        ),
        ([1.0, 2.0], {}, "must be a pandas DataFrame"),
    ],
)
def test_bad_tables_raise(paired, options, match):
    with pytest.raises(EstimationError, match=match):
        _estimate(paired, **options)


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, math.nan, "0.95"])
def test_level_outside_unit_interval_raises(level):
    with pytest.raises(EstimationError, match=r"level must lie strictly between 0 and 1; got"):
        _estimate(pd.DataFrame({"difference": [1.0, 2.0]}), level=level)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"n_bootstrap": 1}, "n_bootstrap must be an integer >= 2; got 1"),
        ({"n_bootstrap": 10.5}, "n_bootstrap must be an integer"),
        ({"seed": -1}, "seed must be a non-negative integer; got -1"),
        (
            {"bootstrap_method": "BCa"},
            r"bootstrap_method must be one of \['symmetric_studentized', 'studentized', 'bca', 'percentile'\]; got 'BCa'",
        ),
    ],
)
def test_bad_options_raise(options, match):
    with pytest.raises(EstimationError, match=match):
        _estimate(pd.DataFrame({"difference": [1.0, 2.0]}), **options)


def test_bootstrap_method_changes_only_the_bootstrap_rows_and_keeps_their_label():
    paired = _planted(1.0, seed=4)
    tables = {
        method: _estimate(paired, moderators=["age"], bootstrap_method=method, n_bootstrap=300)
        for method in ("percentile", "studentized")
    }
    percentile, studentized = (table.estimates for table in tables.values())
    assert [e.method for e in percentile] == [e.method for e in studentized]
    assert "bootstrap" in {e.method for e in studentized}
    for ours, theirs in zip(percentile, studentized, strict=True):
        same = (ours.estimate, ours.ci_low, ours.ci_high) == (theirs.estimate, theirs.ci_low, theirs.ci_high)
        assert same == (ours.method != "bootstrap"), ours
