"""Confidence sequences: hand computation, tuning, p-value duality, weights, and coverage under peeking."""

import dataclasses
import math

import numpy as np
import pytest

from causal import SEQUENCE_COLUMNS, EstimationError, SequenceInterval, confidence_sequence
from causal._paired import t_interval


def test_interval_equals_hand_computation():
    # mean 3.5, sample variance 21 / 3 = 7; alpha 0.1, design size 10:
    # rho^2 = (-2 ln 0.1 + ln(1 - 2 ln 0.1)) / 10 = (4.6051702 + 1.7236894) / 10 = 0.63288596
    # t rho^2 + 1 = 3.5315438; margin^2 = 2 * 3.5315438 / (16 * 0.63288596) * ln(sqrt(3.5315438) / 0.1)
    #            = 0.69750794 * 2.9334527 = 2.0461065; half width = sqrt(7 * 2.0461065) = 3.7845403
    # ln p = ln(3.5315438) / 2 - 16 * 0.63288596 * 3.5^2 / (2 * 7 * 3.5315438) = 0.63086756 - 2.5089320
    result = confidence_sequence(np.array([1.0, 2.0, 4.0, 7.0]), level=0.9, design_size=10)
    assert result.estimate == 3.5
    assert result.half_width == pytest.approx(3.7845403, rel=1e-7)
    assert (result.ci_low, result.ci_high) == pytest.approx((3.5 - 3.7845403, 3.5 + 3.7845403), abs=1e-6)
    assert result.std_error == pytest.approx(math.sqrt(7) / 2, rel=1e-12)
    assert result.p_value == pytest.approx(math.exp(0.63086756 - 2.5089320), rel=1e-7)
    assert (result.n_units, result.level, result.design_size, result.method) == (4, 0.9, 10, "asymptotic_cs")


def test_sequence_is_tightest_near_its_design_size():
    differences = np.random.default_rng(2).normal(size=400)
    widths = {
        size: confidence_sequence(differences, design_size=size).half_width for size in (25, 100, 400, 1600, 6400)
    }
    assert min(widths, key=widths.get) == 400


def test_sequence_is_wider_than_the_fixed_sample_t_interval():
    differences = np.random.default_rng(3).normal(1.0, 2.0, size=2000)
    for n in (20, 100, 500, 2000):
        fixed = t_interval(differences[:n], level=0.95)
        assert confidence_sequence(differences[:n]).half_width > (fixed.ci_high - fixed.ci_low) / 2


@pytest.mark.parametrize("seed", range(6))
def test_p_value_below_alpha_exactly_when_zero_is_outside(seed):
    rng = np.random.default_rng(seed)
    for n in (10, 40, 160):
        result = confidence_sequence(rng.normal(0.25, 1.0, size=n), level=0.9)
        excludes_zero = result.ci_low > 0 or result.ci_high < 0
        assert (result.p_value <= 0.1) == excludes_zero
        assert 0 < result.p_value <= 1


def test_constant_weights_change_nothing_and_weights_give_the_weighted_mean():
    rng = np.random.default_rng(4)
    differences, weights = rng.normal(size=50), rng.uniform(0.5, 2.0, size=50)
    plain = confidence_sequence(differences)
    assert confidence_sequence(differences, weights=np.full(50, 3.0)) == plain
    weighted = confidence_sequence(differences, weights=weights)
    assert weighted == confidence_sequence(differences, weights=7 * weights)
    assert weighted.estimate == pytest.approx(np.average(differences, weights=weights), rel=1e-12)
    scaled = weights / weights.mean() * (differences - weighted.estimate)
    assert weighted.std_error == pytest.approx(math.sqrt(np.sum(scaled**2) / 49 / 50), rel=1e-12)


def test_one_unit_gives_nan_and_constant_differences_a_point():
    single = confidence_sequence(np.array([2.0]))
    assert single.estimate == 2.0 and math.isnan(single.half_width) and math.isnan(single.ci_low)
    point = confidence_sequence(np.full(8, 0.5))
    assert (point.ci_low, point.ci_high, point.half_width, point.p_value) == (0.5, 0.5, 0.0, 0.0)
    assert confidence_sequence(np.zeros(8)).p_value == 1.0


