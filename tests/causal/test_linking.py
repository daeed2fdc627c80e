"""Linking evidence to effects: planted orders give known rank agreement and known flags."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from causal import EstimationError
from causal._linking import (
    AGREEMENT_COLUMNS,
    LINK_COLUMNS,
    kendall_tau_b,
    link_evidence,
    spearman,
)

N_UNITS = 40
FACTORS = ("insurance", "age", "weekday")
# Planted truth: insurance has the largest effect, age a smaller one, weekday none.
EFFECTS = pd.DataFrame(
    {
        "factor": FACTORS,
        "estimate": [-2.0, 1.0, 0.02],
        "ci_low": [-2.5, 0.6, -0.1],
        "ci_high": [-1.5, 1.4, 0.14],
    }
)


def per_unit_effects(rng):
    scale = {"insurance": -2.0, "age": 1.0, "weekday": 0.02}
    return pd.DataFrame(
        [
            {"unit": unit, "factor": factor, "effect": scale[factor] * (1 + 0.5 * rng.random())}
            for factor in FACTORS
            for unit in range(N_UNITS)
        ]
    )


def evidence_frame(unit_effects, rng):
    """Two methods: "faithful" carries each unit's effect itself (signed, like saliency);
    "reversed" ranks the factors backwards and puts most of its mass on the null factor."""
    rows = []
    for row in unit_effects.itertuples():
        rows.append(
            {
                "unit": row.unit,
                "factor": row.factor,
                "method": "faithful",
                "baseline": "counterfactual",
                "value": row.effect,
            }
        )
        reversed_mass = {"insurance": 0.05, "age": 0.3, "weekday": 0.65}[row.factor]
        rows.append(
            {
                "unit": row.unit,
                "factor": row.factor,
                "method": "reversed",
                "baseline": None,
                "value": reversed_mass + 0.01 * rng.random(),
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def planted():
    rng = np.random.default_rng(0)
    unit_effects = per_unit_effects(rng)
    return unit_effects, evidence_frame(unit_effects, rng)


def test_faithful_method_has_tau_one_and_no_flags_reversed_one_is_flagged(planted):
    unit_effects, evidence = planted
    links = link_evidence(EFFECTS, evidence, unit_effects=unit_effects, n_bootstrap=300)
    table = links.to_frame()
    assert list(table.columns) == list(LINK_COLUMNS)
    faithful = table[table["method"] == "faithful"]
    assert faithful["factor"].tolist() == ["insurance", "age", "weekday"]  # by |effect|
    assert (faithful["baseline"] == "counterfactual").all()
    assert faithful["flag"].isna().all()
    reversed_ = table[table["method"] == "reversed"].set_index("factor")
    assert reversed_["baseline"].isna().all()
    assert reversed_["flag"].fillna("none").to_dict() == {
        "insurance": "effect_without_evidence",  # 66% of |effect|, 5% of the evidence
        "age": "none",  # a moderate evidence share (30%) is neither large nor small
        "weekday": "evidence_without_effect",  # 64% of the evidence, its CI covers zero
    }
    assert [(link.method, link.factor) for link in links.flagged] == [
        ("reversed", "insurance"),
        ("reversed", "weekday"),
    ]
    scores = links.agreement_frame()
    assert list(scores.columns) == list(AGREEMENT_COLUMNS)
    across = scores[scores["scope"] == "factors"].set_index("method")
    assert across.loc["faithful", ["estimate", "ci_low", "ci_high"]].tolist() == [1.0, 1.0, 1.0]
    assert across.loc["reversed", "estimate"] == -1.0
    within = scores[(scores["scope"] == "units") & (scores["method"] == "faithful")]
    assert within["estimate"].tolist() == [1.0, 1.0, 1.0]


def test_summary_states_each_disagreement_plainly(planted):
    unit_effects, evidence = planted
    text = link_evidence(EFFECTS, evidence, unit_effects=unit_effects, n_bootstrap=100).summary()
    assert "reversed ranks the factors opposite to the interventions: Kendall's tau -1" in text
    assert "faithful (counterfactual baseline) ranks the factors like the interventions" in text
    assert "reversed puts 64% of its evidence on 'weekday', but its effect 0.02" in text
    assert "'insurance' has an effect -2 [-2.5, -1.5] that excludes zero" in text


def test_bootstrap_is_seeded(planted):
    unit_effects, evidence = planted
    noisy = evidence.assign(value=evidence["value"] * np.linspace(0.5, 1.5, len(evidence)))
    runs = [link_evidence(EFFECTS, noisy, unit_effects=unit_effects, n_bootstrap=200, seed=seed) for seed in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0].agreement_frame().equals(runs[1].agreement_frame())
    assert not runs[0].agreement_frame().equals(runs[2].agreement_frame())


def test_effects_table_rows_are_filtered_and_largest_contrast_represents_a_factor(planted):
    unit_effects, evidence = planted
    rows = []
    for factor, estimate, low, high in EFFECTS.itertuples(index=False):
        for method in ("t", "bootstrap"):
            rows.append(
                dict(
                    analysis="ate",
                    estimand="total",
                    treatment=factor,
                    contrast="a vs b",
                    moderator=None,
                    stratum=None,
                    estimate=estimate,
                    ci_low=low,
                    ci_high=high,
                    method=method,
                )
            )
    rows.append(
        dict(
            analysis="ate",
            estimand="total",
            treatment="insurance",
            contrast="c vs b",
            moderator=None,
            stratum=None,
            estimate=0.5,
            ci_low=0.1,
            ci_high=0.9,
            method="t",
        )
    )
    rows.append(
        dict(
            analysis="cate",
            estimand="total",
            treatment="age",
            contrast="a vs b",
            moderator="sex",
            stratum="f",
            estimate=9.0,
            ci_low=8,
            ci_high=10,
            method="t",
        )
    )
    links = link_evidence(pd.DataFrame(rows), evidence, n_bootstrap=50)
    table = links.to_frame().drop_duplicates("factor").set_index("factor")
    assert table.loc["insurance", ["contrast", "effect"]].tolist() == ["a vs b", -2.0]
    assert table.loc["age", "effect"] == 1.0
    assert [score.scope for score in links.agreement] == ["factors", "factors"]


def test_per_layer_rows_are_left_out_and_duplicates_rejected(planted):
    _, evidence = planted
    per_layer = evidence.assign(layer=pd.array([None] * len(evidence), dtype="Int64"))
    extra = per_layer.iloc[:5].assign(layer=pd.array([0] * 5, dtype="Int64"), value=99.0)
    with_layers = link_evidence(EFFECTS, pd.concat([per_layer, extra]), n_bootstrap=50)
    plain = link_evidence(EFFECTS, evidence, n_bootstrap=50)
    assert with_layers.to_frame().equals(plain.to_frame())
    with pytest.raises(EstimationError, match=r"several rows for \{'method': 'faithful'"):
        link_evidence(EFFECTS, pd.concat([evidence, evidence.iloc[:1]]), n_bootstrap=50)


def test_bad_inputs_name_what_is_wrong(planted):
    _, evidence = planted
    with pytest.raises(EstimationError, match=r"evidence factors \['weekday'\] have no effect row"):
        link_evidence(EFFECTS.iloc[:2], evidence)
    with pytest.raises(EstimationError, match=r"evidence lacks columns \['value'\]"):
        link_evidence(EFFECTS, evidence.drop(columns="value"))
    with pytest.raises(EstimationError, match=r"has no rows for factors \['age'\]"):
        partial = evidence[~((evidence["method"] == "reversed") & (evidence["factor"] == "age"))]
        link_evidence(EFFECTS, partial)
    with pytest.raises(EstimationError, match="large_share <= 1, got small_share 0.6"):
        link_evidence(EFFECTS, evidence, small_share=0.6)


def test_rank_statistics_match_scipy():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(5, 9)).astype(float)  # ties on purpose
    y = rng.normal(size=(5, 9))
    for row_x, row_y, tau, rho in zip(x, y, kendall_tau_b(x, y), spearman(x, y)):
        assert tau == pytest.approx(stats.kendalltau(row_x, row_y).statistic)
        assert rho == pytest.approx(stats.spearmanr(row_x, row_y).statistic)
    assert np.isnan(kendall_tau_b(np.ones(4), np.arange(4.0)))
    assert np.isnan(spearman(np.ones(4), np.arange(4.0)))
