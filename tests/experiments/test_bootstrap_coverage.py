"""The default bootstrap interval covers the demo's effects at their exact values, from 20 units up.

The demo's unit space is enumerable (11,520 weighted units, 1,800 distinct prompts), so
one pass of the demo model gives every unit's paired difference for every effect the
demo declares, and each exact effect is the weighted mean of its differences. Each seed
then draws a sample of units by weight, as a run would, and asks whether its 95%
intervals cover the exact effects; one set of resamples serves all effects of a seed,
as in a mediation sweep.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from causal._paired import DEFAULT_BOOTSTRAP_METHOD, bootstrap_intervals, t_interval
from experiments import compile_config, parse_config
from experiments.demo import resolve_model_path
from experiments.run import TemplatedUnits, arm_texts, draw_units, realize_arms
from interventions import ModelAdapter, evaluate_outcomes

SEEDS = 4000
N_BOOTSTRAP = 999
LEVEL = 0.95


@pytest.fixture(scope="module")
def population(example: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Effect names, every unit's paired difference per effect (effects, units), and the units' probabilities."""
    raw = yaml.safe_load(example.read_text())
    config = {**raw, "model": {**raw["model"], "device": "cpu"}, "sampling": {"mode": "exact"}}
    experiment = compile_config(parse_config(config))
    units = draw_units(experiment)
    worlds = realize_arms(experiment, units)
    outcomes = arm_texts(experiment, units, worlds)
    adapter = ModelAdapter.load(replace(experiment.model_spec, path=resolve_model_path(experiment.model_spec.path)))
    outcomes = outcomes.assign(
        outcome="decision", value=evaluate_outcomes(adapter, outcomes["text"].tolist(), experiment.outcome)
    )
    templated = TemplatedUnits(experiment, units, worlds, outcomes)
    plans = experiment.contrasts
    differences = np.stack([templated.paired(plan)["difference"].to_numpy() for plan in plans])
    names = [f"{plan.treatment}[{plan.contrast}] {plan.estimand}" for plan in plans]
    return names, differences, units.weights / units.weights.sum()


def coverage(differences: np.ndarray, probabilities: np.ndarray, n_units: int) -> dict[str, np.ndarray]:
    """Per effect, the share of seeds whose t and default bootstrap intervals cover the exact effect."""
    truth = differences @ probabilities
    hits = {"t": np.zeros(len(truth)), "bootstrap": np.zeros(len(truth))}
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        sample = differences[:, rng.choice(probabilities.size, size=n_units, p=probabilities)]
        intervals = {
            "t": [t_interval(row, level=LEVEL) for row in sample],
            "bootstrap": bootstrap_intervals(sample, level=LEVEL, n_bootstrap=N_BOOTSTRAP, rng=rng),
        }
        for method, per_effect in intervals.items():
            hits[method] += [interval.ci_low <= true <= interval.ci_high for interval, true in zip(per_effect, truth)]
    return {method: count / SEEDS for method, count in hits.items()}


def test_the_population_holds_every_declared_effect(population) -> None:
    names, differences, probabilities = population
    assert len(names) == 6 and differences.shape == (6, 11_520)
    assert probabilities.sum() == pytest.approx(1.0)
    insurance = differences[names.index("insurance[none vs private] total")] @ probabilities
    assert insurance == pytest.approx(-1.5, abs=0.1)  # the planted direct effect, as the model learned it


def test_default_bootstrap_covers_at_least_as_often_as_t_at_20_units(population) -> None:
    names, differences, probabilities = population
    covered = coverage(differences, probabilities, 20)
    for name, t, bootstrap in zip(names, covered["t"], covered["bootstrap"], strict=True):
        assert bootstrap >= t, f"{name}: {DEFAULT_BOOTSTRAP_METHOD} bootstrap covered {bootstrap:.3f}, t {t:.3f}"


def test_default_bootstrap_covers_at_the_nominal_rate_at_50_units(population) -> None:
    names, differences, probabilities = population
    covered = coverage(differences, probabilities, 50)
    for name, bootstrap in zip(names, covered["bootstrap"], strict=True):
        assert 0.92 <= bootstrap <= 0.98, f"{name}: {DEFAULT_BOOTSTRAP_METHOD} bootstrap covered {bootstrap:.3f}"
