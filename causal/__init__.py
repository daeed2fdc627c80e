"""Estimators for causal effects on a model's outcome, from tables of per-unit results.

Never imports torch: estimation runs on tables produced elsewhere. Public names load with
their module on first use (PEP 562), so `from causal import Hypothesis` loads no estimator.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "_results": ("EFFECT_COLUMNS", "EffectEstimate", "EffectTable"),
    "_estimate": ("estimate_paired_effects",),
    "_mediation": ("MEDIATION_COLUMNS", "SITE_KEYS", "MediationEstimate", "MediationTable", "estimate_mediation"),
    "_linking": ("LINK_COLUMNS", "AGREEMENT_COLUMNS", "EvidenceLinks", "FactorLink", "RankAgreement", "link_evidence"),
    "_observational": ("REFUTATION_COLUMNS", "OVERLAP_COLUMNS", "ObservationalResult", "estimate_observational"),
    "_human_pairs": ("estimate_human_pairs",),
    "_hypothesis": ("Hypothesis",),
    "_hypotheses": ("VERDICT_COLUMNS", "Verdict", "VerdictTable", "judge_hypotheses"),
    "_fairness": (
        "FAIRNESS_COLUMNS",
        "FairnessMetric",
        "FairnessTable",
        "counterfactual_flip_rates",
        "group_fairness",
    ),
    "_surrogate": ("SURROGATE_COLUMNS", "SurrogateFidelity", "SurrogateResult", "fit_surrogates"),
    "_comparison": (
        "COMPARISON_COLUMNS",
        "UNMATCHED_COLUMNS",
        "VERDICT_CHANGE_COLUMNS",
        "ComparisonTable",
        "EffectDifference",
        "Unmatched",
        "compare_effects",
        "compare_verdicts",
    ),
    "_sequential": ("SEQUENCE_COLUMNS", "SequenceInterval", "confidence_sequence"),
    "_multiple_testing": ("adjust_p_values",),
    "_format": ("format_p_value", "format_fairness_estimate"),
    "errors": ("EstimationError",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

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
    "format_p_value",
    "format_fairness_estimate",
    "EstimationError",
]


def __getattr__(name: str) -> Any:
    """Import the module of a public name on its first use and keep the name here."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
