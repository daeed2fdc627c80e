"""Shared fixtures: the built-in demo model, trained once per test session into a private cache."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "experiments" / "examples" / "triage.yaml"


@pytest.fixture(scope="session")
def example() -> Path:
    """The demo experiment config shipped with the package."""
    return EXAMPLE


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the trained demo model; PARIBUS_CACHE_DIR points at it for the session."""
    from experiments.demo._model import resolve_model_path

    cache = tmp_path_factory.mktemp("paribus-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PARIBUS_CACHE_DIR", str(cache))
        resolve_model_path("builtin:triage-demo")
        yield cache


@pytest.fixture(scope="session")
def demo_model_path(demo_cache: Path) -> Path:
    from experiments.demo._model import resolve_model_path

    return Path(resolve_model_path("builtin:triage-demo"))
