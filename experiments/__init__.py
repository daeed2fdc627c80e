"""Experiments: YAML configs, the runner, run folders and the `paribus` CLI."""

from experiments._compile import Arm, ContrastPlan, Experiment, compile_config, load_experiment
from experiments._config import ExperimentConfig, parse_config
from experiments._runner import RunResult, run_experiment
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
