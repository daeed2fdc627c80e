"""A prompt factor: its values, their surface forms, and its conditional probability table."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from types import MappingProxyType

from graphs._names import check_known
from graphs.errors import GraphError

__all__ = ["Factor"]

_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Factor:
    """One factor of the structural model; build it with `create`, which validates.

    `values` maps each value to its surface forms (the texts that realize it);
    `table` maps every parent-value combination (in `parents` order, ``()`` without
    parents) to P(value | parents), with every value listed in `values` order.
    """

    name: str
    values: Mapping[str, tuple[str, ...]]
    parents: tuple[str, ...]
    table: Mapping[tuple[str, ...], Mapping[str, float]]

    @classmethod
    def create(
        cls,
        name: str,
        values: Mapping[str, Sequence[str]],
        *,
        parents: Sequence[str] = (),
        parent_values: Mapping[str, Sequence[str]] = MappingProxyType({}),
        distribution: Mapping | None = None,
    ) -> Factor:
        """Validate a declaration and return the factor with a full, explicit table.

        `distribution` is ``{value: prob}`` without parents, or ``{combo: {value: prob}}``
        where `combo` is the parent's value, or the parents' values joined by ", " in
        `parents` order. None means uniform. Values left out of a row get probability 0;
        rows summing to 1 within 1e-6 are renormalized.
        `parent_values` names each parent's values (extra entries are ignored).
        """
        forms = _check_values(name, values)
        parents = tuple(parents)
        combos = _parent_combos(name, parents, parent_values)
        if distribution is None:
            table = {combo: _uniform(forms) for combo in combos}
        elif not parents:
            table = {(): _check_row(distribution, forms, path=f"{name}.distribution")}
        else:
            table = _check_table(name, distribution, combos, forms)
        return cls(
            name=name,
            values=MappingProxyType(forms),
            parents=parents,
            table=MappingProxyType({combo: MappingProxyType(table[combo]) for combo in combos}),
        )


def _check_values(name: str, values: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    path = f"{name}.values"
    if not isinstance(values, Mapping) or not values:
        raise GraphError(f"a factor needs at least one value with surface forms; got {values!r}", path=path)
    forms: dict[str, tuple[str, ...]] = {}
    for value, texts in values.items():
        if not isinstance(value, str) or not value:
            raise GraphError(f"value names must be non-empty text; got {value!r}", path=path)
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
            raise GraphError(
                f"value {value!r} needs a non-empty list of surface forms; got {texts!r}",
                path=f"{path}.{value}",
            )
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text:
                raise GraphError(
                    f"surface form {index} of value {value!r} is {text!r}; surface forms must be non-empty text",
                    path=f"{path}.{value}",
                )
        forms[value] = tuple(texts)
    return forms


def _parent_combos(
    name: str, parents: tuple[str, ...], parent_values: Mapping[str, Sequence[str]]
) -> list[tuple[str, ...]]:
    path = f"{name}.parents"
    if name in parents or len(set(parents)) != len(parents):
        raise GraphError(f"parents must be distinct factors other than {name!r}; got {list(parents)}", path=path)
    for parent in parents:
        if not parent_values.get(parent):
            raise GraphError(
                f"parent {parent!r} has no value names; pass them as parent_values={{{parent!r}: [...]}}",
                path=path,
            )
    return list(itertools.product(*(tuple(parent_values[parent]) for parent in parents)))


def _uniform(forms: Mapping[str, tuple[str, ...]]) -> dict[str, float]:
    return {value: 1.0 / len(forms) for value in forms}


def _check_table(
    name: str, distribution: Mapping, combos: list[tuple[str, ...]], forms: Mapping[str, tuple[str, ...]]
) -> dict[tuple[str, ...], dict[str, float]]:
    path = f"{name}.distribution"
    if not isinstance(distribution, Mapping):
        raise GraphError(f"the distribution must map parent values to rows; got {distribution!r}", path=path)
    by_key = {", ".join(combo): combo for combo in combos}
    table = {}
    for key, row in distribution.items():
        check_known(key, tuple(by_key), kind="parent combination", path=f"{path}.{key}")
        table[by_key[key]] = _check_row(row, forms, path=f"{path}.{key}")
    missing = [key for key, combo in by_key.items() if combo not in table]
    if missing:
        raise GraphError(
            f"missing rows for parent combinations {', '.join(map(repr, missing))}; "
            "the distribution needs one row per combination of parent values",
            path=path,
        )
    return table


def _check_row(row: object, forms: Mapping[str, tuple[str, ...]], *, path: str) -> dict[str, float]:
    if not isinstance(row, Mapping):
        raise GraphError(f"a distribution row must map values to probabilities; got {row!r}", path=path)
    probabilities = dict.fromkeys(forms, 0.0)
    for value, probability in row.items():
        check_known(value, tuple(forms), kind="value", path=f"{path}.{value}")
        if isinstance(probability, bool) or not isinstance(probability, Real) or not 0 <= probability < math.inf:
            raise GraphError(
                f"probability of {value!r} is {probability!r}; probabilities must be numbers >= 0",
                path=f"{path}.{value}",
            )
        probabilities[value] = float(probability)
    total = math.fsum(probabilities.values())
    if abs(total - 1.0) > _TOLERANCE:
        raise GraphError(f"probabilities sum to {total:.6g}; they must sum to 1", path=path)
    return {value: probability / total for value, probability in probabilities.items()}
