"""The import structure of the four packages, read from their source: no circles, and layers and stages in order.

`graphs` is the base; `interventions` and `causal` build on it and not on each other;
`experiments` is on top, and inside it each stage imports only itself and earlier stages:
errors -> config -> demo -> run -> steps -> report -> pipeline (`_pipeline`, `cli`,
`__init__`). Imports inside functions count: they are a dependency all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("graphs", "interventions", "causal", "experiments")
ALLOWED = {
    "graphs": {"graphs"},
    "interventions": {"graphs", "interventions"},
    "causal": {"graphs", "causal"},
    "experiments": set(PACKAGES),
}
STAGES = ("errors", "config", "demo", "run", "steps", "report", "pipeline")
SUBPACKAGE_STAGES = ("config", "demo", "run", "steps", "report")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The Paribus module an import names: the longest prefix of `name` that is a module, or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def _imports(module: str) -> set[str]:
    """The Paribus modules `module` imports anywhere in its source (`from pkg import sub` counts as pkg.sub)."""
    path = MODULES[module]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                stem = f"{base}.{node.module}" if node.module else base
            else:
                stem = node.module
            names = [f"{stem}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {target for target in map(_resolve, names) if target is not None and target != module}
    return found


def _import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    graph.add_edges_from((module, target) for module in MODULES for target in _imports(module))
    return graph


def _stage(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in SUBPACKAGE_STAGES:
        return parts[1]
    if module == "experiments.errors":
        return "errors"
    return "pipeline"


def test_the_reader_finds_the_imports_it_should():
    """The checks below are only as good as the import reader, so pin what it reads from known modules."""
    assert "experiments.run" in _imports("experiments._pipeline")
    assert "experiments.run._store" in _imports("experiments.run._shards")
    assert "experiments._pipeline" in _imports("experiments.cli")  # an import inside a function
    assert _imports("experiments.errors") == set()


def test_no_import_circle_in_any_package():
    cycles = list(nx.simple_cycles(_import_graph()))
    assert cycles == [], f"import circles: {cycles}"


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_the_layers_below(package):
    wrong = sorted(
        f"{module} imports {target}"
        for module, target in _import_graph().edges
        if module.split(".")[0] == package and target.split(".")[0] not in ALLOWED[package]
    )
    assert wrong == []


def _out_of_order(edges) -> list[str]:
    """Imports from an experiments module into a later stage."""
    return sorted(
        f"{module} ({_stage(module)}) imports {target} ({_stage(target)})"
        for module, target in edges
        if module.startswith("experiments")
        and target.startswith("experiments")
        and STAGES.index(_stage(target)) > STAGES.index(_stage(module))
    )


def test_experiments_stages_import_only_earlier_stages():
    assert _out_of_order(_import_graph().edges) == []


def test_a_later_stage_import_is_caught():
    """Planted back edges (run importing report, config importing the pipeline) are reported; same-stage ones are not."""
    planted = [
        ("experiments.run._store", "experiments.report._summary"),
        ("experiments.config._compile", "experiments._pipeline"),
        ("experiments.run._shards", "experiments.run._store"),
    ]
    assert _out_of_order(planted) == [
        "experiments.config._compile (config) imports experiments._pipeline (pipeline)",
        "experiments.run._store (run) imports experiments.report._summary (report)",
    ]


@pytest.mark.parametrize("module", sorted(name for name in MODULES if name.startswith("experiments")))
def test_every_experiments_module_names_its_stage(module):
    """Each module's docstring says which stage it is and so what it may import."""
    docstring = ast.get_docstring(ast.parse(MODULES[module].read_text(encoding="utf-8"))) or ""
    assert f"Stage: {_stage(module)}." in docstring
