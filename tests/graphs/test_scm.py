"""StructuralModel: validation, units, and SCM semantics checked unit by unit against the tables."""

from __future__ import annotations

import bisect
import itertools
import math

import numpy as np
import pytest

from graphs import CausalGraph, Factor, GraphError, StructuralModel, Units, World

AGES = {"age": ["young", "old"]}


def triage_factors(**insurance_options) -> list[Factor]:
    age = Factor.create(
        "age", {"young": ["24", "31"], "old": ["67", "74", "81"]}, distribution={"young": 0.3, "old": 0.7}
    )
    insurance = Factor.create(
        "insurance",
        {"private": ["private"], "public": ["Medicaid", "public"], "none": ["no"]},
        **{
            "parents": ["age"],
            "parent_values": AGES,
            "distribution": {
                "young": {"private": 0.6, "public": 0.2, "none": 0.2},
                "old": {"private": 0.4, "public": 0.5, "none": 0.1},
            },
            **insurance_options,
        },
    )
    symptom = Factor.create(
        "symptom",
        {"chest pain": ["chest pain", "angina"], "headache": ["headache"]},
        parents=["age"],
        parent_values=AGES,
        distribution={
            "young": {"chest pain": 0.1, "headache": 0.9},
            "old": {"chest pain": 0.8, "headache": 0.2},
        },
    )
    severity = Factor.create(
        "severity",
        {"mild": ["mild"], "severe": ["severe", "serious"]},
        parents=["symptom", "age"],
        parent_values={"symptom": ["chest pain", "headache"], **AGES},
        distribution={
            "chest pain, young": {"mild": 0.5, "severe": 0.5},
            "chest pain, old": {"mild": 0.1, "severe": 0.9},
            "headache, young": {"mild": 0.95, "severe": 0.05},
            "headache, old": {"mild": 0.7, "severe": 0.3},
        },
    )
    sex = Factor.create("sex", {"female": ["woman"], "male": ["man"]})
    return [age, insurance, symptom, severity, sex]


TRIAGE_GRAPH = CausalGraph.from_edges(
    ("age", "insurance", "symptom", "severity", "sex"),
    "decision",
    [
        "age -> insurance",
        "age -> symptom",
        "symptom -> severity",
        "age -> severity",
        "severity -> decision",
        "insurance -> decision",
        "sex -> decision",
    ],
)


@pytest.fixture(scope="module")
def model() -> StructuralModel:
    return StructuralModel(TRIAGE_GRAPH, triage_factors(), n_templates=3)


@pytest.fixture(scope="module")
def units(model) -> Units:
    return model.sample_units(2000, seed=11)


def reference_value(factor: Factor, parent_values: dict[str, str], noise: float) -> str:
    """Inverse CDF of the factor's table row at the unit's noise, one unit at a time."""
    row = factor.table[tuple(parent_values[parent] for parent in factor.parents)]
    cumulative = list(itertools.accumulate(row.values()))
    return list(row)[min(bisect.bisect_right(cumulative, noise), len(row) - 1)]


def reference_world(model: StructuralModel, units: Units, i: int, do: dict[str, str], hold: dict[str, str]):
    """Values and surface forms of unit i computed from the tables, in topological order."""
    values: dict[str, str] = {}
    for name in model.graph.topological_order():
        factor = model.factors[name]
        values[name] = do.get(name) or hold.get(name) or reference_value(factor, values, units.value_noise[name][i])
    forms = {}
    for name, value in values.items():
        surface = model.factors[name].values[value]
        forms[name] = surface[math.floor(units.form_noise[name][i] * len(surface))]
    return values, forms


def assert_world_matches_reference(model, units, world, do=(), hold=None):
    do, hold = dict(do), hold or {}
    for i in range(len(units)):
        held = {name: hold[name][i] for name in hold}
        values, forms = reference_world(model, units, i, do, held)
        assert world.row(i) == values
        assert {name: world.forms[name][i] for name in forms} == forms
        assert world.templates[i] == math.floor(units.template_noise[i] * model.n_templates)


def test_model_exposes_graph_factors_and_templates(model):
    assert model.graph is TRIAGE_GRAPH
    assert list(model.factors) == list(TRIAGE_GRAPH.factors)
    assert model.n_templates == 3
    assert "n_templates=3" in repr(model)


