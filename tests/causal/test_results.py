"""EffectEstimate and EffectTable: frames, text, immutability, correction, concatenation."""

import dataclasses
import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from causal import EFFECT_COLUMNS, EffectEstimate, EffectTable, EstimationError

_P_VALUES = (0.01, math.nan, 0.04, 0.03, math.nan, 0.2, 0.005)


def _estimate(p_value, *, method="t", analysis="ate", moderator=None, stratum=None):
    return EffectEstimate(
        analysis=analysis,
        estimand="total",
        treatment="insurance",
        contrast="none vs private",
        moderator=moderator,
        stratum=stratum,
        estimate=0.5,
        ci_low=0.25,
        ci_high=0.75,
        std_error=0.125,
        p_value=p_value,
        n_units=100,
        method=method,
        level=0.95,
    )


def _table():
    return EffectTable(tuple(_estimate(p, method="bootstrap" if math.isnan(p) else "t") for p in _P_VALUES))


@pytest.mark.parametrize(("method", "statsmodels_method"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_corrected_equals_multipletests_on_finite_p_values(method, statsmodels_method):
    table = _table()
    corrected = table.corrected(method)
    finite = [p for p in _P_VALUES if not math.isnan(p)]
    expected = iter(multipletests(finite, method=statsmodels_method)[1])
    for row, p in zip(corrected.estimates, _P_VALUES):
        if math.isnan(p):
            assert math.isnan(row.p_adjusted)
        else:
            assert row.p_adjusted == pytest.approx(next(expected), rel=1e-12)
    assert corrected.correction == method
    assert [dataclasses.replace(r, p_adjusted=math.nan) for r in corrected.estimates] == list(table.estimates)


def test_corrected_returns_a_new_table_and_leaves_the_original():
    table = _table()
    corrected = table.corrected("holm")
    assert corrected is not table
    assert table.correction is None
    assert all(math.isnan(row.p_adjusted) for row in table.estimates)


def test_results_are_frozen():
    table = _table()
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field"):
        table.correction = "holm"
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field"):
        table.estimates[0].estimate = 1.0


def test_corrected_rejects_unknown_method():
    with pytest.raises(
        EstimationError,
        match=r"correction method must be one of \['bh', 'holm'\]; "
        r"got 'bonferroni'",
    ):
        _table().corrected("bonferroni")


def test_to_frame_has_exactly_the_effect_columns_in_order():
    frame = _table().corrected("bh").to_frame()
    assert tuple(frame.columns) == EFFECT_COLUMNS
    assert len(frame) == len(_P_VALUES)
    np.testing.assert_array_equal(frame["p_value"].to_numpy(), np.array(_P_VALUES))
    one = _estimate(0.01).to_frame()
    assert tuple(one.columns) == EFFECT_COLUMNS and len(one) == 1
    assert "level" not in one.columns


def test_empty_table_has_the_columns_and_a_summary():
    empty = EffectTable(())
    assert tuple(empty.to_frame().columns) == EFFECT_COLUMNS
    assert empty.summary() == "0 estimates; p_adjusted: none"


def test_concat_keeps_order_and_clears_old_corrections():
    first = EffectTable((_estimate(0.01), _estimate(0.02))).corrected("holm")
    second = EffectTable((_estimate(0.03, analysis="cate", moderator="age", stratum="old"),))
    joined = EffectTable.concat([first, second])
    assert [r.p_value for r in joined.estimates] == [0.01, 0.02, 0.03]
    assert joined.correction is None
    assert all(math.isnan(r.p_adjusted) for r in joined.estimates)


def test_summaries_describe_each_row():
    table = EffectTable(
        (
            _estimate(0.01),
            _estimate(math.nan, method="bootstrap", analysis="cate", moderator="age", stratum="old"),
            dataclasses.replace(
                _estimate(0.002, analysis="heterogeneity", moderator="age"), method="wald_hc3", estimate=9.5
            ),
        )
    ).corrected("holm")
    ate, cate, heterogeneity = (row.summary() for row in table.estimates)
    assert ate.startswith("ATE total effect of insurance (none vs private): 0.5 [0.25, 0.75]")
    assert "p = 0.01, p_adjusted = 0.01" in ate  # Holm: max(2 * 0.002, 1 * 0.01)
    assert "| age = old" in cate and "p =" not in cate
    assert heterogeneity.startswith("heterogeneity of the total effect of insurance")
    assert "Wald chi2 = 9.5, p = 0.002, p_adjusted = 0.004" in heterogeneity
    text = table.summary()
    assert text.splitlines()[0] == "3 estimates; p_adjusted: holm"
    assert len(text.splitlines()) == 1 + 1 + 3 and str(table) == text
    assert "<table" in table._repr_html_() and "wald_hc3" in table._repr_html_()


def test_a_p_value_that_underflows_reads_as_a_bound_not_as_zero():
    table = EffectTable((_estimate(0.0), _estimate(0.5))).corrected("holm")
    line = table.estimates[0].summary()
    assert "p < 1e-16, p_adjusted < 1e-16" in line and "p = 0" not in line
    assert table.summary().splitlines()[2].split()[-5:-3] == ["<1e-16", "<1e-16"]
