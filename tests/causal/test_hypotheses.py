"""judge_hypotheses: each verdict on constructed effect tables, against hand-computed tests."""

import dataclasses
import io
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from causal import (
    EFFECT_COLUMNS,
    VERDICT_COLUMNS,
    EstimationError,
    Hypothesis,
    estimate_paired_effects,
    judge_hypotheses,
)


def _row(treatment, contrast, estimate, std_error, n_units=101, *, method="t", estimand="total", analysis="ate"):
    half = 0.0 if method == "exact" else stats.t.ppf(0.975, n_units - 1) * std_error
    p = math.nan if method == "exact" else 2 * stats.t.sf(abs(estimate) / std_error, n_units - 1)
    return {
        "analysis": analysis,
        "estimand": estimand,
        "treatment": treatment,
        "contrast": contrast,
        "moderator": None,
        "stratum": None,
        "estimate": estimate,
        "ci_low": estimate - half,
        "ci_high": estimate + half,
        "std_error": std_error,
        "p_value": p,
        "p_adjusted": p,
        "n_units": n_units,
        "method": method,
    }


def _table(*rows):
    return pd.DataFrame(list(rows), columns=list(EFFECT_COLUMNS))


def _negative(m=0.05, contrast="none vs private", **fields):
    return Hypothesis(
        id="H1",
        claim="uninsured patients are referred less",
        treatment="insurance",
        contrast=contrast,
        direction="negative",
        min_effect=m,
        **fields,
    )


def _equivalent(e=0.02, contrast=None, id="H2"):
    return Hypothesis(id=id, claim="the weekday does not matter", treatment="weekday", contrast=contrast, equivalence=e)


def _judge(hypothesis, *rows, **options):
    return judge_hypotheses([hypothesis], _table(*rows), **options).verdicts[0]


def _estimate_below(bound, p, std_error, df):
    """An estimate whose one-sided t-test of H0: effect >= bound has p-value `p`."""
    return bound + stats.t.ppf(p, df) * std_error


def test_directional_claim_is_supported_by_a_one_sided_test_against_the_smallest_effect():
    verdict = _judge(_negative(0.05), _row("insurance", "none vs private", -0.2, 0.02))
    half = stats.t.ppf(0.975, 100) * 0.02
    assert verdict.verdict == "supported" and verdict.test == "directional"
    assert verdict.p_value == pytest.approx(stats.t.cdf((-0.2 + 0.05) / 0.02, 100))
    assert verdict.p_adjusted == pytest.approx(verdict.p_value)
    assert (verdict.estimate, verdict.ci_low, verdict.ci_high) == pytest.approx((-0.2, -0.2 - half, -0.2 + half))
    assert (verdict.effect, verdict.n_contrasts) == ("insurance[none vs private]", 1)
    assert "below -0.05" in verdict.reason


@pytest.mark.parametrize("estimate, std_error", [(0.1, 0.02), (-0.03, 0.005)])
def test_directional_claim_is_contradicted_when_the_ci_lies_above_minus_min_effect(estimate, std_error):
    # the second case has the claimed sign but is confidently smaller than the effect of interest
    verdict = _judge(_negative(0.05), _row("insurance", "none vs private", estimate, std_error))
    assert verdict.ci_low > -0.05
    assert verdict.verdict == "contradicted"
    assert "lies entirely at or above -0.05: the effect is confidently not as claimed" in verdict.reason


def test_directional_claim_is_inconclusive_when_the_ci_straddles_minus_min_effect():
    verdict = _judge(_negative(0.05), _row("insurance", "none vs private", -0.06, 0.05))
    assert verdict.ci_low < -0.05 < verdict.ci_high
    assert verdict.verdict == "inconclusive" and verdict.p_value > 0.05
    assert "does not settle whether the effect lies below -0.05" in verdict.reason


def test_positive_direction_mirrors_the_negative_one():
    positive = Hypothesis(
        id="H", claim="c", treatment="insurance", contrast="private vs none", direction="positive", min_effect=0.05
    )
    supported = _judge(positive, _row("insurance", "private vs none", 0.2, 0.02))
    contradicted = _judge(positive, _row("insurance", "private vs none", -0.1, 0.02))
    assert supported.verdict == "supported" and contradicted.verdict == "contradicted"
    assert supported.p_value == pytest.approx(stats.t.sf((0.2 - 0.05) / 0.02, 100))


