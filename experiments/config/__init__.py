"""Stage 1, config: YAML -> validated config -> compiled Experiment; dataset loading for data mode.

Stage: config. May import graphs, interventions, causal and experiments.errors; no later stage.
"""

from experiments.config._builtin import BUILTIN_NAMES, BUILTIN_PREFIX, model_folder, resolve_model_path
from experiments.config._compile import (
    Arm,
    ContrastPlan,
    DataPlan,
    Experiment,
    MediationPlan,
    compile_config,
    load_experiment,
    stored_config,
)
from experiments.config._dataset import DROP_COLUMNS, PAIR_COLUMNS, load_documents, load_pairs
from experiments.config._outcomes import NamedOutcome
from experiments.config._quote import quoted, shortened
from experiments.config._schema import (
    DataConfig,
    ExperimentConfig,
    MediationConfig,
    ObservationalConfig,
    OutcomeConfig,
    parse_config,
)
from experiments.config._tokenizer import check_model
from experiments.config._yaml import load_yaml

__all__ = [
    "BUILTIN_NAMES",
    "BUILTIN_PREFIX",
    "DROP_COLUMNS",
    "PAIR_COLUMNS",
    "Arm",
    "ContrastPlan",
    "DataConfig",
    "DataPlan",
    "Experiment",
    "ExperimentConfig",
    "MediationConfig",
    "MediationPlan",
    "NamedOutcome",
    "ObservationalConfig",
    "OutcomeConfig",
    "check_model",
    "compile_config",
    "load_documents",
    "load_experiment",
    "load_pairs",
    "load_yaml",
    "model_folder",
    "parse_config",
    "quoted",
    "resolve_model_path",
    "shortened",
    "stored_config",
]
