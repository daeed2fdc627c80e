"""Which contrasts each data-mode source can estimate, counted from the documents before any model loads.

Stage: run. May import the config stage and this stage's rewriting.

`paribus validate` prints these counts, so a contrast that no source can estimate is
seen before hours of model time, not in the run's effects table.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from experiments.config import ContrastPlan, Experiment
from experiments.run._rewriting import Counterfactuals, rewritable_to_both

_MIN_PER_ARM = 2
"""The observational estimators need at least this many documents at each compared value."""


@dataclass(frozen=True)
class SourceSupport:
    """One contrast's support from one source: how many documents or edits it rests on, in words."""

    treatment: str
    contrast: str
    source: str
    units: int
    detail: str
    estimable: bool


def source_support(
    experiment: Experiment, documents: pd.DataFrame, counterfactuals: Counterfactuals, pairs: pd.DataFrame | None
) -> tuple[SourceSupport, ...]:
    """Per contrast and source it asks for: the documents (or edits) that source would estimate it from.

    `pairs` has the kept human edits with columns factor, from, to (as `load_pairs` returns them).
    """
    rows = []
    for plan in experiment.contrasts:
        for source in plan.sources:
            if source == "rewrite":
                rows.append(_rewrite(plan, counterfactuals))
            elif source == "observational":
                rows.append(_observational(plan, documents))
            else:
                rows.append(_human_pairs(plan, pairs))
    return tuple(rows)


def _rewrite(plan: ContrastPlan, counterfactuals: Counterfactuals) -> SourceSupport:
    both = int(rewritable_to_both(counterfactuals, plan.treatment, plan.treated.value, plan.reference.value).sum())
    detail = f"{both} documents rewritable to both {plan.treated.value} and {plan.reference.value}"
    return SourceSupport(plan.treatment, plan.contrast, "rewrite", both, detail, both > 0)


def _observational(plan: ContrastPlan, documents: pd.DataFrame) -> SourceSupport:
    values = documents[plan.treatment].astype(str)
    treated, reference = int((values == plan.treated.value).sum()), int((values == plan.reference.value).sum())
    detail = f"{treated} documents at {plan.treated.value}, {reference} at {plan.reference.value}"
    estimable = min(treated, reference) >= _MIN_PER_ARM
    return SourceSupport(plan.treatment, plan.contrast, "observational", treated + reference, detail, estimable)


def _human_pairs(plan: ContrastPlan, pairs: pd.DataFrame | None) -> SourceSupport:
    treated, reference = plan.treated.value, plan.reference.value
    if pairs is None:
        pairs = pd.DataFrame(columns=["factor", "from", "to"])
    mine = pairs[pairs["factor"] == plan.treatment]
    forward = int(((mine["from"] == reference) & (mine["to"] == treated)).sum())
    backward = int(((mine["from"] == treated) & (mine["to"] == reference)).sum())
    detail = f"{forward} edits {reference} -> {treated}, {backward} edits {treated} -> {reference}"
    return SourceSupport(
        plan.treatment, plan.contrast, "human_pairs", forward + backward, detail, forward + backward > 0
    )
