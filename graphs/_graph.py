"""The causal graph: a DAG over prompt factors plus one outcome node."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import networkx as nx

from graphs._names import check_known
from graphs.errors import GraphError

__all__ = ["CausalGraph"]


@dataclass(frozen=True)
class CausalGraph:
    """A validated DAG whose factors point, directly or not, at one outcome.

    The outcome is the model's decision; edges into it state the user's hypothesis
    about which factors the model reads. Build it with `from_edges`; the
    constructor takes parsed ``(cause, effect)`` pairs and validates the same way.
    """

    factors: tuple[str, ...]
    outcome: str
    edges: tuple[tuple[str, str], ...]
    _dag: nx.DiGraph = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "factors", tuple(self.factors))
        object.__setattr__(self, "edges", tuple(tuple(edge) for edge in self.edges))
        _check_names(self.factors, self.outcome)
        dag = nx.DiGraph()
        for factor in self.factors:
            dag.add_node(factor, role="factor")
        dag.add_node(self.outcome, role="outcome")
        for index, edge in enumerate(self.edges):
            cause, effect = _check_edge(edge, index, dag, self.outcome)
            dag.add_edge(cause, effect)
        _check_acyclic(dag, self.edges)
        if dag.in_degree(self.outcome) == 0:
            raise GraphError(
                f"no factor has a directed path to the outcome {self.outcome!r}; "
                f"add at least one edge 'factor -> {self.outcome}'",
                path="outcome",
            )
        object.__setattr__(self, "_dag", dag)

    @classmethod
    def from_edges(cls, factors: Sequence[str], outcome: str, edges: Sequence[str]) -> CausalGraph:
        """Build a graph from edge strings such as ``"age -> insurance"``."""
        parsed = tuple(_parse_edge(edge, index) for index, edge in enumerate(edges))
        return cls(factors=tuple(factors), outcome=outcome, edges=parsed)

    def parents(self, node: str) -> tuple[str, ...]:
        """Direct causes of `node`, in factor declaration order."""
        return self._ordered(self._dag.predecessors(self._known(node)))

    def children(self, node: str) -> frozenset[str]:
        """Direct effects of `node`."""
        return frozenset(self._dag.successors(self._known(node)))

    def ancestors(self, node: str) -> frozenset[str]:
        """Nodes with a directed path to `node` (excluding `node`)."""
        return frozenset(nx.ancestors(self._dag, self._known(node)))

    def descendants(self, node: str) -> frozenset[str]:
        """Nodes reachable from `node` by a directed path (excluding `node`; may include the outcome)."""
        return frozenset(nx.descendants(self._dag, self._known(node)))

    def topological_order(self) -> tuple[str, ...]:
        """Factors with every cause before its effects; ties broken by declaration order."""
        rank = {factor: i for i, factor in enumerate(self.factors)}
        rank[self.outcome] = len(self.factors)
        order = nx.lexicographical_topological_sort(self._dag, key=rank.__getitem__)
        return tuple(node for node in order if node != self.outcome)

    def mediators(self, treatment: str, target: str | None = None) -> tuple[str, ...]:
        """Factors strictly between `treatment` and `target` (default: the outcome) on directed paths."""
        treatment, target = self._pair(treatment, target)
        return self._ordered(self.descendants(treatment) & self.ancestors(target))

    def backdoor_adjustment_set(self, treatment: str, target: str | None = None) -> tuple[str, ...]:
        """A minimal set of factors satisfying the backdoor criterion for `treatment` -> `target`.

        Found as a minimal d-separator of the two nodes once the treatment's outgoing edges
        are removed, restricted to factors that are not descendants of the treatment.
        """
        treatment, target = self._pair(treatment, target)
        allowed = set(self.factors) - self.descendants(treatment) - {treatment, target}
        found = nx.find_minimal_d_separator(self._cut(treatment), treatment, target, restricted=allowed)
        if found is None:
            raise GraphError(
                f"no backdoor adjustment set exists for {treatment!r} -> {target!r}: "
                f"{target!r} is a direct cause of {treatment!r}"
            )
        return self._ordered(found)

    def is_backdoor_adjustment_set(self, treatment: str, adjustment: Iterable[str], target: str | None = None) -> bool:
        """Whether `adjustment` satisfies the backdoor criterion for `treatment` -> `target`.

        True when it holds no descendant of the treatment (nor the treatment or target) and
        blocks every path into the treatment.
        """
        treatment, target = self._pair(treatment, target)
        adjusted = {self._known(node) for node in adjustment}
        if adjusted & (self.descendants(treatment) | {treatment, target}):
            return False
        return nx.is_d_separator(self._cut(treatment), {treatment}, {target}, adjusted)

    def to_dot(self) -> str:
        """Graphviz DOT source; the outcome is drawn as a double-bordered box."""
        lines = ["digraph causal_graph {"]
        lines += [f"  {_quote(factor)};" for factor in self.factors]
        lines.append(f"  {_quote(self.outcome)} [shape=box, peripheries=2];")
        lines += [f"  {_quote(cause)} -> {_quote(effect)};" for cause, effect in self.edges]
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_networkx(self) -> nx.DiGraph:
        """A copy of the underlying DAG; each node has a ``role`` of "factor" or "outcome"."""
        return self._dag.copy()

    def _known(self, node: str) -> str:
        return check_known(node, (*self.factors, self.outcome), kind="node")

    def _pair(self, treatment: str, target: str | None) -> tuple[str, str]:
        treatment = check_known(treatment, self.factors, kind="treatment factor")
        target = self.outcome if target is None else self._known(target)
        if treatment == target:
            raise GraphError(f"treatment and target must differ; both are {treatment!r}")
        return treatment, target

    def _ordered(self, nodes: Iterable[str]) -> tuple[str, ...]:
        members = set(nodes)
        return tuple(node for node in (*self.factors, self.outcome) if node in members)

    def _cut(self, treatment: str) -> nx.DiGraph:
        cut = self._dag.copy()
        cut.remove_edges_from(list(self._dag.out_edges(treatment)))
        return cut


def _parse_edge(edge: object, index: int) -> tuple[str, str]:
    parts = edge.split("->") if isinstance(edge, str) else []
    if len(parts) != 2 or not all(part.strip() for part in parts):
        raise GraphError(f"an edge must look like 'cause -> effect'; got {edge!r}", path=f"edges[{index}]")
    return parts[0].strip(), parts[1].strip()


def _check_names(factors: tuple[str, ...], outcome: str) -> None:
    for name in factors:
        if not _is_valid_name(name):
            raise GraphError(
                f"factor names must be non-empty text without surrounding spaces or '->'; got {name!r}",
                path="factors",
            )
    duplicates = sorted({name for name in factors if factors.count(name) > 1})
    if duplicates:
        raise GraphError(f"factor names must be unique; repeated: {', '.join(duplicates)}", path="factors")
    if not _is_valid_name(outcome):
        raise GraphError(
            f"the outcome name must be non-empty text without surrounding spaces or '->'; got {outcome!r}",
            path="outcome",
        )
    if outcome in factors:
        raise GraphError(
            f"the outcome name {outcome!r} is also a factor; give the outcome its own name", path="outcome"
        )


def _is_valid_name(name: object) -> bool:
    """Names must survive the round trip through an edge string "cause -> effect"."""
    return isinstance(name, str) and bool(name) and name == name.strip() and "->" not in name


def _check_edge(edge: tuple[str, ...], index: int, dag: nx.DiGraph, outcome: str) -> tuple[str, str]:
    path = f"edges[{index}]"
    if len(edge) != 2:
        raise GraphError(f"an edge must be a (cause, effect) pair; got {edge!r}", path=path)
    cause, effect = (check_known(node, tuple(dag.nodes), kind="node", path=path) for node in edge)
    if cause == effect:
        raise GraphError(f"self-loop '{cause} -> {effect}'; a factor cannot cause itself", path=path)
    if cause == outcome:
        raise GraphError(
            f"edge '{cause} -> {effect}' leaves the outcome; the outcome must have no outgoing edges",
            path=path,
        )
    if dag.has_edge(cause, effect):
        raise GraphError(f"duplicate edge '{cause} -> {effect}'; declare each edge once", path=path)
    return cause, effect


def _check_acyclic(dag: nx.DiGraph, edges: tuple[tuple[str, str], ...]) -> None:
    try:
        cycle = nx.find_cycle(dag)
    except nx.NetworkXNoCycle:
        return
    rank = {node: i for i, node in enumerate(dag.nodes)}
    nodes = [cause for cause, *_ in cycle]
    start = nodes.index(min(nodes, key=rank.__getitem__))  # start at the first declared factor
    nodes = nodes[start:] + nodes[:start]
    loop = " -> ".join([*nodes, nodes[0]])
    closing = max(edges.index((cause, effect)) for cause, effect, *_ in cycle)
    raise GraphError(f"the graph has a cycle {loop}; remove one of its edges", path=f"edges[{closing}]")


def _quote(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
