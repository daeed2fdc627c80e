"""Augmented inverse propensity weighting: the regression's prediction corrected by weighted residuals.

Doubly robust: consistent when either the outcome model (the interacted regression of
g-computation) or the propensity model is right. The propensity is clipped to
`PROPENSITY_BOUNDS` as in ipw. Its standard error is that of the efficient influence
function, which needs no correction for the two fitted models (Robins, Rotnitzky and
Zhao, 1994; for att and atc, Hahn, 1998).
"""

from __future__ import annotations

import numpy as np

from causal._adjusted import AdjustedEstimate, Sample, Target, from_influence
from causal._gcomputation import fit_outcome_model
from causal._propensity import clip_propensity


def aipw(sample: Sample, targets: tuple[Target, ...]) -> dict[Target, AdjustedEstimate]:
    """Doubly robust effect per target population with its influence-function standard error."""
    model = fit_outcome_model(sample)
    y, t = sample.outcome, sample.treated
    e = clip_propensity(sample.propensity)
    m1, m0 = model.predicted_treated, model.predicted_reference
    # Per document: its contribution to the population's total effect, and whether it is a member.
    terms = {
        "ate": (m1 - m0 + t * (y - m1) / e - ~t * (y - m0) / (1 - e), np.ones_like(e)),
        "att": (t * (y - m0) - ~t * (y - m0) * e / (1 - e), t.astype(np.float64)),
        "atc": (~t * (m1 - y) + t * (y - m1) * (1 - e) / e, (~t).astype(np.float64)),
    }
    estimates = {}
    for target in targets:
        contribution, member = terms[target]
        effect = float(contribution.sum() / member.sum())
        estimates[target] = from_influence((contribution - member * effect) / member.mean(), effect)
    return estimates