def test_zero_min_effect_gives_half_the_two_sided_p_value_of_the_effects_table():
    row = _row("insurance", "none vs private", -0.05, 0.02)
    verdict = _judge(_negative(0.0), row)
    assert verdict.p_value == pytest.approx(row["p_value"] / 2)
    assert "lies below 0:" in verdict.reason


def test_equivalence_is_supported_by_tost_when_the_ci_is_tight_around_zero():
    verdict = _judge(_equivalent(0.02), _row("weekday", "weekend vs weekday", 0.001, 0.005, 400))
    tost = max(stats.t.sf((0.001 + 0.02) / 0.005, 399), stats.t.cdf((0.001 - 0.02) / 0.005, 399))
    assert verdict.verdict == "supported" and verdict.test == "equivalence"
    assert verdict.p_value == pytest.approx(tost)
    assert verdict.effect == "weekday[*]"
    assert "TOST" in verdict.reason


def test_equivalence_is_inconclusive_when_the_ci_is_too_wide():
    # a large p-value of the zero-effect test is not evidence of equivalence
    row = _row("weekday", "weekend vs weekday", 0.0, 0.05, 400)
    verdict = _judge(_equivalent(0.02), row)
    assert row["p_value"] == pytest.approx(1.0)
    assert verdict.ci_low < -0.02 and verdict.ci_high > 0.02
    assert verdict.verdict == "inconclusive"
    assert verdict.p_value == pytest.approx(stats.t.sf(0.02 / 0.05, 399))


def test_equivalence_is_contradicted_when_the_ci_lies_outside_the_margin():
    verdict = _judge(_equivalent(0.02), _row("weekday", "weekend vs weekday", -0.2, 0.01, 400))
    assert verdict.verdict == "contradicted"
    assert "±0.02" in verdict.reason


def test_holm_correction_runs_across_the_hypotheses():
    df, se = 100, 0.02
    first, second = _estimate_below(-0.05, 0.03, se, df), _estimate_below(-0.05, 0.04, se, df)
    table = _table(_row("insurance", "none vs private", first, se), _row("insurance", "public vs private", second, se))
    hypotheses = [_negative(0.05), dataclasses.replace(_negative(0.05, "public vs private"), id="H3")]
    alone = [judge_hypotheses([h], table).verdicts[0] for h in hypotheses]
    together = judge_hypotheses(hypotheses, table).verdicts
    assert [v.verdict for v in alone] == ["supported", "supported"]
    # Holm by hand: 2 * 0.03 = 0.06, then max(0.06, 0.04) = 0.06
    assert [v.p_value for v in together] == pytest.approx([0.03, 0.04])
    assert [v.p_adjusted for v in together] == pytest.approx([0.06, 0.06])
    assert [v.verdict for v in together] == ["inconclusive", "inconclusive"]


def test_star_claim_is_an_intersection_union_test_over_every_contrast():
    tight = _row("weekday", "saturday vs monday", 0.0, 0.002, 400)
    loose = _row("weekday", "sunday vs monday", 0.005, 0.01, 400)
    verdict = _judge(_equivalent(0.02), tight, loose)
    p_loose = max(stats.t.sf((0.005 + 0.02) / 0.01, 399), stats.t.cdf((0.005 - 0.02) / 0.01, 399))
    assert verdict.n_contrasts == 2 and verdict.verdict == "inconclusive"
    assert verdict.p_value == pytest.approx(p_loose) and verdict.estimate == 0.005
    assert "sunday vs monday" in verdict.reason and "of 2 contrasts" in verdict.reason
    assert _judge(_equivalent(0.02), tight, dict(tight, contrast="sunday vs monday")).verdict == "supported"


def test_one_contradicting_contrast_contradicts_a_star_claim():
    verdict = _judge(
        _equivalent(0.02),
        _row("weekday", "saturday vs monday", 0.0, 0.002, 400),
        _row("weekday", "sunday vs monday", 0.3, 0.01, 400),
    )
    assert verdict.verdict == "contradicted" and verdict.estimate == 0.3


