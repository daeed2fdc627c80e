"""Stage 2, demo: the built-in demo models, shipped trained on notes from the demo config's structural model.

Stage: demo. May import interventions, experiments.errors and the config stage.
"""

from experiments.config import resolve_model_path
from experiments.demo._model import EXAMPLE_CONFIG, PLANTED_LOG_ODDS, referral_log_odds

__all__ = ["EXAMPLE_CONFIG", "PLANTED_LOG_ODDS", "referral_log_odds", "resolve_model_path"]
