"""Observational estimators in simulation: intervals cover the true average effects, means are unbiased.

Confounded corpora whose truth is known by construction: two annotated confounders
(age with 3 values, sex with 2) drive both the treatment (insurance none vs private,
logistic in the dummies) and the outcome, and the effect varies across strata
(additively in the dummies, so the interacted regression and the logistic propensity
are both correctly specified; exact matching needs neither). The true effects are
population averages over the confounders' distribution: on all documents (ate), on
the treated ones (att) and on the reference ones (atc). Each replicate is a fresh
corpus estimated through `estimate_observational` (no refuters). With 1000
replicates the Monte Carlo error of a coverage is 0.7 points and that of a mean bias
0.03 standard errors, so the bands below are several Monte Carlo errors wide.
"""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from causal import estimate_observational
from graphs import CausalGraph

GRAPH = CausalGraph.from_edges(
    ["age", "sex", "insurance"],
    "decision",
    ["age -> insurance", "sex -> insurance", "age -> decision", "sex -> decision", "insurance -> decision"],
)
METHODS = ("regression", "ipw", "aipw", "matching", "exact_matching")
REPLICATES = 1000
DOCUMENTS = 500

AGES, AGE_SHARES = np.array(["young", "middle", "old"]), np.array([0.5, 0.3, 0.2])
SEXES, SEX_SHARES = np.array(["female", "male"]), np.array([0.6, 0.4])
P_NONE = 1 / (1 + np.exp(-(-0.6 + np.array([0.0, 1.0, 1.8])[:, None] + np.array([0.0, -1.0])[None, :])))
"""Probability of insurance=none per (age, sex): 0.17 to 0.77."""
BASELINE = np.array([0.0, 1.5, 3.0])[:, None] + np.array([0.0, 1.0])[None, :]
EFFECT = 1.0 + np.array([0.0, 1.0, 2.0])[:, None] + np.array([0.0, -1.0])[None, :]
"""Y(none) - Y(private) per (age, sex): 0 to 4, largest where insurance=none is most common."""
SHARES = AGE_SHARES[:, None] * SEX_SHARES[None, :]
TRUTH = {
    None: float((SHARES * EFFECT).sum()),
    "none": float((SHARES * P_NONE * EFFECT).sum() / (SHARES * P_NONE).sum()),
    "private": float((SHARES * (1 - P_NONE) * EFFECT).sum() / (SHARES * (1 - P_NONE)).sum()),
}
"""True effect per population: all documents (stratum None), insurance=none (att), insurance=private (atc)."""


def _corpus(seed, n=DOCUMENTS):
    rng = np.random.default_rng([2024, seed])
    age, sex = rng.choice(3, size=n, p=AGE_SHARES), rng.choice(2, size=n, p=SEX_SHARES)
    none = rng.random(n) < P_NONE[age, sex]
    noise = rng.normal(size=n) * np.where(none, 1.5, 1.0)
    return pd.DataFrame(
        {
            "age": AGES[age],
            "sex": SEXES[sex],
            "insurance": np.where(none, "none", "private"),
            "outcome": BASELINE[age, sex] + none * EFFECT[age, sex] + noise,
        }
    )


def _constant_effect_regression(frame):
    """The former "regression": OLS of the outcome on the treatment and the dummies, its treatment coefficient."""
    design = pd.get_dummies(frame[["age", "sex"]], drop_first=True, dtype=float)
    design.insert(0, "none", (frame["insurance"] == "none").astype(float))
    fit = sm.OLS(frame["outcome"], sm.add_constant(design)).fit(cov_type="HC1")
    return fit.params["none"], fit.bse["none"]


@pytest.fixture(scope="module")
def replicates():
    """One row per replicate, method and population: estimate, standard error, interval."""
    records = []
    for seed in range(REPLICATES):
        frame = _corpus(seed)
        result = estimate_observational(
            frame,
            graph=GRAPH,
            treatment="insurance",
            contrast=("none", "private"),
            methods=METHODS,
            directions=True,
            refuters=(),
        )
        records += [
            dict(
                method=row.method,
                stratum=row.stratum,
                estimate=row.estimate,
                std_error=row.std_error,
                covered=row.ci_low < TRUTH[row.stratum] < row.ci_high,
            )
            for row in result.effects.estimates
            if row.method != "naive"
        ]
        estimate, std_error = _constant_effect_regression(frame)
        records.append(dict(method="constant_effect", stratum=None, estimate=estimate, std_error=std_error))
    frame = pd.DataFrame(records)
    return frame.assign(error=frame["estimate"] - frame["stratum"].map(TRUTH))


@pytest.mark.parametrize("stratum", [None, "none", "private"])
@pytest.mark.parametrize("method", METHODS)
def test_intervals_cover_the_true_effect_and_means_are_unbiased(replicates, method, stratum):
    population = replicates["stratum"].isna() if stratum is None else replicates["stratum"] == stratum
    rows = replicates[(replicates["method"] == method) & population]
    assert len(rows) == REPLICATES
    assert 0.92 <= rows["covered"].mean() <= 0.98
    assert abs(rows["error"].mean()) < 0.1 * rows["std_error"].mean()


def test_the_constant_effect_regression_is_biased_where_the_effect_varies_and_g_computation_is_not(replicates):
    """OLS without interactions weights strata by the variance of the treatment, not by their share."""
    overall = replicates[replicates["stratum"].isna()].groupby("method")
    bias, std_error = overall["error"].mean(), overall["std_error"].mean()
    assert bias["constant_effect"] > 0.4 * std_error["constant_effect"]
    assert abs(bias["regression"]) < 0.1 * std_error["regression"]


def _small_strata(seed):
    """Ten age groups of about 40 documents, strongly confounded: the setting where a penalty shows."""
    rng = np.random.default_rng([77, seed])
    group = rng.integers(0, 10, size=400)
    none = rng.random(400) < 1 / (1 + np.exp(-np.linspace(-1.6, 1.6, 10)[group]))
    outcome = 3.0 * group / 9 + 1.0 * none + rng.normal(size=400)
    return pd.DataFrame(
        {"age": [f"g{g}" for g in group], "insurance": np.where(none, "none", "private"), "outcome": outcome}
    )


def test_ipw_with_the_penalised_propensity_is_biased_and_with_the_unpenalised_one_is_not():
    """sklearn's default LogisticRegression shrinks each group's logit toward 0, under-adjusting.

    The planted effect is 1.0 in every group; over 400 corpora the penalised fit leaves
    about 2 standard errors of confounding in the mean estimate (measured: +0.23 against
    a mean standard error of 0.11), the maximum likelihood fit none (-0.001).
    """
    graph = CausalGraph.from_edges(
        ["age", "insurance"], "decision", ["age -> insurance", "age -> decision", "insurance -> decision"]
    )
    errors = {"logistic": [], "logistic_l2": []}
    std_errors = {"logistic": [], "logistic_l2": []}
    for seed in range(400):
        frame = _small_strata(seed)
        for propensity in errors:
            (_, ipw) = estimate_observational(
                frame,
                graph=graph,
                treatment="insurance",
                contrast=("none", "private"),
                methods=("ipw",),
                propensity=propensity,
                refuters=(),
            ).effects.estimates
            errors[propensity].append(ipw.estimate - 1.0)
            std_errors[propensity].append(ipw.std_error)
    bound = {name: 0.1 * np.mean(values) for name, values in std_errors.items()}
    assert abs(np.mean(errors["logistic"])) < bound["logistic"]
    assert np.mean(errors["logistic_l2"]) > 10 * bound["logistic_l2"]
