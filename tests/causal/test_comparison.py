"""compare_effects and compare_verdicts on constructed tables, against hand computations."""

import dataclasses
import io
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from causal import (
    COMPARISON_COLUMNS,
    EFFECT_COLUMNS,
    UNMATCHED_COLUMNS,
    VERDICT_CHANGE_COLUMNS,
    EstimationError,
    compare_effects,
    compare_verdicts,
    estimate_paired_effects,
)

Z = stats.norm.ppf(0.975)


def _row(
    contrast, estimate, std_error, *, method="t", analysis="ate", moderator=None, stratum=None, treatment="insurance"
):
    return {
        "analysis": analysis,
        "estimand": "total",
        "treatment": treatment,
        "contrast": contrast,
        "moderator": moderator,
        "stratum": stratum,
        "estimate": estimate,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "std_error": std_error,
        "p_value": math.nan,
        "p_adjusted": math.nan,
        "n_units": 100,
        "method": method,
    }


def _table(*rows):
    return pd.DataFrame(list(rows), columns=list(EFFECT_COLUMNS))


def test_independent_difference_uses_both_standard_errors_and_holm():
    a = _table(_row("none vs private", -0.30, 0.03), _row("public vs private", -0.10, 0.04))
    b = _table(_row("none vs private", -0.02, 0.04), _row("public vs private", -0.12, 0.03))
    table = compare_effects(a, b)
    frame = table.to_frame()
    assert list(frame.columns) == list(COMPARISON_COLUMNS)
    none, public = table.differences
    assert (none.estimate_a, none.estimate_b, none.difference) == pytest.approx((-0.30, -0.02, 0.28))
    assert none.std_error == pytest.approx(0.05) and none.pairing == "independent"
    assert (none.ci_low, none.ci_high) == pytest.approx((0.28 - Z * 0.05, 0.28 + Z * 0.05))
    p_none, p_public = 2 * stats.norm.sf(0.28 / 0.05), 2 * stats.norm.sf(0.02 / 0.05)
    assert (none.p_value, public.p_value) == pytest.approx((p_none, p_public))
    # Holm by hand: the smaller p doubled, the larger kept (it exceeds the doubled one)
    assert (none.p_adjusted, public.p_adjusted) == pytest.approx((2 * p_none, p_public))
    assert (none.significant, public.significant) == (True, False)
    assert table.significant == (none,)
    assert none.moderator is None and none.stratum is None


def test_paired_units_give_the_t_interval_of_per_unit_differences():
    rng = np.random.default_rng(0)
    unit = rng.normal(0, 1.0, 60)  # shared by both runs: pairing cancels it
    difference_a = -0.3 + unit + rng.normal(0, 0.05, 60)
    difference_b = -0.25 + unit + rng.normal(0, 0.05, 60)
    paired = pd.DataFrame(
        {
            "treatment": "insurance",
            "contrast": "none vs private",
            "difference_a": difference_a,
            "difference_b": difference_b,
        }
    )

    def effects(differences):
        return estimate_paired_effects(
            pd.DataFrame({"difference": differences}), treatment="insurance", contrast="none vs private", n_bootstrap=20
        ).to_frame()

    a, b = effects(difference_a), effects(difference_b)
    with_units, without = compare_effects(a, b, paired=paired), compare_effects(a, b)
    per_unit = difference_b - difference_a
    half = stats.t.ppf(0.975, 59) * per_unit.std(ddof=1) / math.sqrt(60)
    row = with_units.differences[0]
    assert row.pairing == "paired"
    assert (row.difference, row.ci_low, row.ci_high) == pytest.approx(
        (per_unit.mean(), per_unit.mean() - half, per_unit.mean() + half)
    )
    assert row.p_value == pytest.approx(stats.ttest_1samp(per_unit, 0).pvalue)
    assert row.significant and not without.differences[0].significant
    assert without.differences[0].pairing == "independent"


def test_paired_differences_of_other_units_are_refused():
    a = _table(_row("none vs private", -0.3, 0.05))
    paired = pd.DataFrame(
        {
            "treatment": "insurance",
            "contrast": "none vs private",
            "difference_a": [0.0, 0.2],
            "difference_b": [0.1, 0.1],
        }
    )
    with pytest.raises(EstimationError, match=r"average 0.1 in run a but its estimate is -0.3"):
        compare_effects(a, a, paired=paired)
    with pytest.raises(EstimationError, match=r"paired lacks columns \['difference_b'\]"):
        compare_effects(a, a, paired=paired.drop(columns="difference_b"))


def test_exact_rows_have_no_sampling_error():
    a = _table(_row("none vs private", -0.3, 0.0, method="exact"), _row("public vs private", 0.1, 0.0, method="exact"))
    b = _table(_row("none vs private", -0.1, 0.0, method="exact"), _row("public vs private", 0.1, 0.0, method="exact"))
    changed, same = compare_effects(a, b).differences
    assert changed.ci_low == changed.ci_high == pytest.approx(0.2) and changed.pairing == "exact"
    assert changed.significant and not same.significant
    assert math.isnan(changed.p_value) and math.isnan(changed.p_adjusted)


