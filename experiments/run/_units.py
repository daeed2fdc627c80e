"""Templated units: drawn from the structural model, each rendered in every arm's world.

Stage: run. May import graphs, interventions, experiments.errors and the config stage.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.config import Arm, Experiment
from graphs import Units, World
from interventions import render_world


def draw_units(experiment: Experiment) -> Units:
    """The run's units: sampled with the config's seed, or every unit of the space in exact mode."""
    sampling = experiment.config.sampling
    if sampling.mode == "exact":
        return experiment.model.enumerate_units(max_units=sampling.max_exact_units)
    return experiment.model.sample_units(sampling.units, seed=sampling.seed)


def realize_arms(experiment: Experiment, units: Units) -> dict[Arm, World]:
    """The world of every arm, from the same units' noise."""
    return {
        arm: experiment.model.realize(units)
        if arm.treatment is None
        else experiment.model.realize(units, do={arm.treatment: arm.value}, hold=arm.hold)
        for arm in experiment.arms
    }


def arm_texts(experiment: Experiment, units: Units, worlds: dict[Arm, World], *, start: int = 0) -> pd.DataFrame:
    """One row per (unit, arm) of units[start:]: the unit's prompt in that arm's world."""
    frames = []
    for arm, world in worlds.items():
        rows = range(start, len(units))
        texts = [rendered.text for rendered in render_world(experiment.templates, _world_rows(world, rows))]
        frames.append(
            pd.DataFrame(
                {"unit_id": units.ids[start:], "arm": arm.label, "template": world.templates[start:], "text": texts}
            )
        )
    return pd.concat(frames, ignore_index=True)


def _world_rows(world: World, rows: range) -> World:
    """The world of the units in `rows` only."""
    part = slice(rows.start, rows.stop)
    return World(
        values={name: values[part] for name, values in world.values.items()},
        forms={name: forms[part] for name, forms in world.forms.items()},
        templates=world.templates[part],
    )


def subsample(units: Units, count: int, *, seed: int) -> np.ndarray:
    """Indices of `count` units: the first ones when sampled (already a random draw), a weighted draw when exact.

    Exact mode enumerates the population; drawing by weight turns it into a sample of it,
    so intervals over the subsample mean what they mean for sampled units.
    """
    if not units.exact:
        return np.arange(min(count, len(units)))
    return np.random.default_rng(seed).choice(len(units), size=count, replace=True, p=units.weights)
