"""Shared fixtures: the demo experiment config and the built-in demo model, both shipped with the package."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "experiments" / "examples" / "triage.yaml"


@pytest.fixture(scope="session")
def example() -> Path:
    """The demo experiment config shipped with the package."""
    return EXAMPLE


@pytest.fixture(scope="session")
def demo_model_path() -> Path:
    """The folder of the trained `builtin:triage-demo` model shipped inside the package."""
    from experiments.demo import resolve_model_path

    return Path(resolve_model_path("builtin:triage-demo"))