def test_factual_world_follows_the_tables_unit_by_unit(model, units):
    world = model.realize(units)
    assert isinstance(world, World)
    assert len(world) == len(units) == 2000
    assert_world_matches_reference(model, units, world)
    assert set(world.templates) == {0, 1, 2}


@pytest.mark.parametrize(
    "do", [{"age": "young"}, {"age": "old"}, {"symptom": "chest pain"}, {"age": "old", "symptom": "headache"}]
)
def test_do_recomputes_descendants_from_their_tables_with_the_same_noise(model, units, do):
    assert_world_matches_reference(model, units, model.realize(units, do=do), do=do)


def test_do_leaves_non_descendants_untouched(model, units):
    factual = model.realize(units)
    counterfactual = model.realize(units, do={"symptom": "headache"})
    for name in ("age", "insurance", "sex"):  # not descendants of symptom
        assert np.array_equal(counterfactual.values[name], factual.values[name])
        assert np.array_equal(counterfactual.forms[name], factual.forms[name])
    assert np.array_equal(counterfactual.templates, factual.templates)
    assert set(counterfactual.values["symptom"]) == {"headache"}
    assert not np.array_equal(counterfactual.values["severity"], factual.values["severity"])


def test_do_changes_a_descendant_only_through_its_table(model, units):
    """Units whose severity noise falls where both rows agree keep severity; others switch."""
    factual = model.realize(units)
    counterfactual = model.realize(units, do={"symptom": "headache"})
    noise = units.value_noise["severity"]
    old = factual.values["age"] == "old"
    was_chest = factual.values["symptom"] == "chest pain"
    # Old units: P(mild | chest, old) = 0.1 and P(mild | headache, old) = 0.7,
    # so only severity noise in [0.1, 0.7) switches from severe to mild.
    switched = counterfactual.values["severity"] != factual.values["severity"]
    assert np.array_equal(switched[old & was_chest], ((noise >= 0.1) & (noise < 0.7))[old & was_chest])
    assert not switched[~was_chest].any()


def test_hold_keeps_mediators_at_their_factual_values(model, units):
    factual = model.realize(units)
    direct = model.realize(units, do={"age": "young"}, hold=["symptom"])
    assert np.array_equal(direct.values["symptom"], factual.values["symptom"])
    assert np.array_equal(direct.forms["symptom"], factual.forms["symptom"])
    assert_world_matches_reference(
        model, units, direct, do={"age": "young"}, hold={"symptom": factual.values["symptom"]}
    )
    total = model.realize(units, do={"age": "young"})
    assert not np.array_equal(total.values["symptom"], factual.values["symptom"])


def test_hold_without_do_is_the_factual_world(model, units):
    factual = model.realize(units)
    held = model.realize(units, hold=["symptom", "age"])
    assert all(np.array_equal(held.values[name], factual.values[name]) for name in model.factors)


def test_same_seed_same_units_and_other_seed_other_units(model):
    first, again, other = (model.sample_units(50, seed=seed) for seed in (3, 3, 4))
    for name in model.factors:
        assert np.array_equal(first.value_noise[name], again.value_noise[name])
        assert np.array_equal(first.form_noise[name], again.form_noise[name])
        assert not np.array_equal(first.value_noise[name], other.value_noise[name])
    assert np.array_equal(first.template_noise, again.template_noise)
    generator = model.sample_units(50, seed=np.random.default_rng(3))
    assert np.array_equal(generator.value_noise["age"], first.value_noise["age"])


def test_a_larger_sample_extends_a_smaller_one(model):
    small, large = model.sample_units(10, seed=5), model.sample_units(30, seed=5)
    assert np.array_equal(large.value_noise["severity"][:10], small.value_noise["severity"])
    assert np.array_equal(large.template_noise[:10], small.template_noise)


