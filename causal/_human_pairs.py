"""Effects measured on documents a person edited: one paired difference per edit.

An edit changes one factor of an original document from `source` to `target`; the
outcome on the edit minus the outcome on the original is that document's effect of
do(target) vs do(source), with whatever else the person changed. The rows use the
same interval methods and labels as the templated and rewritten estimates, so they
compare with them row by row.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from causal._estimate import estimate_paired_effects
from causal._paired import DEFAULT_BOOTSTRAP_METHOD, BootstrapMethod
from causal._results import EffectTable
from causal.errors import EstimationError

_COLUMNS = ("factor", "source", "target", "difference")


def estimate_human_pairs(
    pairs: pd.DataFrame,
    *,
    level: float = 0.95,
    n_bootstrap: int = 2000,
    bootstrap_method: BootstrapMethod = DEFAULT_BOOTSTRAP_METHOD,
    seed: int = 0,
) -> EffectTable:
    """Average effect of each kind of edit, with t and bootstrap intervals.

    `pairs` has one row per edit: "factor", "source" and "target" (the factor's value
    in the original and in the edit) and "difference" (outcome on the edit minus on
    the original); it is not modified. One group per (factor, target vs source), in
    order of first appearance; each gives the rows `estimate_paired_effects` gives an
    ATE, with analysis "human_pairs", treatment the factor, contrast "target vs source".
    """
    if not isinstance(pairs, pd.DataFrame):
        raise EstimationError(f"pairs must be a pandas DataFrame; got {type(pairs).__name__}")
    missing = [column for column in _COLUMNS if column not in pairs.columns]
    if missing:
        raise EstimationError(f"pairs must have column(s) {missing}; it has {list(pairs.columns)}")
    if len(pairs) == 0:
        raise EstimationError("pairs has no rows; it needs one row per edited document")
    labels = pairs[["factor", "source", "target"]]
    unlabelled = labels.index[labels.isna().any(axis=1)]
    if len(unlabelled):
        raise EstimationError(
            f"pairs must name the factor, source and target of every edit; "
            f"{len(unlabelled)} row(s) do not, first at index {unlabelled.tolist()[0]!r}"
        )
    labels = labels.astype(str)
    unchanged = labels.index[labels["source"] == labels["target"]]
    if len(unchanged):
        raise EstimationError(
            f"an edit must change its factor's value; {len(unchanged)} row(s) have source == target, first "
            f"at index {unchanged.tolist()[0]!r} ({labels.loc[unchanged[0], 'factor']}="
            f"{labels.loc[unchanged[0], 'source']}); drop them"
        )
    rows = []
    for (factor, source, target), group in pairs.groupby(
        [labels["factor"], labels["source"], labels["target"]], sort=False
    ):
        table = estimate_paired_effects(
            group[["difference"]],
            treatment=factor,
            contrast=f"{target} vs {source}",
            level=level,
            n_bootstrap=n_bootstrap,
            bootstrap_method=bootstrap_method,
            seed=seed,
        )
        rows += [dataclasses.replace(estimate, analysis="human_pairs") for estimate in table.estimates]
    return EffectTable(tuple(rows))
