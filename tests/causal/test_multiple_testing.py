"""adjust_p_values: Holm and BH over the finite entries only, checked against statsmodels."""

import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from causal import EstimationError, adjust_p_values


@pytest.mark.parametrize(("method", "statsmodels_method"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_nan_entries_are_skipped_and_stay_nan(method, statsmodels_method):
    p_values = np.array([0.04, math.nan, 0.001, 0.3, math.nan, 0.02])
    adjusted = adjust_p_values(p_values, method=method)
    tested = ~np.isnan(p_values)
    np.testing.assert_array_equal(np.isnan(adjusted), ~tested)
    np.testing.assert_allclose(
        adjusted[tested], multipletests(p_values[tested], method=statsmodels_method)[1], rtol=1e-12
    )


def test_all_nan_and_empty_inputs():
    assert np.isnan(adjust_p_values([math.nan, math.nan], method="holm")).all()
    assert adjust_p_values([], method="bh").shape == (0,)


@pytest.mark.parametrize(
    ("p_values", "match"),
    [
        ([0.1, 1.5], r"p_values must lie in \[0, 1\] or be nan; got \[1.5\]"),
        ([-0.1, math.inf], r"got \[-0.1, inf\]"),
        ([[0.1, 0.2]], r"must be one-dimensional; got shape \(1, 2\)"),
    ],
)
def test_bad_p_values_raise(p_values, match):
    with pytest.raises(EstimationError, match=match):
        adjust_p_values(p_values, method="holm")


@pytest.mark.parametrize(("method", "statsmodels_method"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_matches_statsmodels_on_random_families_with_ties(method, statsmodels_method):
    rng = np.random.default_rng(7)
    for size in (1, 2, 5, 40):
        p_values = np.round(rng.uniform(0, 0.2, size), 2)
        np.testing.assert_allclose(
            adjust_p_values(p_values, method=method), multipletests(p_values, method=statsmodels_method)[1], rtol=1e-12
        )