def test_sampled_units_are_weighted_equally_and_read_only(model):
    units = model.sample_units(8, seed=0)
    assert len(units) == 8
    assert not units.exact
    assert units.ids.tolist() == list(range(8))
    assert units.ids.dtype == np.int64
    assert np.array_equal(units.weights, np.full(8, 1 / 8))
    assert all(0 <= u < 1 for u in units.value_noise["age"])
    with pytest.raises(ValueError, match="read-only"):
        units.value_noise["age"][0] = 0.5
    with pytest.raises(TypeError, match="does not support item assignment"):
        units.value_noise["age"] = np.zeros(8)  # type: ignore[index]
    world = model.realize(units)
    with pytest.raises(ValueError, match="read-only"):
        world.values["age"][0] = "old"


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_sample_size_must_be_a_positive_integer(model, n):
    with pytest.raises(GraphError, match=r"the number of units must be a positive integer; got") as caught:
        model.sample_units(n, seed=0)
    assert caught.value.path == "sampling"


@pytest.mark.parametrize(
    ("do", "hold", "match"),
    [
        ({"agee": "old"}, (), r"unknown factor in do 'agee'; did you mean 'age'\?"),
        ({"decision": "yes"}, (), r"unknown factor in do 'decision'"),
        ({"age": "elderly"}, (), r"unknown value of 'age' in do 'elderly' \(known: young, old\)"),
        ({"age": "olds"}, (), r"did you mean 'old'\?"),
        ({}, ("symptoms",), r"unknown factor in hold 'symptoms'; did you mean 'symptom'\?"),
        ({"age": "old"}, ("age",), r"factors \['age'\] are both set by do and held"),
    ],
)
def test_bad_interventions_are_rejected(model, units, do, hold, match):
    with pytest.raises(GraphError, match=match):
        model.realize(units, do=do, hold=hold)


def test_units_of_another_model_are_rejected(model):
    graph = CausalGraph.from_edges(("sex",), "decision", ["sex -> decision"])
    other = StructuralModel(graph, [triage_factors()[-1]])
    with pytest.raises(GraphError, match=r"these units were drawn for factors \['sex'\], but the model has"):
        model.realize(other.sample_units(3, seed=0))


def test_model_factors_must_match_the_graph():
    factors = triage_factors()
    with pytest.raises(GraphError, match=r"missing \['sex'\], not in the graph \[\]") as caught:
        StructuralModel(TRIAGE_GRAPH, factors[:-1])
    assert caught.value.path == "factors"
    extra = Factor.create("race", {"a": ["a"]})
    with pytest.raises(GraphError, match=r"missing \[\], not in the graph \['race'\]"):
        StructuralModel(TRIAGE_GRAPH, [*factors, extra])
    with pytest.raises(GraphError, match=r"each factor must be given once; repeated: sex") as caught:
        StructuralModel(TRIAGE_GRAPH, [*factors, factors[-1]])
    assert caught.value.path == "factors"


def test_factor_parents_must_match_the_graph():
    factors = triage_factors(parents=[], parent_values={}, distribution=None)
    with pytest.raises(
        GraphError, match=r"factor 'insurance' declares parents \[\] but the graph gives it \['age'\]"
    ) as caught:
        StructuralModel(TRIAGE_GRAPH, factors)
    assert caught.value.path == "insurance.parents"


def test_factor_table_must_cover_the_parents_values():
    factors = triage_factors(parent_values={"age": ["young", "elderly"]}, distribution=None)
    with pytest.raises(GraphError, match=r"missing rows \[\('old',\)\], unexpected rows \[\('elderly',\)\]") as caught:
        StructuralModel(TRIAGE_GRAPH, factors)
    assert caught.value.path == "insurance.distribution"


@pytest.mark.parametrize("n_templates", [0, 1.5, False])
def test_n_templates_must_be_a_positive_integer(n_templates):
    with pytest.raises(GraphError, match=r"n_templates must be a positive integer"):
        StructuralModel(TRIAGE_GRAPH, triage_factors(), n_templates=n_templates)


def test_parent_order_in_the_factor_may_differ_from_the_graph(model, units):
    # severity declares parents (symptom, age); the graph's declaration order is (age, symptom).
    assert model.factors["severity"].parents == ("symptom", "age")
    assert TRIAGE_GRAPH.parents("severity") == ("age", "symptom")
    world = model.realize(units, do={"age": "young", "symptom": "headache"})
    mild = np.mean(world.values["severity"] == "mild")
    assert mild == pytest.approx(0.95, abs=0.02)
