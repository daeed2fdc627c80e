"""Propensity matching: matches, ties and the Abadie-Imbens variance computed by hand on seven documents."""

import math

import numpy as np
import pytest

from causal._adjusted import TARGETS, Sample
from causal._exact_matching import exact_matching
from causal._matching import propensity_matching


def _sample(propensity, treated, outcome, strata=None):
    n = len(outcome)
    return Sample(
        outcome=np.asarray(outcome, dtype=float),
        treated=np.asarray(treated, dtype=bool),
        features=np.zeros((n, 0)),
        strata=np.zeros(n, dtype=int) if strata is None else np.asarray(strata),
        propensity=np.asarray(propensity, dtype=float),
        propensity_model="logistic",
    )


def test_estimates_and_standard_errors_equal_the_hand_computation():
    """Treated at 0.2, 0.5, 0.8; reference at 0.1, 0.45, 0.55, 0.9 (0.5 ties between 0.45 and 0.55).

    Imputed reference outcomes of the treated: 0, (1 + 4) / 2, 2; imputed treated
    outcomes of the reference documents: 1, 2, 2, 3. Uses K: 1, 0.5, 0.5, 1 for the
    reference documents, 1, 2, 1 for the treated; K' equals K except 0.25 for the tied
    pair. Conditional variances from the nearest same-arm neighbours (0.5 ties between
    0.2 and 0.8): treated 0.5, 0, 0.5; reference 0.5, 4.5, 4.5, 2.
    """
    sample = _sample([0.2, 0.5, 0.8, 0.1, 0.45, 0.55, 0.9], [1, 1, 1, 0, 0, 0, 0], [1, 2, 3, 0, 1, 4, 2])
    estimates = propensity_matching(sample, TARGETS)
    # att: effects 1, -0.5, 1; no reuse term, since K^2 = K' for every reference document
    assert estimates["att"].estimate == pytest.approx(0.5)
    assert estimates["att"].std_error == pytest.approx(math.sqrt(1.5 / 9))
    # atc: effects 1, 1, -2, 1; K^2 - K' is 0 for treated 0.2 and 0.8 and 2 for 0.5, whose variance is 0
    assert estimates["atc"].estimate == pytest.approx(0.25)
    assert estimates["atc"].std_error == pytest.approx(math.sqrt(6.75 / 16))
    # ate: all seven effects; reuse (K^2 + 2K - K') sigma^2 summed: 1 + 0 + 1 + 1 + 4.5 + 4.5 + 4 = 16
    effects = np.array([1, -0.5, 1, 1, 1, -2, 1])
    assert estimates["ate"].estimate == pytest.approx(2.5 / 7)
    spread = np.sum((effects - 2.5 / 7) ** 2)
    assert estimates["ate"].std_error == pytest.approx(math.sqrt((spread + 16) / 49))


def test_with_one_propensity_per_stratum_matching_is_exact_matching():
    """Ties at the document's own propensity: every document of the other arm in its stratum is a match."""
    rng = np.random.default_rng(0)
    strata = rng.integers(0, 4, size=300)
    treated = rng.random(300) < np.array([0.2, 0.4, 0.6, 0.8])[strata]
    outcome = strata + treated * (1.0 + strata) + rng.normal(size=300)
    shares = np.array([treated[strata == s].mean() for s in range(4)])
    sample = _sample(shares[strata], treated, outcome, strata)
    matched, exact = propensity_matching(sample, TARGETS), exact_matching(sample, TARGETS)
    for target in TARGETS:
        assert matched[target].estimate == pytest.approx(exact[target].estimate)
        assert matched[target].std_error == pytest.approx(exact[target].std_error, rel=0.1)
