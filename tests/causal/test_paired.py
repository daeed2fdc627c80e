"""Intervals for paired differences: hand computations, seeding, chunking and coverage."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from causal import estimate_paired_effects
from causal._paired import bootstrap_interval, t_interval


def _ate(differences, method, **options):
    paired = pd.DataFrame({"difference": np.asarray(differences, dtype=float)})
    table = estimate_paired_effects(paired, treatment="t", contrast="a vs b", **options)
    (row,) = [e for e in table.estimates if e.method == method]
    return row


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_t_interval_equals_hand_computation(level):
    # mean 3.5, sample variance 21 / 3 = 7
    row = _ate([1.0, 2.0, 4.0, 7.0], "t", level=level)
    std_error = math.sqrt(7.0) / 2
    half_width = stats.t.ppf((1 + level) / 2, df=3) * std_error
    assert row.estimate == 3.5
    assert row.std_error == pytest.approx(std_error, rel=1e-12)
    assert row.ci_low == pytest.approx(3.5 - half_width, rel=1e-12)
    assert row.ci_high == pytest.approx(3.5 + half_width, rel=1e-12)
    assert (row.n_units, row.level) == (4, level)


def test_t_p_value_matches_scipy_ttest_1samp():
    differences = np.random.default_rng(3).normal(0.2, 1.0, size=40)
    row = _ate(differences, "t")
    assert row.p_value == pytest.approx(stats.ttest_1samp(differences, 0.0).pvalue, rel=1e-10)


def test_bootstrap_same_seed_same_interval_other_seed_other_interval():
    differences = np.random.default_rng(4).exponential(size=60)
    first, again = (_ate(differences, "bootstrap", seed=11) for _ in range(2))
    other = _ate(differences, "bootstrap", seed=12)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.ci_low < first.estimate == differences.mean() < first.ci_high
    assert math.isnan(first.p_value)


@pytest.mark.parametrize("max_draws_per_chunk", [1, 7 * 50 + 3])
def test_chunked_bootstrap_equals_unchunked(max_draws_per_chunk):
    differences = np.random.default_rng(5).normal(size=50)
    whole, chunked = (
        bootstrap_interval(differences, level=0.9, n_bootstrap=101, rng=np.random.default_rng(9), **options)
        for options in ({}, {"max_draws_per_chunk": max_draws_per_chunk})
    )
    assert whole == chunked


def test_fewer_than_two_units_give_nan_intervals():
    for interval in (
        t_interval(np.array([2.5]), level=0.95),
        bootstrap_interval(np.array([2.5]), level=0.95, n_bootstrap=10, rng=np.random.default_rng(0)),
    ):
        assert interval.estimate == 2.5
        assert all(math.isnan(v) for v in (interval.ci_low, interval.ci_high, interval.std_error, interval.p_value))


@pytest.mark.parametrize(("value", "p_value"), [(0.25, 0.0), (0.0, 1.0)])
def test_constant_differences_give_degenerate_intervals(value, p_value):
    t_row = _ate([value] * 5, "t")
    boot_row = _ate([value] * 5, "bootstrap")
    for row in (t_row, boot_row):
        assert row.ci_low == row.ci_high == row.estimate == value
        assert row.std_error == 0.0
    assert t_row.p_value == p_value


def test_intervals_cover_the_true_mean_at_the_nominal_rate():
    """Skewed but finite: exponential shifted to mean 0.5; 300 seeds of 100 units."""
    true_mean, n_seeds = 0.5, 300
    covered = {"t": 0, "bootstrap": 0}
    for seed in range(n_seeds):
        differences = true_mean - 1.0 + np.random.default_rng(seed).exponential(size=100)
        table = estimate_paired_effects(
            pd.DataFrame({"difference": differences}), treatment="t", contrast="a vs b", n_bootstrap=500, seed=seed
        )
        for row in table.estimates:
            covered[row.method] += row.ci_low <= true_mean <= row.ci_high
    for method, count in covered.items():
        assert 0.92 <= count / n_seeds <= 0.98, (method, count / n_seeds)
