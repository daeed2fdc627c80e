"""CausalGraph: validation of declarations and graph queries on graphs whose answers are known."""

from __future__ import annotations

import dataclasses

import networkx as nx
import pytest

from graphs import CausalGraph, GraphError

TRIAGE_FACTORS = ("age", "insurance", "symptom")
TRIAGE_EDGES = ("age -> insurance", "age -> symptom", "symptom -> decision", "insurance -> decision")


@pytest.fixture
def triage() -> CausalGraph:
    return CausalGraph.from_edges(TRIAGE_FACTORS, "decision", TRIAGE_EDGES)


@pytest.mark.parametrize(
    ("factors", "outcome", "edges", "match", "path"),
    [
        (
            TRIAGE_FACTORS,
            "decision",
            ["age insurance"],
            r"must look like 'cause -> effect'; got 'age insurance'",
            "edges[0]",
        ),
        (TRIAGE_FACTORS, "decision", ["age -> symptom", "a -> b -> c"], r"got 'a -> b -> c'", "edges[1]"),
        (TRIAGE_FACTORS, "decision", ["age -> "], r"must look like 'cause -> effect'", "edges[0]"),
        (TRIAGE_FACTORS, "decision", [7], r"must look like 'cause -> effect'; got 7", "edges[0]"),
        (
            TRIAGE_FACTORS,
            "decision",
            ["age -> decision", "age -> insurence"],
            r"unknown node 'insurence'; did you mean 'insurance'\? "
            r"\(known: age, insurance, symptom, decision\)",
            "edges[1]",
        ),
        (TRIAGE_FACTORS, "decision", ["age -> age"], r"self-loop 'age -> age'", "edges[0]"),
        (
            TRIAGE_FACTORS,
            "decision",
            ["age -> insurance", "insurance -> decision", "age->insurance"],
            r"duplicate edge 'age -> insurance'",
            "edges[2]",
        ),
        (
            ("age", "symptom", "age"),
            "decision",
            ["age -> decision"],
            r"factor names must be unique; repeated: age",
            "factors",
        ),
        (("age", ""), "decision", ["age -> decision"], r"factor names must be non-empty text", "factors"),
        (("age", " sex"), "decision", ["age -> decision"], r"got ' sex'", "factors"),
        (TRIAGE_FACTORS, "age", ["insurance -> age"], r"the outcome name 'age' is also a factor", "outcome"),
        (TRIAGE_FACTORS, "", ["age -> insurance"], r"the outcome name must be non-empty text", "outcome"),
        (
            TRIAGE_FACTORS,
            "decision",
            ["age -> decision", "decision -> symptom"],
            r"edge 'decision -> symptom' leaves the outcome",
            "edges[1]",
        ),
        (
            ("a", "b", "c"),
            "decision",
            ["b -> c", "c -> decision", "c -> a", "a -> b"],
            r"the graph has a cycle a -> b -> c -> a; remove one of its edges",
            "edges[3]",
        ),
        (
            TRIAGE_FACTORS,
            "decision",
            ["age -> insurance", "age -> symptom"],
            r"no factor has a directed path to the outcome 'decision'",
            "outcome",
        ),
        ((), "decision", [], r"no factor has a directed path to the outcome 'decision'", "outcome"),
    ],
)
def test_invalid_declarations_are_rejected_with_their_path(factors, outcome, edges, match, path):
    with pytest.raises(GraphError, match=match) as caught:
        CausalGraph.from_edges(factors, outcome, edges)
    assert caught.value.path == path
    assert not str(caught.value).startswith(path)


def test_constructor_validates_parsed_pairs_like_from_edges():
    with pytest.raises(GraphError, match=r"self-loop 'age -> age'") as caught:
        CausalGraph(factors=("age",), outcome="decision", edges=(("age", "decision"), ("age", "age")))
    assert caught.value.path == "edges[1]"


def test_edges_are_parsed_whitespace_tolerant(triage):
    spaced = CausalGraph.from_edges(
        TRIAGE_FACTORS, "decision", ["  age->insurance", "age ->symptom ", *TRIAGE_EDGES[2:]]
    )
    assert spaced == triage
    assert hash(spaced) == hash(triage)
    assert triage.edges[0] == ("age", "insurance")


def test_graph_is_immutable(triage):
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'outcome'"):
        triage.outcome = "other"  # type: ignore[misc]


def test_parents_children_ancestors_descendants(triage):
    assert triage.factors == TRIAGE_FACTORS
    assert triage.parents("decision") == ("insurance", "symptom")  # declaration order, not edge order
    assert triage.parents("age") == ()
    assert triage.parents("symptom") == ("age",)
    assert triage.children("age") == frozenset({"insurance", "symptom"})
    assert triage.children("decision") == frozenset()
    assert triage.ancestors("decision") == frozenset(TRIAGE_FACTORS)
    assert triage.ancestors("symptom") == frozenset({"age"})
    assert triage.descendants("age") == frozenset({"insurance", "symptom", "decision"})
    assert triage.descendants("insurance") == frozenset({"decision"})


