"""Units (draws of exogenous noise) and worlds (what the noise realizes in one arm)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Units", "World"]


@dataclass(frozen=True, eq=False)
class Units:
    """Draws of exogenous noise; one row per unit.

    Every arm of an experiment realizes the same units, which is what makes its
    counterfactuals paired. Noise is uniform on [0, 1): `value_noise` picks a factor's
    value by the inverse CDF of its table row, `form_noise` picks surface form
    ``floor(u * n_forms)``, `template_noise` picks template ``floor(u * n_templates)``.
    """

    ids: np.ndarray
    weights: np.ndarray
    value_noise: Mapping[str, np.ndarray]
    form_noise: Mapping[str, np.ndarray]
    template_noise: np.ndarray
    exact: bool

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, eq=False)
class World:
    """Factor values and surface forms of every unit in one arm."""

    values: Mapping[str, np.ndarray]
    forms: Mapping[str, np.ndarray]
    templates: np.ndarray

    def __len__(self) -> int:
        return len(self.templates)

    def row(self, i: int) -> dict[str, str]:
        """Factor -> value of unit `i`."""
        return {factor: str(values[i]) for factor, values in self.values.items()}


def read_only(array: np.ndarray) -> np.ndarray:
    """Mark `array` read-only so units and worlds cannot be edited in place."""
    array.setflags(write=False)
    return array
