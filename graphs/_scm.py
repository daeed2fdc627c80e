"""The structural causal model: exogenous noise -> factor values and surface forms, per arm."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from graphs._factor import Factor
from graphs._graph import CausalGraph
from graphs._names import check_known
from graphs._units import Units, World, read_only
from graphs.errors import GraphError

__all__ = ["StructuralModel"]


@dataclass(frozen=True, eq=False)
class _Mechanism:
    """One factor's table as arrays, so a whole column of units is realized at once."""

    parents: tuple[str, ...]
    strides: tuple[int, ...]  # table row = sum(parent code * stride), each parent's values in declared order
    cumulative: np.ndarray  # (combinations, values) cumulative probabilities, last column exactly 1
    values: np.ndarray  # (values,) value names
    form_counts: np.ndarray  # (values,) number of surface forms of each value
    forms: np.ndarray  # (values, most forms) surface forms, padded with ""

    @classmethod
    def build(cls, factor: Factor, factors: Mapping[str, Factor]) -> _Mechanism:
        parent_values = [tuple(factors[parent].values) for parent in factor.parents]
        combos = list(itertools.product(*parent_values))
        expected = set(combos)
        missing = [combo for combo in combos if combo not in factor.table]
        unexpected = [combo for combo in factor.table if combo not in expected]
        if missing or unexpected:
            raise GraphError(
                f"the table of {factor.name!r} does not match its parents' values "
                f"(missing rows {missing}, unexpected rows {unexpected}); declare one row per "
                f"combination of the values of {', '.join(factor.parents)}",
                path=f"{factor.name}.distribution",
            )
        radices = [len(values) for values in parent_values]
        strides = tuple(math.prod(radices[i + 1 :]) for i in range(len(radices)))
        probabilities = np.array([[factor.table[combo][value] for value in factor.values] for combo in combos])
        cumulative = np.cumsum(probabilities, axis=1)
        cumulative /= cumulative[:, -1:]
        forms = np.full((len(factor.values), max(map(len, factor.values.values()))), "", dtype=object)
        for row, texts in enumerate(factor.values.values()):
            forms[row, : len(texts)] = texts
        return cls(
            parents=factor.parents,
            strides=strides,
            cumulative=cumulative,
            values=np.array(list(factor.values), dtype=object),
            form_counts=np.array([len(texts) for texts in factor.values.values()], dtype=np.int64),
            forms=forms,
        )


