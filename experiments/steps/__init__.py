"""Stage 4, steps: estimation, mediation, evidence and review, each a function of the run's state returning tables.

Stage: steps. May import graphs, interventions, causal, experiments.errors, the config and run stages.
The steps know nothing of the run folder: the pipeline stores what they return.
"""

from experiments.steps._estimation import Estimates, confounding_gap, estimate_effects
from experiments.steps._evidence import EvidenceResult, run_evidence
from experiments.steps._mediation import run_mediation
from experiments.steps._review import ReviewResult, review_tables
from experiments.steps._seeds import EVIDENCE, MEDIATION, analysis_seed

__all__ = [
    "EVIDENCE",
    "MEDIATION",
    "Estimates",
    "EvidenceResult",
    "ReviewResult",
    "analysis_seed",
    "confounding_gap",
    "estimate_effects",
    "review_tables",
    "run_evidence",
    "run_mediation",
]
