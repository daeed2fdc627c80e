"""The public surface of `graphs` and its layering (numpy and networkx only)."""

from __future__ import annotations

import subprocess
import sys

import graphs
from graphs import GraphError


def test_public_names_are_pinned():
    assert graphs.__all__ == ["CausalGraph", "Factor", "StructuralModel", "Units", "World", "GraphError"]


def test_graph_error_is_a_value_error_whose_text_is_only_the_message():
    error = GraphError("probabilities sum to 0.9; they must sum to 1", path="insurance.distribution.young")
    assert isinstance(error, ValueError)
    assert str(error) == "probabilities sum to 0.9; they must sum to 1"
    assert error.path == "insurance.distribution.young"
    assert GraphError("no location").path is None


def test_importing_graphs_pulls_in_no_heavy_dependency():
    heavy = ("torch", "transformers", "pandas", "scipy", "statsmodels", "yaml")
    code = f"import sys, graphs; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
