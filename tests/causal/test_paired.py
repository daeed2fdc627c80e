"""Intervals for paired differences: hand computations, references, seeding, chunking and coverage."""

import math
from typing import get_args

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from causal import estimate_paired_effects
from causal._paired import (
    DEFAULT_BOOTSTRAP_METHOD,
    BootstrapMethod,
    _bca_tails,
    bootstrap_interval,
    bootstrap_intervals,
    t_interval,
)

METHODS = get_args(BootstrapMethod)


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


@pytest.mark.parametrize("method", METHODS)
def test_bootstrap_same_seed_same_interval_other_seed_other_interval(method):
    differences = np.random.default_rng(4).exponential(size=60)
    first, again = (_ate(differences, "bootstrap", seed=11, bootstrap_method=method) for _ in range(2))
    other = _ate(differences, "bootstrap", seed=12, bootstrap_method=method)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.ci_low < first.estimate == differences.mean() < first.ci_high
    assert math.isnan(first.p_value)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("max_draws_per_chunk", [1, 7 * 50 + 3])
def test_chunked_bootstrap_equals_unchunked(max_draws_per_chunk, method):
    rows = np.random.default_rng(5).normal(size=(2, 50))
    whole, chunked = (
        bootstrap_intervals(
            rows, level=0.9, n_bootstrap=101, rng=np.random.default_rng(9), bootstrap_method=method, **options
        )
        for options in ({}, {"max_draws_per_chunk": max_draws_per_chunk})
    )
    assert whole == chunked


def test_fewer_than_two_units_give_nan_intervals():
    for interval in (
        t_interval(np.array([2.5]), level=0.95),
        *(
            bootstrap_interval(
                np.array([2.5]), level=0.95, n_bootstrap=10, rng=np.random.default_rng(0), bootstrap_method=m
            )
            for m in METHODS
        ),
    ):
        assert interval.estimate == 2.5
        assert all(math.isnan(v) for v in (interval.ci_low, interval.ci_high, interval.std_error, interval.p_value))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("value", "p_value"), [(0.25, 0.0), (0.0, 1.0), (0.1, 0.0)])
def test_constant_differences_give_degenerate_intervals(value, p_value, method):
    t_row = _ate([value] * 5, "t")
    boot_row = _ate([value] * 5, "bootstrap", bootstrap_method=method)
    for row in (t_row, boot_row):
        assert row.ci_low == row.ci_high == row.estimate == pytest.approx(value)
        assert row.std_error == 0.0
    assert t_row.p_value == p_value


@pytest.mark.parametrize("method", METHODS)
def test_a_constant_row_in_a_sweep_leaves_the_other_rows_alone(method):
    rows = np.vstack([np.random.default_rng(6).exponential(size=30), np.full(30, 0.1)])
    with_constant = bootstrap_intervals(
        rows, level=0.9, n_bootstrap=300, rng=np.random.default_rng(2), bootstrap_method=method
    )
    alone = bootstrap_interval(
        rows[0], level=0.9, n_bootstrap=300, rng=np.random.default_rng(2), bootstrap_method=method
    )
    assert with_constant[0] == alone
    assert with_constant[1].ci_low == with_constant[1].ci_high == with_constant[1].estimate


def _reference_studentized(differences, *, level, n_bootstrap, seed):
    """Bootstrap-t one resample at a time, with the documented rule for resamples of zero spread."""
    n, mean = differences.size, differences.mean()
    statistics = []
    for draw in np.random.default_rng(seed).integers(0, n, size=(n_bootstrap, n)):
        resample = differences[draw]
        deviation = resample.mean() - mean
        if np.ptp(resample) > 0:
            statistics.append(deviation / (resample.std(ddof=1) / math.sqrt(n)))
        else:
            statistics.append(0.0 if deviation == 0 else math.copysign(math.inf, deviation))
    ordered = np.sort(statistics)

    def smallest(probability):  # the ceil(p * B)-th smallest
        return ordered[math.ceil(round(probability * n_bootstrap, 9)) - 1]

    std_error = differences.std(ddof=1) / math.sqrt(n)
    equal_tailed = (mean - smallest((1 + level) / 2) * std_error, mean - smallest((1 - level) / 2) * std_error)
    half_width = np.sort(np.abs(statistics))[math.ceil(round(level * n_bootstrap, 9)) - 1] * std_error
    return {"studentized": equal_tailed, "symmetric_studentized": (mean - half_width, mean + half_width)}


