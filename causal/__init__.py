"""Estimators for causal effects on a model's outcome, from tables of per-unit results.

Never imports torch: estimation runs on tables produced elsewhere.
"""

from causal._estimate import estimate_paired_effects
from causal._linking import AGREEMENT_COLUMNS, LINK_COLUMNS, EvidenceLinks, FactorLink, RankAgreement, link_evidence
from causal._mediation import MEDIATION_COLUMNS, SITE_KEYS, MediationEstimate, MediationTable, estimate_mediation
from causal._multiple_testing import adjust_p_values
from causal._results import EFFECT_COLUMNS, EffectEstimate, EffectTable
from causal._sequential import SEQUENCE_COLUMNS, SequenceInterval, confidence_sequence
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
    "SEQUENCE_COLUMNS",
    "SequenceInterval",
    "confidence_sequence",
    "adjust_p_values",
    "EstimationError",
]
