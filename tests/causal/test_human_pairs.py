"""estimate_human_pairs: one paired-effect group per kind of edit, checked by hand."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from causal import EstimationError, estimate_human_pairs, estimate_paired_effects

PAIRS = pd.DataFrame(
    {
        "factor": ["sex", "insurance", "sex", "sex", "insurance", "sex"],
        "source": ["female", "private", "female", "male", "private", "female"],
        "target": ["male", "none", "male", "female", "none", "male"],
        "difference": [1.0, -2.0, 3.0, 0.5, -4.0, 2.0],
    }
)


def test_each_kind_of_edit_is_one_group_with_hand_computed_t_rows():
    table = estimate_human_pairs(PAIRS, level=0.9, n_bootstrap=200, seed=3)
    t_rows = [e for e in table.estimates if e.method == "t"]
    assert [(e.treatment, e.contrast, e.n_units) for e in t_rows] == [
        ("sex", "male vs female", 3),
        ("insurance", "none vs private", 2),
        ("sex", "female vs male", 1),
    ]
    male = np.array([1.0, 3.0, 2.0])
    half = stats.t.ppf(0.95, 2) * male.std(ddof=1) / np.sqrt(3)
    assert t_rows[0].estimate == pytest.approx(2.0)
    assert (t_rows[0].ci_low, t_rows[0].ci_high) == pytest.approx((2.0 - half, 2.0 + half))
    assert t_rows[1].estimate == pytest.approx(-3.0)
    assert t_rows[2].estimate == 0.5 and np.isnan(t_rows[2].ci_low)
    assert {(e.analysis, e.estimand, e.moderator, e.level) for e in table.estimates} == {
        ("human_pairs", "total", None, 0.9)
    }


@pytest.mark.parametrize("bootstrap_method", ["symmetric_studentized", "percentile"])
def test_rows_equal_estimate_paired_effects_on_each_group_apart_from_the_analysis(bootstrap_method):
    table = estimate_human_pairs(PAIRS, n_bootstrap=300, bootstrap_method=bootstrap_method, seed=11)
    group = PAIRS[(PAIRS["factor"] == "sex") & (PAIRS["source"] == "female")][["difference"]]
    reference = estimate_paired_effects(
        group,
        treatment="sex",
        contrast="male vs female",
        n_bootstrap=300,
        bootstrap_method=bootstrap_method,
        seed=11,
    )
    mine = [e for e in table.estimates if e.contrast == "male vs female"]
    assert [e.method for e in mine] == ["t", "bootstrap"]
    for ours, theirs in zip(mine, reference.estimates, strict=True):
        assert (ours.estimate, ours.ci_low, ours.ci_high, ours.std_error) == (
            theirs.estimate,
            theirs.ci_low,
            theirs.ci_high,
            theirs.std_error,
        )
        assert theirs.analysis == "ate" and ours.analysis == "human_pairs"


def test_the_input_is_not_modified():
    pairs = PAIRS.copy()
    estimate_human_pairs(pairs, n_bootstrap=50)
    pd.testing.assert_frame_equal(pairs, PAIRS)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (PAIRS.drop(columns="target"), r"pairs must have column\(s\) \['target'\]"),
        (PAIRS.iloc[:0], "pairs has no rows"),
        (
            PAIRS.assign(source=["female", None, "female", "male", "private", "female"]),
            r"1 row\(s\) do not, first at index 1",
        ),
        (
            PAIRS.assign(target=["male", "none", "female", "female", "none", "male"]),
            r"source == target, first at index 2 \(sex=female\)",
        ),
        (PAIRS.assign(difference=[1.0, np.inf, 3.0, 0.5, -4.0, 2.0]), r"paired\['difference'\] must be finite"),
        (PAIRS.to_dict(), "pairs must be a pandas DataFrame; got dict"),
    ],
)
def test_bad_pairs_raise(pairs, message):
    with pytest.raises(EstimationError, match=message):
        estimate_human_pairs(pairs, n_bootstrap=50)