@pytest.mark.parametrize(
    ("differences", "finite"),
    [
        (np.random.default_rng(7).exponential(size=15), True),
        # 8 zeros in 10: 11% of resamples are all zero, at the mean, with statistic 0
        (np.array([-1.0, *[0.0] * 8, 1.0]), True),
        # 7 zeros in 10: 2.8% of resamples are all zero, below the mean (-inf), more than the 2.5% tail
        (np.array([*[0.0] * 7, 1.0, 2.0, 5.0]), False),
    ],
)
def test_studentized_intervals_equal_a_one_resample_at_a_time_reference(differences, finite):
    reference = _reference_studentized(differences, level=0.95, n_bootstrap=2000, seed=3)
    for method, (low, high) in reference.items():
        ours = bootstrap_interval(
            differences, level=0.95, n_bootstrap=2000, rng=np.random.default_rng(3), bootstrap_method=method
        )
        assert (ours.ci_low, ours.ci_high) == pytest.approx((low, high), rel=1e-9)
    low, high = reference["studentized"]
    assert math.isfinite(low) and math.isfinite(high) == finite


def test_three_units_are_too_few_to_studentize_at_level_95():
    """1 in 27 resamples repeats the smallest value, 1 in 27 the largest: more than each 2.5% tail."""
    for method in METHODS:
        interval = bootstrap_interval(
            np.array([0.0, 1.0, 5.0]),
            level=0.95,
            n_bootstrap=2000,
            rng=np.random.default_rng(1),
            bootstrap_method=method,
        )
        bounds = (interval.ci_low, interval.ci_high)
        assert bounds == (-math.inf, math.inf) if "studentized" in method else all(map(math.isfinite, bounds))


def test_on_a_symmetric_sample_every_kind_is_close_to_the_t_interval():
    """Normal quantiles: no skew, so each kind is the t-interval up to Monte Carlo error and, for the

    percentile kinds, the narrower normal quantile and the bootstrap's (n - 1) / n variance (about 3% here).
    """
    differences = stats.norm.ppf((np.arange(100) + 0.5) / 100)
    t = t_interval(differences, level=0.95)
    half_width = t.ci_high - t.estimate
    tolerance = {"symmetric_studentized": 0.02, "studentized": 0.02, "bca": 0.05, "percentile": 0.05}
    for method in METHODS:
        interval = bootstrap_interval(
            differences, level=0.95, n_bootstrap=20_000, rng=np.random.default_rng(3), bootstrap_method=method
        )
        assert interval.ci_low == pytest.approx(t.ci_low, abs=tolerance[method] * half_width), method
        assert interval.ci_high == pytest.approx(t.ci_high, abs=tolerance[method] * half_width), method


def test_bca_without_bias_or_acceleration_reads_the_percentile_tails():
    tails = _bca_tails(np.zeros(3), np.zeros(3), 0.9)
    np.testing.assert_allclose(tails, [[0.05, 0.95]] * 3, rtol=1e-12)
    bent = _bca_tails(np.array([0.2]), np.array([0.05]), 0.9)
    assert bent[0, 0] > 0.05 and bent[0, 1] > 0.95  # resamples below the mean and right skew both move it up


@pytest.mark.parametrize("seed", range(4))
def test_bca_matches_scipy(seed):
    """scipy.stats.bootstrap draws the same resamples from the same seed, so only its linear
    interpolation between order statistics differs from our ceil(p * B)-th one."""
    differences = np.random.default_rng(seed).exponential(size=30)
    std_error = differences.std(ddof=1) / math.sqrt(differences.size)
    ours = bootstrap_interval(
        differences, level=0.95, n_bootstrap=20_000, rng=np.random.default_rng(1), bootstrap_method="bca"
    )
    theirs = stats.bootstrap(
        (differences,), np.mean, method="BCa", n_resamples=20_000, rng=np.random.default_rng(1)
    ).confidence_interval
    assert ours.ci_low == pytest.approx(theirs.low, abs=0.01 * std_error)
    assert ours.ci_high == pytest.approx(theirs.high, abs=0.01 * std_error)


def test_percentile_bounds_are_order_statistics_of_the_resampled_means():
    differences = np.random.default_rng(8).exponential(size=25)
    interval = bootstrap_interval(
        differences, level=0.9, n_bootstrap=1000, rng=np.random.default_rng(4), bootstrap_method="percentile"
    )
    draws = np.random.default_rng(4).integers(0, 25, size=(1000, 25))
    means = np.sort(differences[draws].mean(axis=1))
    assert (interval.ci_low, interval.ci_high) == pytest.approx((means[49], means[949]), rel=1e-12)
    assert interval.std_error == pytest.approx(means.std(ddof=1), rel=1e-9)


def test_the_default_is_a_declared_kind():
    assert DEFAULT_BOOTSTRAP_METHOD in METHODS


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
