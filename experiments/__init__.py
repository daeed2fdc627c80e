"""Experiments: YAML configs, the run pipeline, run folders and the `paribus` CLI.

Stage: pipeline. The package's public face: subpackages follow the order data flows
through a run, and each imports only earlier ones: config -> demo -> run -> steps -> report;
`_pipeline` and `cli` compose them. `errors` is shared by all. Public names load with their
module on first use (PEP 562), so `import experiments.cli` does not import the run pipeline.
"""

from importlib import import_module
from typing import Any

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
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

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
