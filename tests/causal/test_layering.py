"""`causal` stays importable and usable without torch, and its public names are pinned."""

import subprocess
import sys

import causal

_SCRIPT = """
import sys
import numpy as np
import pandas as pd
import causal
import graphs

paired = pd.DataFrame({"difference": np.arange(8.0), "age": ["young", "old"] * 4})
causal.estimate_paired_effects(paired, treatment="t", contrast="a vs b", moderators=["age"],
                               n_bootstrap=50).corrected("holm")
graph = graphs.CausalGraph.from_edges(["age", "t"], "y", ["age -> t", "age -> y", "t -> y"])
documents = paired.assign(t=["a", "a", "b", "b"] * 2, outcome=np.arange(8.0) ** 2)
causal.estimate_observational(documents, graph=graph, treatment="t", contrast=("a", "b"),
                              n_refutation_simulations=2)
units = pd.DataFrame({"sex": ["f", "m"] * 10, "decision": [0, 1, 1, 1] * 5})
causal.group_fairness(units, factor="sex")
causal.fit_surrogates(units, factors=["sex"], seed=0)
print("torch" in sys.modules)
"""


def test_import_and_estimation_never_load_torch():
    """Including the observational path, whose dowhy imports sklearn and statsmodels."""
    result = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_public_names_are_pinned():
    assert causal.__all__ == [
        "EFFECT_COLUMNS",
        "EffectEstimate",
        "EffectTable",
        "estimate_paired_effects",
        "MEDIATION_COLUMNS",
        "SITE_KEYS",
        "RECEIVER",
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
    assert all(hasattr(causal, name) for name in causal.__all__)


def test_estimation_error_is_a_value_error():
    assert issubclass(causal.EstimationError, ValueError)
