"""Linear probes decode a factor where the text shows it and stay at chance where it does not."""

import numpy as np
import pytest

from interventions import InterventionError, Template
from interventions._probes import PROBE_COLUMNS, probe_factors

PRESENT = Template.parse("Patient: {age} year old with {insurance} insurance. Answer:")
REMOVED = Template.parse("Patient: {age} year old with insurance. Answer:")
N_UNITS = 80


@pytest.fixture(scope="module")
def draws():
    rng = np.random.default_rng(0)
    ages = rng.choice(["24", "31", "67", "74"], N_UNITS)
    insurance = np.repeat(["private", "public"], N_UNITS // 2)
    return ages, rng.permutation(insurance)


@pytest.mark.parametrize("name", ["gpt2", "classifier"])
def test_factor_is_decoded_where_shown_and_at_chance_where_removed(request, name, draws):
    adapter = request.getfixturevalue(name)
    ages, insurance = draws
    shown = probe_factors(
        adapter,
        [PRESENT.render({"age": a, "insurance": i}) for a, i in zip(ages, insurance)],
        {"insurance": list(insurance)},
    ).table
    assert list(shown.columns) == list(PROBE_COLUMNS)
    at_slot = shown[shown["position"] == "factor"]
    assert (at_slot["accuracy"] == 1.0).all() and at_slot["above_baseline"].all()
    final = shown[(shown["position"] == "decision") & (shown["layer"] == shown["layer"].max())]
    assert final["above_baseline"].item() and final["accuracy"].item() > 0.9
    placebo = probe_factors(
        adapter,
        [REMOVED.render({"age": a}) for a in ages],
        {"insurance": list(insurance)},
        positions=["decision"],
    )
    removed = placebo.table
    assert len(removed) == adapter.model.config.num_hidden_layers + 1
    assert ((removed["ci_low"] <= 0.5) & (removed["ci_high"] >= 0.5)).all()
    assert (removed["majority_baseline"] == 0.5).all() and not removed["above_baseline"].any()
    assert placebo.summary().endswith("vs majority baseline 0.5 (not above it)")


def test_interval_is_clopper_pearson_of_the_out_of_fold_accuracy(gpt2, draws):
    ages, insurance = draws
    texts = [PRESENT.render({"age": a, "insurance": i}) for a, i in zip(ages, insurance)]
    table = probe_factors(gpt2, texts, {"age": list(ages)}, positions=["factor"], seed=3).table
    row = table.iloc[0]
    from scipy.stats import binomtest

    interval = binomtest(round(row["accuracy"] * N_UNITS), N_UNITS).proportion_ci(method="exact")
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((interval.low, interval.high))
    assert row["n_classes"] == 4 and row["majority_baseline"] == pytest.approx(
        np.unique(ages, return_counts=True)[1].max() / N_UNITS
    )
    again = probe_factors(gpt2, texts, {"age": list(ages)}, positions=["factor"], seed=3).table
    assert again.equals(table)


def test_factor_too_rare_for_the_folds_is_rejected(gpt2):
    values = ["private"] * 6 + ["public"] * 3
    texts = [PRESENT.render({"age": "24", "insurance": value}) for value in values]
    with pytest.raises(InterventionError, match=r"has value counts .*'public': 3.* 5-fold"):
        probe_factors(gpt2, texts, {"insurance": values})
    with pytest.raises(InterventionError, match=r"positions must be .* got \['slot'\]"):
        probe_factors(gpt2, texts, {"insurance": values}, positions=["slot"])
