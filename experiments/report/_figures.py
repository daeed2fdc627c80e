"""Mediation heatmaps: where inside the model an effect is carried, layer by position (or by head).

Stage: report. Imports nothing of Paribus.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd


def mediation_heatmap(mediation: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Write a PNG of mean indirect effects: one layer x position panel per component, layer x head for heads.

    Uses the headline rows (t, or exact in exact mode) of one sweep. Drawn with
    matplotlib's object interface, so no global pyplot state is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = mediation[(mediation["effect"] == "indirect") & mediation["method"].isin(["t", "exact"])]
    panels = _panels(rows)
    limit = max((np.nanmax(np.abs(grid.to_numpy(dtype=float))) for _, grid in panels), default=1.0) or 1.0
    columns = min(3, len(panels))
    figure = Figure(figsize=(4.2 * columns, 3.2 * math.ceil(len(panels) / columns)), layout="constrained")
    FigureCanvasAgg(figure)
    image = None
    for index, (name, grid) in enumerate(panels):
        axes = figure.add_subplot(math.ceil(len(panels) / columns), columns, index + 1)
        image = axes.imshow(grid.to_numpy(dtype=float), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        axes.set_title(name, fontsize=9)
        axes.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], rotation=45, ha="right", fontsize=7)
        axes.set_yticks(range(grid.shape[0]), [str(r) for r in grid.index], fontsize=7)
        axes.set_ylabel("layer", fontsize=8)
    if image is not None:
        figure.colorbar(image, ax=figure.axes, label="mean indirect effect", shrink=0.8)
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=110)
    return path


def _panels(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, layer x column grid) per component; heads get one layer x head grid per position."""
    panels = []
    for component in dict.fromkeys(rows["component"]):
        part = rows[rows["component"] == component]
        if component == "head":
            for position in dict.fromkeys(part["position"]):
                at = part[part["position"] == position]
                panels.append((f"head @ {position}", _grid(at, columns="head")))
        else:
            panels.append((component, _grid(part, columns="position")))
    return panels


def _grid(part: pd.DataFrame, *, columns: str) -> pd.DataFrame:
    order = list(dict.fromkeys(part[columns]))
    grid = part.pivot_table(index="layer", columns=columns, values="estimate", aggfunc="first", sort=False)
    return grid.reindex(columns=order).sort_index()
