"""Estimators for causal effects on a model's outcome, from tables of per-unit results.

Never imports torch: estimation runs on tables produced elsewhere.
"""

from causal._comparison import (
    COMPARISON_COLUMNS,
    UNMATCHED_COLUMNS,
    VERDICT_CHANGE_COLUMNS,
    ComparisonTable,
    EffectDifference,
    Unmatched,
    compare_effects,
    compare_verdicts,
)
from causal._estimate import estimate_paired_effects
from causal._fairness import (
    FAIRNESS_COLUMNS,
    FairnessMetric,
    FairnessTable,
    counterfactual_flip_rates,
    group_fairness,
)
from causal._human_pairs import estimate_human_pairs
from causal._hypotheses import VERDICT_COLUMNS, Hypothesis, Verdict, VerdictTable, judge_hypotheses
from causal._linking import AGREEMENT_COLUMNS, LINK_COLUMNS, EvidenceLinks, FactorLink, RankAgreement, link_evidence
from causal._mediation import MEDIATION_COLUMNS, SITE_KEYS, MediationEstimate, MediationTable, estimate_mediation
from causal._multiple_testing import adjust_p_values
from causal._observational import OVERLAP_COLUMNS, REFUTATION_COLUMNS, ObservationalResult, estimate_observational
from causal._results import EFFECT_COLUMNS, EffectEstimate, EffectTable
from causal._sequential import SEQUENCE_COLUMNS, SequenceInterval, confidence_sequence
from causal._surrogate import SURROGATE_COLUMNS, SurrogateFidelity, SurrogateResult, fit_surrogates
from causal.errors import EstimationError

__all__ = [
    "EFFECT_COLUMNS",
    "EffectEstimate",
    "EffectTable",
    "estimate_paired_effects",
    "MEDIATION_COLUMNS",
    "SITE_KEYS",
    "MediationEstimate",
    "MediationTable",
    "estimate_mediation",
    "LINK_COLUMNS",
    "AGREEMENT_COLUMNS",
    "EvidenceLinks",
    "FactorLink",
    "RankAgreement",
    "link_evidence",
    "REFUTATION_COLUMNS",
    "OVERLAP_COLUMNS",
    "ObservationalResult",
    "estimate_observational",
    "estimate_human_pairs",
    "VERDICT_COLUMNS",
    "Hypothesis",
    "Verdict",
    "VerdictTable",
    "judge_hypotheses",
    "FAIRNESS_COLUMNS",
    "FairnessMetric",
    "FairnessTable",
    "counterfactual_flip_rates",
    "group_fairness",
    "SURROGATE_COLUMNS",
    "SurrogateFidelity",
    "SurrogateResult",
    "fit_surrogates",
    "COMPARISON_COLUMNS",
    "UNMATCHED_COLUMNS",
    "VERDICT_CHANGE_COLUMNS",
    "ComparisonTable",
    "EffectDifference",
    "Unmatched",
    "compare_effects",
    "compare_verdicts",
    "SEQUENCE_COLUMNS",
    "SequenceInterval",
    "confidence_sequence",
    "adjust_p_values",
    "EstimationError",
]
