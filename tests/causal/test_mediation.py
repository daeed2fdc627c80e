"""Mediation estimates from per-unit tables whose indirect effects are planted."""

from __future__ import annotations

import dataclasses
from typing import get_args

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from causal import MEDIATION_COLUMNS, EstimationError, estimate_mediation
from causal._paired import BootstrapMethod, bootstrap_interval, bootstrap_intervals

SITES = [("resid_pre.0", "resid_pre", 0, None), ("head.1.2", "head", 1, 2), ("mlp_out.1", "mlp_out", 1, None)]
SHARE = {"resid_pre.0": 1.0, "head.1.2": 0.6, "mlp_out.1": 0.0}


def per_unit_table(n: int, seed: int, *, noise: float = 0.2) -> pd.DataFrame:
    """Units whose total effect is 1 + noise; each site carries a planted share of it, plus its own noise."""
    rng = np.random.default_rng(seed)
    totals = 1.0 + noise * rng.standard_normal(n)
    rows = []
    for site, component, layer, head in SITES:
        indirect = SHARE[site] * totals + noise * rng.standard_normal(n)
        for position in ("last", "factor"):
            rows += [
                {
                    "unit": unit,
                    "site": site,
                    "component": component,
                    "layer": layer,
                    "head": head,
                    "position": position,
                    "total": totals[unit],
                    "indirect": indirect[unit],
                    "weight": 1.0 / n,
                }
                for unit in range(n)
            ]
    return pd.DataFrame(rows)


def estimate(table: pd.DataFrame, **options) -> pd.DataFrame:
    options.setdefault("n_bootstrap", 300)
    return estimate_mediation(
        table, treatment="insurance", contrast="none vs private", direction="noise", **options
    ).to_frame()


def test_indirect_and_direct_means_equal_the_per_unit_means() -> None:
    table = per_unit_table(50, seed=1)
    frame = estimate(table)
    assert tuple(frame.columns) == MEDIATION_COLUMNS
    t_rows = frame[frame["method"] == "t"]
    total = t_rows[t_rows["effect"] == "total"]
    assert len(total) == 1 and total["site"].isna().all()
    assert total["estimate"].iloc[0] == pytest.approx(table.groupby("unit")["total"].first().mean())
    for (site, position), group in table.groupby(["site", "position"]):
        rows = t_rows[(t_rows["site"] == site) & (t_rows["position"] == position)].set_index("effect")
        assert rows.loc["indirect", "estimate"] == pytest.approx(group["indirect"].mean())
        assert rows.loc["direct", "estimate"] == pytest.approx((group["total"] - group["indirect"]).mean())
    head = t_rows[(t_rows["site"] == "head.1.2") & (t_rows["effect"] == "indirect")].iloc[0]
    assert (head["component"], head["layer"], head["head"]) == ("head", 1, 2)


def test_planted_mediator_and_null_site_are_told_apart() -> None:
    frame = estimate(per_unit_table(200, seed=2))
    indirect = frame[(frame["effect"] == "indirect") & (frame["method"] == "t") & (frame["position"] == "last")]
    by_site = indirect.set_index("site")
    assert by_site.loc["resid_pre.0", "ci_low"] > 0.9
    assert by_site.loc["head.1.2", "ci_low"] > 0.5 > by_site.loc["mlp_out.1", "ci_high"]
    assert by_site.loc["mlp_out.1", "ci_low"] < 0 < by_site.loc["mlp_out.1", "ci_high"]


def test_bh_within_each_family_matches_statsmodels() -> None:
    frame = estimate(per_unit_table(30, seed=3, noise=1.0))
    for effect in ("indirect", "direct"):
        family = frame[(frame["effect"] == effect) & frame["p_value"].notna()]
        expected = multipletests(family["p_value"], method="fdr_bh")[1]
        np.testing.assert_allclose(family["p_adjusted"], expected)
    assert frame.loc[frame["method"] == "bootstrap", "p_adjusted"].isna().all()