def test_exact_rows_are_judged_by_their_point_value_outside_the_holm_family():
    table = _table(
        _row("insurance", "none vs private", -0.08, 0.0, method="exact"),
        _row("insurance", "public vs private", -0.01, 0.0, method="exact"),
        _row("weekday", "weekend vs weekday", 0.001, 0.005, 400),
    )
    hypotheses = [
        _negative(0.05),
        dataclasses.replace(_negative(0.05, "public vs private"), id="H3"),
        _equivalent(0.02),
    ]
    supported, contradicted, tested = judge_hypotheses(hypotheses, table).verdicts
    assert (supported.verdict, contradicted.verdict) == ("supported", "contradicted")
    assert math.isnan(supported.p_value) and math.isnan(supported.p_adjusted)
    assert supported.ci_low == supported.ci_high == -0.08
    assert supported.reason == (
        "The exact effect of insurance[none vs private] is -0.08, below -0.05 (enumerated units: no sampling error)."
    )
    assert "is -0.01, at or above -0.05" in contradicted.reason
    assert tested.p_adjusted == pytest.approx(tested.p_value)


def test_rows_other_than_t_and_exact_ate_rows_are_ignored_and_estimand_selects():
    table = _table(
        _row("insurance", "none vs private", -0.2, 0.02),
        _row("insurance", "none vs private", 0.3, 0.02, method="bootstrap"),
        _row("insurance", "none vs private", 0.3, 0.02, analysis="cate"),
        _row("insurance", "none vs private", 0.3, 0.02, estimand="direct"),
    )
    assert _judge(_negative(0.05), *table.to_dict("records")).verdict == "supported"
    direct = _negative(0.05, estimand="direct")
    verdict = judge_hypotheses([direct], table).verdicts[0]
    assert verdict.verdict == "contradicted" and "(direct effect)" in verdict.reason


def test_a_single_unit_is_inconclusive_and_untested():
    verdict = _judge(_negative(0.05), _row("insurance", "none vs private", -0.2, math.nan, 1))
    assert verdict.verdict == "inconclusive" and math.isnan(verdict.p_adjusted)
    assert "could not be tested" in verdict.reason


def test_planted_effect_from_estimate_paired_effects_through_csv():
    rng = np.random.default_rng(0)
    paired = pd.DataFrame({"difference": rng.normal(-0.3, 0.2, 300)})
    effects = (
        estimate_paired_effects(paired, treatment="insurance", contrast="none vs private", n_bootstrap=50)
        .corrected("holm")
        .to_frame()
    )
    round_trip = pd.read_csv(io.StringIO(effects.to_csv(index=False)))
    before = round_trip.copy()
    verdict = judge_hypotheses([_negative(0.05)], round_trip).verdicts[0]
    assert verdict.verdict == "supported"
    assert (verdict.ci_low, verdict.ci_high) == pytest.approx(tuple(effects.loc[0, ["ci_low", "ci_high"]]))
    pd.testing.assert_frame_equal(round_trip, before)


def test_a_p_value_that_underflows_to_zero_is_stated_as_a_bound():
    """An effect 150000 standard errors past its bound: the one-sided p is below the float floor (0.0)."""
    verdict = _judge(_negative(0.05), _row("insurance", "none vs private", -0.2, 1e-6))
    assert verdict.verdict == "supported" and verdict.p_adjusted == 0.0
    assert "one-sided Holm-adjusted p < 1e-16 < 0.05." in verdict.reason
    assert "p = 0" not in verdict.reason


def test_table_frame_summary_and_contradicted_ids():
    table = judge_hypotheses(
        [_negative(0.05), _equivalent(0.02)],
        _table(_row("insurance", "none vs private", 0.1, 0.02), _row("weekday", "a vs b", 0.0, 0.001)),
    )
    frame = table.to_frame()
    assert list(frame.columns) == list(VERDICT_COLUMNS)
    assert frame["verdict"].tolist() == ["contradicted", "supported"]
    assert table.contradicted == ("H1",)
    assert table.summary().splitlines()[0] == (
        "2 hypotheses at level 0.95 (holm-corrected): 1 supported, 1 contradicted, 0 inconclusive"
    )
    assert table.summary().splitlines()[1].startswith("H1 (insurance[none vs private]): contradicted.")
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.level = 0.9