def test_rows_match_by_every_key_and_the_rest_is_listed_unmatched():
    a = _table(
        _row("none vs private", -0.3, 0.05),
        _row("none vs private", -0.5, 0.05, analysis="cate", moderator="age", stratum="old"),
        _row("none vs private", -0.1, 0.05, analysis="cate", moderator="age", stratum="young"),
        _row("none vs private", -0.3, 0.04, method="bootstrap"),
        _row("male vs female", 0.0, 0.05, treatment="sex"),
    )
    b = _table(
        _row("none vs private", -0.2, 0.05),
        _row("none vs private", -0.4, 0.05, analysis="cate", moderator="age", stratum="old"),
        _row("weekend vs weekday", 0.0, 0.05, treatment="weekday"),
    )
    # effects.csv read back from disk has nan where the frame had None
    b = pd.read_csv(io.StringIO(b.to_csv(index=False)))
    table = compare_effects(a, b)
    assert [(d.analysis, d.stratum) for d in table.differences] == [("ate", None), ("cate", "old")]
    assert table.differences[1].difference == pytest.approx(0.1)
    unmatched = table.unmatched_frame()
    assert list(unmatched.columns) == list(UNMATCHED_COLUMNS)
    assert len(unmatched) == 3
    assert sorted((u.treatment, u.stratum, u.side) for u in table.unmatched) == [
        ("insurance", "young", "a"),
        ("sex", None, "a"),
        ("weekday", None, "b"),
    ]
    assert "only in run b: ate total weekday[weekend vs weekday] (t)" in table.summary()


def test_same_planted_effect_in_two_samples_differs_only_when_the_effect_moves():
    def run(shift, seed):
        rng = np.random.default_rng(seed)
        paired = pd.DataFrame({"difference": rng.normal(-0.5 + shift, 0.3, 400)})
        return estimate_paired_effects(
            paired, treatment="insurance", contrast="none vs private", n_bootstrap=20
        ).to_frame()

    assert not compare_effects(run(0.0, 1), run(0.0, 2)).differences[0].significant
    moved = compare_effects(run(0.0, 1), run(0.5, 2)).differences[0]
    assert moved.significant and moved.ci_low < 0.5 < moved.ci_high


def test_changed_verdicts_are_listed():
    a = pd.DataFrame(
        {
            "id": ["H1", "H2", "H3"],
            "claim": ["c1", "c2", "c3"],
            "effect": ["insurance[none vs private]", "weekday[*]", "sex[*]"],
            "verdict": ["supported", "supported", "inconclusive"],
        }
    )
    b = pd.DataFrame(
        {
            "id": ["H1", "H2", "H4"],
            "claim": ["c1", "c2", "c4"],
            "effect": ["insurance[none vs private]", "weekday[*]", "age[*]"],
            "verdict": ["contradicted", "supported", "supported"],
        }
    )
    changed = compare_verdicts(a, b)
    assert list(changed.columns) == list(VERDICT_CHANGE_COLUMNS)
    assert changed.to_dict("records") == [
        {
            "id": "H1",
            "claim": "c1",
            "effect": "insurance[none vs private]",
            "verdict_a": "supported",
            "verdict_b": "contradicted",
        },
        {"id": "H3", "claim": "c3", "effect": "sex[*]", "verdict_a": "inconclusive", "verdict_b": None},
        {"id": "H4", "claim": "c4", "effect": "age[*]", "verdict_a": None, "verdict_b": "supported"},
    ]
    assert compare_verdicts(a, a).empty
    with pytest.raises(EstimationError, match=r"verdict table b lacks columns \['verdict'\]"):
        compare_verdicts(a, b.drop(columns="verdict"))


def test_bad_inputs_raise_and_results_are_frozen():
    a = _table(_row("none vs private", -0.3, 0.05))
    with pytest.raises(EstimationError, match=r"effects table b lacks columns \['std_error'\]"):
        compare_effects(a, a.drop(columns="std_error"))
    with pytest.raises(EstimationError, match=r"strictly between 0 and 1; got 0"):
        compare_effects(a, a, level=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        compare_effects(a, a).level = 0.5


def test_independent_intervals_cover_the_true_difference_in_simulation():
    rng = np.random.default_rng(3)
    replicates, n, truth = 1000, 60, 0.1

    def run(mean):
        draws = rng.normal(mean, 0.5, size=(replicates, n))
        return _table(
            *(
                _row("a vs b", float(d.mean()), float(d.std(ddof=1) / math.sqrt(n)), treatment=f"r{i}")
                for i, d in enumerate(draws)
            )
        )

    frame = compare_effects(run(-0.3), run(-0.3 + truth)).to_frame()
    covered = ((frame["ci_low"] <= truth) & (truth <= frame["ci_high"])).mean()
    assert len(frame) == replicates and abs(covered - 0.95) < 0.025
