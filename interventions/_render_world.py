"""Render every unit of one arm (a graphs.World) to its prompt."""

from __future__ import annotations

from collections.abc import Sequence

from graphs import World
from interventions._template import RenderedText, Template


def render_world(templates: Sequence[Template], world: World) -> list[RenderedText]:
    """One rendered prompt per unit: the unit's template variant filled with its surface forms."""
    names = list(world.forms)
    return [
        templates[int(world.templates[i])].render({name: str(world.forms[name][i]) for name in names})
        for i in range(len(world))
    ]
