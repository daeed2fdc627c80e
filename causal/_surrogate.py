"""Surrogate models that mimic a model's decisions from the prompt factors.

A shallow tree and a logistic regression give a readable description of which factor values
go with which decision, and their held-out fidelity says how much of the model's behaviour
that description captures. They describe, they do not explain: the causal claims come from
the interventions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from causal._linking import _records
from causal._proportions import as_binary, proportion_interval
from causal.errors import EstimationError

SURROGATE_COLUMNS = ("surrogate", "fidelity", "ci_low", "ci_high", "n_test")
CAVEAT = "describes the model's decisions; not a causal claim"


@dataclass(frozen=True)
class SurrogateFidelity:
    """Share of held-out units on which a surrogate's decision equals the model's (Clopper-Pearson CI)."""

    surrogate: Literal["tree", "logistic", "majority"]
    fidelity: float
    ci_low: float
    ci_high: float
    n_test: int


@dataclass(frozen=True)
class SurrogateResult:
    """Two fitted surrogates of the model's decisions, described as text and numbers.

    `rules` is the tree in plain text (sklearn's export_text over one-hot features named
    "factor=value"); `coefficients` pairs each feature (and "(intercept)") with its logistic
    coefficient in log-odds of a positive decision. `majority_fidelity` is the held-out
    agreement of always predicting the training majority: the floor a surrogate must beat.
    """

    tree_fidelity: SurrogateFidelity
    logistic_fidelity: SurrogateFidelity
    majority_fidelity: SurrogateFidelity
    rules: str
    coefficients: tuple[tuple[str, float], ...]
    factors: tuple[str, ...]
    n_train: int
    n_test: int
    max_depth: int
    level: float
    seed: int
    caveat: str = CAVEAT

    def to_frame(self) -> pd.DataFrame:
        """One row per surrogate (tree, logistic, majority baseline), columns `SURROGATE_COLUMNS`."""
        fidelities = (self.tree_fidelity, self.logistic_fidelity, self.majority_fidelity)
        return _records(fidelities, SURROGATE_COLUMNS)

    def coefficient_frame(self) -> pd.DataFrame:
        """Columns feature, coefficient: the logistic regression, intercept first."""
        return pd.DataFrame(list(self.coefficients), columns=["feature", "coefficient"])

    def summary(self) -> str:
        """Plain text: the caveat, each fidelity with its CI, then the tree's rules."""
        lines = [
            f"Surrogates of the model's decisions over {', '.join(self.factors)} ({self.caveat}); "
            f"{self.n_train} training and {self.n_test} held-out units"
        ]
        lines += [
            f"{f.surrogate} fidelity {f.fidelity:.3g} [{f.ci_low:.3g}, {f.ci_high:.3g}] ({self.level:.0%} CI)"
            for f in (self.tree_fidelity, self.logistic_fidelity, self.majority_fidelity)
        ]
        return "\n".join([*lines, f"tree of depth <= {self.max_depth}:", self.rules.rstrip()])

    def __str__(self) -> str:
        return self.summary()


def fit_surrogates(
    frame: pd.DataFrame,
    *,
    factors: Sequence[str],
    decision: str = "decision",
    seed: int,
    max_depth: int = 3,
    test_share: float = 0.3,
    level: float = 0.95,
) -> SurrogateResult:
    """Fit a depth-limited decision tree and a logistic regression to the model's 0/1 decisions.

    Features are the one-hot factor values ("insurance=none"); a random `test_share` of the
    units (drawn with `seed`) is held out to measure fidelity. The training units must hold
    both decisions, since a surrogate of a constant model has nothing to describe.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier, export_text

    if not factors:
        raise EstimationError("factors is empty; name at least one factor column to describe decisions")
    missing = [c for c in (*factors, decision) if c not in frame.columns]
    if missing:
        raise EstimationError(f"frame lacks columns {missing}; it has {list(frame.columns)}")
    if not 0 < test_share < 1:
        raise EstimationError(f"test_share must lie strictly between 0 and 1; got {test_share!r}")
    if max_depth < 1:
        raise EstimationError(f"max_depth must be >= 1; got {max_depth!r}")
    if not 0 < level < 1:
        raise EstimationError(f"level must lie strictly between 0 and 1; got {level!r}")
    features = pd.get_dummies(frame[list(factors)].astype(str), prefix_sep="=").astype(np.float64)
    decided = as_binary(frame[decision], decision).to_numpy()
    n_test = round(len(frame) * test_share)
    if n_test < 1 or len(frame) - n_test < 2:
        raise EstimationError(
            f"{len(frame)} units with test_share {test_share} leave {n_test} held-out and "
            f"{len(frame) - n_test} training units; need at least 1 and 2"
        )
    order = np.random.default_rng(seed).permutation(len(frame))
    test, train = order[:n_test], order[n_test:]
    if np.unique(decided[train]).size < 2:
        raise EstimationError(
            f"the {train.size} training units all have decision {decided[train][0]}; a surrogate needs "
            "both decisions (the model's decision does not vary here)"
        )
    x_train, x_test = features.to_numpy()[train], features.to_numpy()[test]
    tree = DecisionTreeClassifier(max_depth=max_depth, random_state=seed).fit(x_train, decided[train])
    logistic = LogisticRegression(max_iter=1000).fit(x_train, decided[train])
    majority = np.full(n_test, np.bincount(decided[train]).argmax())
    truth = decided[test]
    names = list(features.columns)
    return SurrogateResult(
        tree_fidelity=_fidelity("tree", tree.predict(x_test), truth, level),
        logistic_fidelity=_fidelity("logistic", logistic.predict(x_test), truth, level),
        majority_fidelity=_fidelity("majority", majority, truth, level),
        rules=export_text(tree, feature_names=names),
        coefficients=(
            ("(intercept)", float(logistic.intercept_[0])),
            *zip(names, map(float, logistic.coef_[0]), strict=True),
        ),
        factors=tuple(factors),
        n_train=train.size,
        n_test=n_test,
        max_depth=max_depth,
        level=level,
        seed=seed,
    )


def _fidelity(
    surrogate: Literal["tree", "logistic", "majority"], predicted: np.ndarray, truth: np.ndarray, level: float
) -> SurrogateFidelity:
    agree = int((predicted == truth).sum())
    return SurrogateFidelity(
        surrogate, agree / truth.size, *proportion_interval(agree, truth.size, level=level), truth.size
    )
