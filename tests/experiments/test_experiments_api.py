"""The public surface of `experiments`."""

import experiments


def test_public_names_are_pinned() -> None:
    assert experiments.__all__ == [
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


def test_errors_subclass_the_matching_builtins() -> None:
    assert issubclass(experiments.ConfigError, ValueError)
    assert issubclass(experiments.RunError, RuntimeError)
    assert str(experiments.ConfigError("must be positive", path="sampling.units")) == "sampling.units: must be positive"
