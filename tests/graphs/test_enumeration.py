"""Exact enumeration: weighted units reproduce the tables and every counterfactual exactly."""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest

from graphs import CausalGraph, Factor, GraphError, StructuralModel

P_A = {"a0": 0.25, "a1": 0.75}
P_B = {"a0": {"b0": 0.25, "b1": 0.25, "b2": 0.5}, "a1": {"b0": 0.5, "b1": 0.25, "b2": 0.25}}
P_C = {"c0": 0.375, "c1": 0.625}
FORMS_A = {"a0": ["x"], "a1": ["y", "y2"]}
FORMS_C = {"c0": ["p", "q", "r"], "c1": ["s"]}


@pytest.fixture(scope="module")
def small() -> StructuralModel:
    """a -> b, c independent; 2 * 4 * 2 value cells, 2 * 1 * 3 form cells, 2 template cells."""
    graph = CausalGraph.from_edges(("a", "b", "c"), "y", ["a -> b", "b -> y", "c -> y"])
    factors = [
        Factor.create("a", FORMS_A, distribution=P_A),
        Factor.create(
            "b", {b: [b] for b in P_B["a0"]}, parents=["a"], parent_values={"a": list(P_A)}, distribution=P_B
        ),
        Factor.create("c", FORMS_C, distribution=P_C),
    ]
    return StructuralModel(graph, factors, n_templates=2)


def weighted(weights: np.ndarray, *columns: np.ndarray) -> dict[tuple, float]:
    """Total weight of each distinct row of `columns`."""
    totals: dict[tuple, float] = defaultdict(float)
    for weight, key in zip(weights, zip(*columns, strict=True), strict=True):
        totals[key] += weight
    return dict(totals)


def test_units_are_one_per_cell_with_weights_summing_to_one(small):
    units = small.enumerate_units()
    assert units.exact
    assert len(units) == 2 * 4 * 2 * 2 * 1 * 3 * 2
    assert units.ids.tolist() == list(range(len(units)))
    assert (units.weights > 0).all()
    assert units.weights.sum() == pytest.approx(1.0, abs=1e-14)


def test_weighted_factual_values_are_the_product_of_the_tables(small):
    units = small.enumerate_units()
    world = small.realize(units)
    got = weighted(units.weights, world.values["a"], world.values["b"], world.values["c"])
    expected = {(a, b, c): P_A[a] * P_B[a][b] * P_C[c] for a, b, c in itertools.product(P_A, P_B["a0"], P_C)}
    assert got.keys() == expected.keys()
    for key, probability in expected.items():
        assert got[key] == pytest.approx(probability, abs=1e-12)


def test_weighted_surface_forms_and_templates_are_uniform_within_a_value(small):
    units = small.enumerate_units()
    world = small.realize(units)
    got = weighted(units.weights, world.forms["a"], world.forms["c"], world.templates)
    form_a = {form: P_A[a] / len(forms) for a, forms in FORMS_A.items() for form in forms}
    form_c = {form: P_C[c] / len(forms) for c, forms in FORMS_C.items() for form in forms}
    assert len(got) == len(form_a) * len(form_c) * 2
    for (fa, fc, _template), probability in got.items():
        assert probability == pytest.approx(form_a[fa] * form_c[fc] / 2, abs=1e-12)


@pytest.mark.parametrize("x", list(P_A))
def test_exact_interventional_distribution_is_the_table_row(small, x):
    units = small.enumerate_units()
    factual = small.realize(units)
    world = small.realize(units, do={"a": x})
    got = weighted(units.weights, world.values["b"])
    assert got == pytest.approx({(b,): p for b, p in P_B[x].items()}, abs=1e-12)
    # Noise is independent across factors, so the factual a and the counterfactual b are independent.
    joint = weighted(units.weights, factual.values["a"], world.values["b"])
    for (a, b), probability in joint.items():
        assert probability == pytest.approx(P_A[a] * P_B[x][b], abs=1e-12)


def test_exact_cross_world_coupling_follows_the_shared_noise(small):
    """b's noise u picks b0/b1/b2 at cuts .25/.5 under a0 and at .5/.75 under a1."""
    units = small.enumerate_units()
    under_a0 = small.realize(units, do={"a": "a0"}).values["b"]
    under_a1 = small.realize(units, do={"a": "a1"}).values["b"]
    got = weighted(units.weights, under_a0, under_a1)
    expected = {("b0", "b0"): 0.25, ("b1", "b0"): 0.25, ("b2", "b1"): 0.25, ("b2", "b2"): 0.25}
    assert got == pytest.approx(expected, abs=1e-12)


def test_sampled_interventional_mean_converges_to_the_exact_one(small):
    exact = small.enumerate_units()
    sampled = small.sample_units(20_000, seed=0)
    for x, b in itertools.product(P_A, P_B["a0"]):
        truth = np.sum(exact.weights * (small.realize(exact, do={"a": x}).values["b"] == b))
        estimate = np.mean(small.realize(sampled, do={"a": x}).values["b"] == b)
        assert truth == pytest.approx(P_B[x][b], abs=1e-12)
        assert abs(estimate - truth) < 4 * np.sqrt(truth * (1 - truth) / 20_000)


def test_exact_total_and_controlled_direct_effects_through_a_mediator():
    graph = CausalGraph.from_edges(("x", "m", "z"), "y", ["x -> m", "m -> z", "x -> z", "z -> y"])
    binary = {"0": ["no"], "1": ["yes"]}
    p_z = {"0, 0": 0.1, "0, 1": 0.6, "1, 0": 0.3, "1, 1": 0.9}  # P(z=1 | x, m)
    model = StructuralModel(
        graph,
        [
            Factor.create("x", binary),
            Factor.create(
                "m",
                binary,
                parents=["x"],
                parent_values={"x": ["0", "1"]},
                distribution={"0": {"0": 0.8, "1": 0.2}, "1": {"0": 0.3, "1": 0.7}},
            ),
            Factor.create(
                "z",
                binary,
                parents=["x", "m"],
                parent_values={"x": ["0", "1"], "m": ["0", "1"]},
                distribution={key: {"0": 1 - p, "1": p} for key, p in p_z.items()},
            ),
        ],
    )
    units = model.enumerate_units()

    def p_z1(**options) -> float:
        return float(np.sum(units.weights * (model.realize(units, **options).values["z"] == "1")))

    assert p_z1() == pytest.approx(0.5 * (0.8 * 0.1 + 0.2 * 0.6) + 0.5 * (0.3 * 0.3 + 0.7 * 0.9), abs=1e-12)
    assert p_z1(do={"x": "1"}) == pytest.approx(0.3 * 0.3 + 0.7 * 0.9, abs=1e-12)
    # m held at its factual value, whose marginal is P(m=0) = 0.5 * 0.8 + 0.5 * 0.3 = 0.55.
    assert p_z1(do={"x": "1"}, hold=["m"]) == pytest.approx(0.55 * 0.3 + 0.45 * 0.9, abs=1e-12)
    assert p_z1(do={"x": "1", "m": "0"}) == pytest.approx(0.3, abs=1e-12)


def test_too_many_cells_raise_with_the_count(small):
    assert len(small.enumerate_units(max_units=192)) == 192
    with pytest.raises(GraphError, match=r"exact enumeration needs 192 units, more than max_units=191") as caught:
        small.enumerate_units(max_units=191)
    assert caught.value.path == "sampling"
    with pytest.raises(GraphError, match=r"max_units must be a positive integer; got 0"):
        small.enumerate_units(max_units=0)
