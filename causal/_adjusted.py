"""What the backdoor-adjusted estimators share: their input arrays, target populations and output.

Every estimator is a function `(sample, targets) -> {target: AdjustedEstimate}`. The
targets are the populations the effect Y(treated) - Y(reference) is averaged over:
all documents ("ate"), those whose factual value is the treated one ("att"), or the
reference one ("atc").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from causal._propensity import Propensity

Target = Literal["ate", "att", "atc"]
TARGETS: tuple[Target, ...] = ("ate", "att", "atc")


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class Sample:
    """The contrast's documents as arrays, one entry per document."""

    outcome: np.ndarray  # float
    treated: np.ndarray  # bool: the treatment has the treated value (else the reference value)
    features: np.ndarray  # (n, k) one-hot dummies of the adjustment set, first sorted value dropped
    strata: np.ndarray  # int code of the document's joint value of the adjustment set
    propensity: np.ndarray  # fitted probability of the treated value, unclipped
    propensity_model: Propensity

    def population(self, target: Target) -> np.ndarray:
        """Boolean mask of the documents `target` averages over."""
        if target == "ate":
            return np.ones(self.treated.size, dtype=bool)
        return self.treated if target == "att" else ~self.treated


@dataclass(frozen=True)
class AdjustedEstimate:
    """One estimator's effect on one target population and its standard error."""

    estimate: float
    std_error: float


def from_influence(influence: np.ndarray, estimate: float) -> AdjustedEstimate:
    """The estimate with the standard error of its influence function: sqrt(sum(phi^2)) / n."""
    return AdjustedEstimate(float(estimate), math.sqrt(float(np.sum(influence**2))) / influence.size)