def test_an_effect_missing_from_the_table_is_named_with_what_exists():
    table = _table(_row("insurance", "none vs private", -0.2, 0.02), _row("weekday", "a vs b", 0.0, 0.01))
    with pytest.raises(
        EstimationError,
        match=r"'H1': effect insurance\[public vs private\] \(total\).*"
        r"it has: insurance\[none vs private\] \(total\), "
        r"weekday\[a vs b\] \(total\)",
    ):
        judge_hypotheses([_negative(0.05, "public vs private")], table)


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("insurance[none vs private]", ("insurance", "none vs private")),
        ("  weekday[ * ] ", ("weekday", None)),
        ("age[old  vs  young]", ("age", "old vs young")),
    ],
)
def test_parse_effect(text, parsed):
    assert Hypothesis.parse_effect(text) == parsed


@pytest.mark.parametrize(
    "text, message",
    [
        ("insurance", r"'treatment\[a vs b\]' or 'treatment\[\*\]'; got 'insurance'"),
        ("insurance[none]", r"must read 'a vs b' .*got 'none'"),
        ("insurance[a vs b vs c]", r"must read 'a vs b'"),
    ],
)
def test_parse_effect_rejects_malformed_text(text, message):
    with pytest.raises(EstimationError, match=message):
        Hypothesis.parse_effect(text)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({}, r"exactly one of direction and equivalence"),
        ({"direction": "negative", "equivalence": 0.1}, r"exactly one of direction and equivalence"),
        ({"direction": "down"}, r"'positive' or 'negative'; got 'down'"),
        ({"direction": "negative", "min_effect": -0.1}, r"magnitude .* got -0.1"),
        ({"equivalence": 0.0}, r"margin must be finite and > 0; got 0.0"),
        ({"equivalence": 0.1, "min_effect": 0.1}, r"directional claims only.*drop min_effect"),
    ],
)
def test_invalid_hypotheses_raise(fields, message):
    with pytest.raises(EstimationError, match=message):
        Hypothesis(id="H", claim="c", treatment="t", contrast=None, **fields)


def test_bad_options_raise():
    table = _table(_row("weekday", "a vs b", 0.0, 0.01))
    with pytest.raises(EstimationError, match=r"strictly between 0 and 1; got 95"):
        judge_hypotheses([_equivalent()], table, level=95)
    with pytest.raises(EstimationError, match=r"unique; repeated: \['H2'\]"):
        judge_hypotheses([_equivalent(), _equivalent()], table)
    with pytest.raises(EstimationError, match=r"lacks columns \['std_error'\]"):
        judge_hypotheses([_equivalent()], table.drop(columns="std_error"))


def _simulated(truth, *, seed, replicates=1000, n=30):
    """One t row per replicate (treatment "r<i>") from n normal differences with mean `truth`.

    The spread (sd 0.2, se about 0.04) is small next to the claims' bounds, so the TOST's size at
    the margin is close to its level rather than far below it.
    """
    rng = np.random.default_rng(seed)
    draws = rng.normal(truth, 0.2, size=(replicates, n))
    return _table(
        *(_row(f"r{i}", "a vs b", float(d.mean()), float(d.std(ddof=1) / math.sqrt(n)), n) for i, d in enumerate(draws))
    )


@pytest.mark.parametrize("claim, truth", [("negative", -0.2), ("equivalence", 0.2)])
def test_simulated_tests_keep_their_level_at_the_boundary_and_cis_cover(claim, truth):
    # the true effect sits on the claim's boundary: the raw p-value falls below 0.05 about 5% of
    # the time (one-sided; TOST at most that), and the 95% CIs cover the truth about 95% of the time
    table = _simulated(truth, seed=2)
    fields = {"direction": "negative", "min_effect": 0.2} if claim == "negative" else {"equivalence": 0.2}
    hypotheses = [Hypothesis(id=t, claim="c", treatment=t, contrast="a vs b", **fields) for t in table["treatment"]]
    frame = judge_hypotheses(hypotheses, table).to_frame()
    rejected = (frame["p_value"] < 0.05).mean()
    covered = ((frame["ci_low"] <= truth) & (truth <= frame["ci_high"])).mean()
    assert abs(rejected - 0.05) < 0.025 and abs(covered - 0.95) < 0.025
    assert (frame["verdict"] == "supported").mean() < 0.01  # Holm across 1000 claims
