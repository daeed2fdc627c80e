"""Experiments: YAML configs, the run pipeline, run folders and the `paribus` CLI.

Stage: pipeline. The package's public face: subpackages follow the order data flows
through a run, and each imports only earlier ones: config -> demo -> run -> steps -> report;
`_pipeline` and `cli` compose them. `errors` is shared by all. Public names load with their
module on first use (PEP 562), so `import experiments.cli` does not import the run pipeline.
"""

from graphs._lazy import lazy_exports

_EXPORTS = {
    "_pipeline": ("RunResult", "run_experiment"),
    "config": (
        "Arm",
        "ContrastPlan",
        "Experiment",
        "ExperimentConfig",
        "compile_config",
        "load_experiment",
        "parse_config",
    ),
    "errors": ("ConfigError", "RunError"),
}
_MODULE_OF, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

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