def test_topological_order_breaks_ties_by_declaration_order():
    graph = CausalGraph.from_edges(("c", "b", "a"), "y", ["a -> c", "b -> y", "c -> y"])
    assert graph.topological_order() == ("b", "a", "c")


def test_mediators_are_the_nodes_strictly_between(triage):
    assert triage.mediators("age") == ("insurance", "symptom")
    assert triage.mediators("age", "symptom") == ()
    assert triage.mediators("insurance") == ()
    chain = CausalGraph.from_edges(("a", "b", "c", "d"), "y", ["a -> b", "b -> c", "c -> y", "a -> y", "d -> y"])
    assert chain.mediators("a") == ("b", "c")
    assert chain.mediators("a", "c") == ("b",)
    assert chain.mediators("d") == ()


def test_backdoor_set_of_the_triage_graph(triage):
    assert triage.backdoor_adjustment_set("insurance") == ("age",)
    assert triage.backdoor_adjustment_set("symptom") == ("age",)
    assert triage.backdoor_adjustment_set("age") == ()
    assert triage.is_backdoor_adjustment_set("insurance", ["age"])
    assert triage.is_backdoor_adjustment_set("insurance", ["symptom"])  # blocks age -> symptom -> decision
    assert triage.is_backdoor_adjustment_set("insurance", ["age", "symptom"])
    assert not triage.is_backdoor_adjustment_set("insurance", [])
    assert triage.is_backdoor_adjustment_set("age", [])
    assert not triage.is_backdoor_adjustment_set("age", ["insurance"])  # a descendant of the treatment
    assert not triage.is_backdoor_adjustment_set("insurance", ["insurance"])


def test_backdoor_set_does_not_open_a_collider():
    # M-bias: t <- u1 -> m <- u2 -> y. Adjusting for m alone opens t <- u1 -> m <- u2 -> y.
    graph = CausalGraph.from_edges(("u1", "u2", "m", "t"), "y", ["u1 -> t", "u1 -> m", "u2 -> m", "u2 -> y", "t -> y"])
    assert graph.backdoor_adjustment_set("t") == ()
    assert graph.is_backdoor_adjustment_set("t", [])
    assert not graph.is_backdoor_adjustment_set("t", ["m"])
    assert graph.is_backdoor_adjustment_set("t", ["m", "u1"])
    assert graph.is_backdoor_adjustment_set("t", ["m", "u2"])


def test_backdoor_set_for_a_factor_target():
    graph = CausalGraph.from_edges(("c", "t", "m"), "y", ["c -> t", "c -> m", "t -> m", "m -> y"])
    assert graph.backdoor_adjustment_set("t", "m") == ("c",)
    assert not graph.is_backdoor_adjustment_set("t", [], "m")


def test_backdoor_set_is_impossible_when_the_target_causes_the_treatment():
    graph = CausalGraph.from_edges(("a", "b"), "y", ["a -> b", "b -> y"])
    with pytest.raises(GraphError, match=r"no backdoor adjustment set exists for 'b' -> 'a': 'a' is a direct cause"):
        graph.backdoor_adjustment_set("b", "a")


def test_unknown_names_in_queries_are_rejected_with_a_suggestion(triage):
    with pytest.raises(GraphError, match=r"unknown node 'agee'; did you mean 'age'\?") as caught:
        triage.parents("agee")
    assert caught.value.path is None
    with pytest.raises(GraphError, match=r"unknown treatment factor 'decision'"):
        triage.mediators("decision")
    with pytest.raises(GraphError, match=r"unknown node 'sympton'; did you mean 'symptom'\?"):
        triage.is_backdoor_adjustment_set("insurance", ["sympton"])
    with pytest.raises(GraphError, match=r"treatment and target must differ; both are 'age'"):
        triage.backdoor_adjustment_set("age", "age")


def test_to_dot_lists_every_node_and_edge(triage):
    dot = triage.to_dot()
    assert dot.startswith("digraph causal_graph {")
    for edge in TRIAGE_EDGES:
        cause, effect = (part.strip() for part in edge.split("->"))
        assert f'"{cause}" -> "{effect}";' in dot
    assert '"decision" [shape=box, peripheries=2];' in dot
    assert dot.count("->") == len(TRIAGE_EDGES)


def test_to_dot_escapes_quotes_and_backslashes():
    graph = CausalGraph.from_edges(('say "hi"', "a\\b"), "y", ['say "hi" -> y', "a\\b -> y"])
    dot = graph.to_dot()
    assert '"say \\"hi\\"" -> "y";' in dot
    assert '"a\\\\b" -> "y";' in dot


def test_to_networkx_is_a_copy_with_roles(triage):
    dag = triage.to_networkx()
    assert set(dag.edges) == set(triage.edges)
    assert dag.nodes["decision"]["role"] == "outcome"
    assert dag.nodes["age"]["role"] == "factor"
    dag.add_edge("decision", "age")
    assert not nx.is_directed_acyclic_graph(dag)
    assert triage.children("decision") == frozenset()
