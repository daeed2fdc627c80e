"""`causal` stays importable and usable without torch, and its public names are pinned."""

import subprocess
import sys

import causal

_SCRIPT = """
import sys
import numpy as np
import pandas as pd
import causal

paired = pd.DataFrame({"difference": np.arange(8.0), "age": ["young", "old"] * 4})
causal.estimate_paired_effects(paired, treatment="t", contrast="a vs b", moderators=["age"],
                               n_bootstrap=50).corrected("holm")
print("torch" in sys.modules)
"""


def test_import_and_estimation_never_load_torch():
    result = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_public_names_are_pinned():
    assert causal.__all__ == [
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
    assert all(hasattr(causal, name) for name in causal.__all__)


def test_estimation_error_is_a_value_error():
    assert issubclass(causal.EstimationError, ValueError)