@pytest.mark.parametrize("method", get_args(BootstrapMethod))
def test_shared_draw_bootstrap_equals_one_row_at_a_time(method) -> None:
    rows = np.random.default_rng(4).standard_normal((3, 40))
    shared = bootstrap_intervals(
        rows, level=0.9, n_bootstrap=500, rng=np.random.default_rng(9), bootstrap_method=method
    )
    for row, interval in zip(rows, shared):
        assert interval == bootstrap_interval(
            row, level=0.9, n_bootstrap=500, rng=np.random.default_rng(9), bootstrap_method=method
        )


def test_bootstrap_method_reaches_the_bootstrap_rows_only() -> None:
    table = per_unit_table(30, seed=8)
    frames = {method: estimate(table, bootstrap_method=method) for method in ("percentile", "studentized")}
    t_rows = [frame[frame["method"] == "t"].reset_index(drop=True) for frame in frames.values()]
    pd.testing.assert_frame_equal(*t_rows)
    percentile, studentized = (frame[frame["method"] == "bootstrap"] for frame in frames.values())
    assert not np.allclose(percentile["ci_low"], studentized["ci_low"])
    site = per_unit_table(30, seed=8).query("site == 'head.1.2' and position == 'last'")["indirect"].to_numpy()
    expected = bootstrap_interval(
        site, level=0.95, n_bootstrap=300, rng=np.random.default_rng(0), bootstrap_method="studentized"
    )
    row = studentized[(studentized["site"] == "head.1.2") & (studentized["position"] == "last")]
    row = row[row["effect"] == "indirect"].iloc[0]
    assert (row["ci_low"], row["ci_high"]) == (expected.ci_low, expected.ci_high)


def test_exact_mode_gives_weighted_means_without_sampling_error() -> None:
    table = per_unit_table(20, seed=5)
    table["weight"] = np.where(table["unit"] < 10, 0.08, 0.02)
    frame = estimate(table, exact=True)
    assert set(frame["method"]) == {"exact"}
    row = frame[(frame["site"] == "head.1.2") & (frame["position"] == "last") & (frame["effect"] == "indirect")].iloc[0]
    group = table[(table["site"] == "head.1.2") & (table["position"] == "last")]
    assert row["estimate"] == pytest.approx(np.average(group["indirect"], weights=group["weight"]))
    assert row["ci_low"] == row["ci_high"] == row["estimate"]


def test_t_intervals_cover_the_planted_indirect_effect_at_nominal_rate() -> None:
    hits = 0
    for seed in range(300):
        frame = estimate(per_unit_table(40, seed=100 + seed), n_bootstrap=2)
        row = frame[
            (frame["site"] == "head.1.2")
            & (frame["position"] == "last")
            & (frame["effect"] == "indirect")
            & (frame["method"] == "t")
        ].iloc[0]
        hits += row["ci_low"] <= 0.6 <= row["ci_high"]
    assert 0.92 <= hits / 300 <= 0.98


def test_result_is_frozen_and_input_untouched() -> None:
    table = per_unit_table(10, seed=6)
    before = table.copy()
    result = estimate_mediation(table, treatment="t", contrast="a vs b", direction="noise", n_bootstrap=100)
    pd.testing.assert_frame_equal(table, before)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.estimates[0].estimate = 0.0  # type: ignore[misc]


def test_bad_tables_are_rejected_with_the_problem_named() -> None:
    table = per_unit_table(10, seed=7)
    with pytest.raises(EstimationError, match=r"must have column\(s\) \['indirect'\]"):
        estimate(table.drop(columns="indirect"))
    with pytest.raises(EstimationError, match="every site must cover every unit; head.1.2@last"):
        estimate(table.drop(index=table[(table["site"] == "head.1.2") & (table["position"] == "last")].index[:1]))
    inconsistent = table.copy()
    inconsistent.loc[inconsistent.index[0], "total"] += 1
    with pytest.raises(EstimationError, match="each unit must have one total effect; unit 0"):
        estimate(inconsistent)
    with pytest.raises(EstimationError, match="source must be 'patch' or 'attribution'"):
        estimate(table, source="gradients")
    with pytest.raises(EstimationError, match=r"bootstrap_method must be one of \[.*'bca'.*\]; got 'bca_t'"):
        estimate(table, bootstrap_method="bca_t")
