"""Choosing the units that costly analyses (patching, evidence) run on."""

from __future__ import annotations

import numpy as np

from graphs import Units


def subsample(units: Units, count: int, *, seed: int) -> np.ndarray:
    """Indices of `count` units: the first ones when sampled (already a random draw), a weighted draw when exact.

    Exact mode enumerates the population; drawing by weight turns it into a sample of it,
    so intervals over the subsample mean what they mean for sampled units.
    """
    if not units.exact:
        return np.arange(min(count, len(units)))
    return np.random.default_rng(seed).choice(len(units), size=count, replace=True, p=units.weights)
