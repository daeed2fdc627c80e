"""What a run front hands the steps: its units, their outcomes in every arm, and how to pair or render them.

Stage: run. May import interventions, causal, experiments.errors and the config stage.

Two fronts produce it: templated units drawn from the structural model
(`run._templated`) and real documents with their rewrites (`run._documents`).
The steps (estimation, mediation, evidence) read a run only through this
protocol, so both modes go through the same steps and neither front knows the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from causal import SequenceInterval
from experiments.config import Arm, ContrastPlan, MediationPlan
from interventions import AlignedPair, RenderedText


@dataclass(frozen=True)
class EvidenceTexts:
    """The texts evidence is read on: per arm, the chosen units' texts in one order, with every factor's spans.

    `values` holds each chosen unit's factual value per factor (for probes), `ids` the
    chosen units' ids (to find their effects), `record` what the manifest keeps of the draw.
    """

    texts: dict[Arm, list[RenderedText]]
    values: dict[str, list[str]]
    ids: Sequence[Any]
    record: dict[str, Any]


class EvaluatedUnits(Protocol):
    """A run's units after the model read them in every arm.

    `outcomes` has one row per (unit, arm) with columns unit_id, arm and outcome.
    `exact` says the units enumerate the population (weighted means, no sampling error).
    `observed` holds the annotated factors and factual outcome of each unit where an
    observational estimate can be made (documents), else None; `human_pairs` the
    differences of people's edits (columns factor, source, target, difference), else None;
    `sequences` one confidence sequence per contrast when sampling stopped at a precision.
    Units with `observed` also give, in `paired`, each unit's factual value of the
    treatment as `source` (the confounding gap compares the units annotated with one of
    the contrast's two values).
    """

    outcomes: pd.DataFrame
    exact: bool
    observed: pd.DataFrame | None
    human_pairs: pd.DataFrame | None
    sequences: tuple[SequenceInterval, ...] | None

    def paired(self, plan: ContrastPlan) -> pd.DataFrame:
        """One row per unit with both arms of `plan`: `difference` (treated minus reference), `weight`, moderators."""
        ...

    def patch_pairs(
        self, plan: MediationPlan, tokenizer: Any, *, seed: int
    ) -> tuple[list[AlignedPair], dict[str, Any]]:
        """Aligned (receiving, source) texts of a draw of units for a patching sweep, and the draw's manifest record."""
        ...

    def evidence_texts(self, plans: dict[str, ContrastPlan], count: int, *, seed: int) -> EvidenceTexts:
        """A draw of `count` units rendered in the factual arm and both arms of each factor's plan."""
        ...