class StructuralModel:
    """Factors with conditional probability tables over a causal graph; realizes units in any arm.

    A unit is one draw of exogenous noise. The factual world computes each factor from
    its table in topological order; ``do(T=t)`` keeps the noise, sets T and recomputes
    its descendants, so every counterfactual is a true SCM counterfactual.
    """

    __slots__ = ("_factors", "_graph", "_mechanisms", "_n_templates")

    def __init__(self, graph: CausalGraph, factors: Sequence[Factor], *, n_templates: int = 1) -> None:
        by_name = _check_factors(graph, factors)
        if isinstance(n_templates, bool) or not isinstance(n_templates, int) or n_templates < 1:
            raise GraphError(f"n_templates must be a positive integer; got {n_templates!r}")
        self._graph = graph
        self._factors = MappingProxyType({name: by_name[name] for name in graph.factors})
        self._n_templates = n_templates
        self._mechanisms = MappingProxyType(
            {name: _Mechanism.build(by_name[name], by_name) for name in graph.topological_order()}
        )

    @property
    def graph(self) -> CausalGraph:
        return self._graph

    @property
    def factors(self) -> Mapping[str, Factor]:
        """Factor name -> Factor, in graph declaration order."""
        return self._factors

    @property
    def n_templates(self) -> int:
        return self._n_templates

    def __repr__(self) -> str:
        return (
            f"StructuralModel(factors={list(self._factors)}, outcome={self._graph.outcome!r}, "
            f"n_templates={self._n_templates})"
        )

    def sample_units(self, n: int, *, seed: int | np.random.Generator) -> Units:
        """Draw `n` units of uniform noise, each with weight 1/n.

        Unit i's noise does not depend on `n`, so a larger sample extends a smaller one.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise GraphError(f"the number of units must be a positive integer; got {n!r}", path="sampling")
        noise = np.random.default_rng(seed).random((n, 2 * len(self._factors) + 1))
        columns = [noise[:, j].copy() for j in range(noise.shape[1])]
        return self._units(columns, np.full(n, 1.0 / n), exact=False)

    def enumerate_units(self, *, max_units: int = 200_000) -> Units:
        """Partition the noise space into cells that realize one world in every arm; one unit per cell.

        Each noise axis is cut at every breakpoint that can change what it picks (every
        table row's cumulative probabilities, k/m for every surface form count m, k/n_templates),
        so weighted means over these units are exact expectations for any intervention.
        """
        if isinstance(max_units, bool) or not isinstance(max_units, int) or max_units < 1:
            raise GraphError(f"max_units must be a positive integer; got {max_units!r}", path="sampling")
        mechanisms = [self._mechanisms[name] for name in self._factors]
        value_cuts = [np.unique(np.append(m.cumulative, 0.0)) for m in mechanisms]
        form_cuts = [_fraction_cuts(np.unique(m.form_counts)) for m in mechanisms]
        axes = [*value_cuts, *form_cuts, _fraction_cuts(np.array([self._n_templates]))]
        shape = tuple(len(cuts) - 1 for cuts in axes)
        count = math.prod(shape)
        if count > max_units:
            raise GraphError(
                f"exact enumeration needs {count} units, more than max_units={max_units}; "
                "sample units instead, or declare fewer values, surface forms or templates",
                path="sampling",
            )
        cells = np.unravel_index(np.arange(count), shape)
        weights = np.ones(count)
        for cuts, cell in zip(axes, cells, strict=True):
            weights *= np.diff(cuts)[cell]
        columns = [(cuts[:-1] + cuts[1:])[cell] / 2 for cuts, cell in zip(axes, cells, strict=True)]
        return self._units(columns, weights / weights.sum(), exact=True)

    def realize(self, units: Units, *, do: Mapping[str, str] | None = None, hold: Sequence[str] = ()) -> World:
        """The world of `units` under ``do`` (factual when empty), with `hold` factors kept factual.

        Holding mediators at their factual values while setting the treatment gives the
        controlled direct effect.
        """
        self._check_units(units)
        n = len(units)
        fixed: dict[str, np.ndarray] = {}
        for factor, value in (do or {}).items():
            factor = check_known(factor, tuple(self._factors), kind="factor in do")
            values = tuple(self._factors[factor].values)
            code = values.index(check_known(value, values, kind=f"value of {factor!r} in do"))
            fixed[factor] = np.full(n, code, dtype=np.int64)
        held = [check_known(factor, tuple(self._factors), kind="factor in hold") for factor in hold]
        both = sorted(set(held) & set(fixed))
        if both:
            raise GraphError(f"factors {both} are both set by do and held; a factor can only be one of them")
        if held:
            factual = self._codes(units, {})
            fixed.update({factor: factual[factor] for factor in held})
        codes = self._codes(units, fixed)
        values, forms = {}, {}
        for name in self._factors:
            mechanism, code = self._mechanisms[name], codes[name]
            count = mechanism.form_counts[code]
            form = np.minimum((units.form_noise[name] * count).astype(np.int64), count - 1)
            values[name] = read_only(mechanism.values[code])
            forms[name] = read_only(mechanism.forms[code, form])
        templates = np.minimum((units.template_noise * self._n_templates).astype(np.int64), self._n_templates - 1)
        return World(values=MappingProxyType(values), forms=MappingProxyType(forms), templates=read_only(templates))

    def _codes(self, units: Units, fixed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Value index of every factor per unit, in topological order; `fixed` factors are not recomputed."""
        codes: dict[str, np.ndarray] = {}
        for name, mechanism in self._mechanisms.items():
            if name in fixed:
                codes[name] = fixed[name]
                continue
            row = np.zeros(len(units), dtype=np.int64)
            for parent, stride in zip(mechanism.parents, mechanism.strides, strict=True):
                row += codes[parent] * stride
            noise = units.value_noise[name][:, np.newaxis]
            codes[name] = (mechanism.cumulative[row] <= noise).sum(axis=1)
        return codes

    def _units(self, columns: list[np.ndarray], weights: np.ndarray, *, exact: bool) -> Units:
        """Units from noise columns: one value column and one form column per factor, then templates."""
        k = len(self._factors)
        columns = [read_only(column) for column in columns]
        return Units(
            ids=read_only(np.arange(len(weights), dtype=np.int64)),
            weights=read_only(weights),
            value_noise=MappingProxyType(dict(zip(self._factors, columns[:k], strict=True))),
            form_noise=MappingProxyType(dict(zip(self._factors, columns[k : 2 * k], strict=True))),
            template_noise=columns[2 * k],
            exact=exact,
        )

    def _check_units(self, units: Units) -> None:
        if set(units.value_noise) != set(self._factors) or set(units.form_noise) != set(self._factors):
            raise GraphError(
                f"these units were drawn for factors {sorted(units.value_noise)}, but the model has "
                f"{sorted(self._factors)}; draw units from this model"
            )


def _check_factors(graph: CausalGraph, factors: Sequence[Factor]) -> dict[str, Factor]:
    names = [factor.name for factor in factors]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise GraphError(f"each factor must be given once; repeated: {', '.join(repeated)}", path="factors")
    missing = [name for name in graph.factors if name not in names]
    extra = [name for name in names if name not in graph.factors]
    if missing or extra:
        raise GraphError(
            f"the factors must be exactly the graph's factors; missing {missing}, not in the graph {extra}",
            path="factors",
        )
    by_name = dict(zip(names, factors, strict=True))
    for name, factor in by_name.items():
        if set(factor.parents) != set(graph.parents(name)):
            raise GraphError(
                f"factor {name!r} declares parents {list(factor.parents)} but the graph gives it "
                f"{list(graph.parents(name))}; make the parents and the edges agree",
                path=f"{name}.parents",
            )
    return by_name


def _fraction_cuts(denominators: np.ndarray) -> np.ndarray:
    """Sorted distinct k/m for 0 <= k <= m, for every m in `denominators`."""
    return np.unique(np.concatenate([np.arange(m + 1) / m for m in denominators]))