def test_result_is_frozen_and_tabular_and_input_untouched():
    differences = np.array([0.5, 1.5, -0.25, 2.0])
    before = differences.copy()
    result = confidence_sequence(differences)
    np.testing.assert_array_equal(differences, before)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.estimate = 0.0  # type: ignore[misc]
    frame = result.to_frame()
    assert tuple(frame.columns) == SEQUENCE_COLUMNS and len(frame) == 1
    assert frame.loc[0, "half_width"] == result.half_width
    assert "asymptotic_cs" in str(result) and "n=4" in result.summary()
    assert isinstance(result, SequenceInterval)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"level": 1.0}, "level must lie strictly between 0 and 1; got 1.0"),
        ({"design_size": 0}, "design_size must be a positive integer .*got 0"),
        ({"design_size": 2.5}, "design_size must be a positive integer .*got 2.5"),
        ({"weights": np.ones(3)}, r"weights must hold one value per difference, shape \(4,\); got shape \(3,\)"),
        ({"weights": np.array([1.0, 0.0, 1.0, 1.0])}, r"weights must be finite and positive; got \[0.0\]"),
    ],
)
def test_bad_options_raise(options, match):
    with pytest.raises(EstimationError, match=match):
        confidence_sequence(np.array([1.0, 2.0, 3.0, 4.0]), **options)


@pytest.mark.parametrize(
    ("differences", "match"),
    [
        (np.array([]), r"non-empty 1-D array .*got shape \(0,\)"),
        (np.ones((2, 3)), r"non-empty 1-D array .*got shape \(2, 3\)"),
        (np.array([1.0, np.nan, 2.0]), "must be finite; 1 value.* first at position 1"),
        (["a", "b"], "differences must be numeric; got list"),
    ],
)
def test_bad_differences_raise(differences, match):
    with pytest.raises(EstimationError, match=match):
        confidence_sequence(differences)


_SEEDS, _BATCH, _BUDGET, _TARGET, _DESIGN_SIZE = 400, 20, 600, 0.1, 300


def test_sequence_keeps_coverage_under_peeking_and_stopping_where_repeated_t_intervals_do_not():
    """Skewed differences (log-normal, known mean e^(1/8)) drawn 20 units at a time, up to 600.

    Each seed looks after every batch. "Peeking": the interval must cover the mean at
    every look (what any data-dependent stopping time can exploit). "Stopping": stop at
    the first look whose half width is below 0.1 (or at the budget), as precision-targeted
    sampling does, and check that interval. The sequence keeps 95% under both; the t-interval,
    valid only at a fixed n, loses it (its small-variance draws are also its low-mean ones).
    """
    truth = math.exp(0.5**2 / 2)
    covered = {("cs", "peeking"): 0, ("cs", "stopping"): 0, ("t", "peeking"): 0, ("t", "stopping"): 0}
    for seed in range(_SEEDS):
        differences = np.random.default_rng(seed).lognormal(0.0, 0.5, size=_BUDGET)
        always = {"cs": True, "t": True}
        at_stop: dict[str, bool] = {}
        for n in range(_BATCH, _BUDGET + 1, _BATCH):
            sequence = confidence_sequence(differences[:n], design_size=_DESIGN_SIZE)
            fixed = t_interval(differences[:n], level=0.95)
            looks = {"cs": (sequence.ci_low, sequence.ci_high), "t": (fixed.ci_low, fixed.ci_high)}
            for method, (low, high) in looks.items():
                covers = low <= truth <= high
                always[method] &= covers
                if method not in at_stop and ((high - low) / 2 < _TARGET or n == _BUDGET):
                    at_stop[method] = covers
        for method in ("cs", "t"):
            covered[method, "peeking"] += always[method]
            covered[method, "stopping"] += at_stop[method]
    rates = {key: count / _SEEDS for key, count in covered.items()}
    print(
        f"coverage over {_SEEDS} seeds (nominal 0.95): "
        + ", ".join(f"{method} {rule} {rate:.3f}" for (method, rule), rate in rates.items())
    )
    assert rates["cs", "peeking"] >= 0.95 and rates["cs", "stopping"] >= 0.95
    assert rates["t", "stopping"] < 0.95
    assert rates["t", "peeking"] < 0.8
