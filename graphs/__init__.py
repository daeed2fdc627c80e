"""Causal graphs over prompt factors and the structural model that samples them."""

from graphs._factor import Factor
from graphs._graph import CausalGraph
from graphs._scm import StructuralModel
from graphs._units import Units, World
from graphs.errors import GraphError

__all__ = ["CausalGraph", "Factor", "StructuralModel", "Units", "World", "GraphError"]
