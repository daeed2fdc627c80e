"""Experiments: YAML configs, the run pipeline, run folders and the `paribus` CLI.

Stage: pipeline. The package's public face: subpackages follow the order data flows
through a run, and each imports only earlier ones: config -> demo -> run -> steps -> report;
`_pipeline` and `cli` compose them. `errors` is shared by all.
"""

from experiments._pipeline import RunResult, run_experiment
from experiments.config import (
    Arm,
    ContrastPlan,
    Experiment,
    ExperimentConfig,
    compile_config,
    load_experiment,
    parse_config,
)
from experiments.errors import ConfigError, RunError

__all__ = [
    "Arm",
    "ConfigError",
    "ContrastPlan",
    "Experiment",
    "ExperimentConfig",
    "RunError",
    "RunResult",
    "compile_config",
    "load_experiment",
    "parse_config",
    "run_experiment",
]
