"""Mediation figures: where inside the model an effect is carried, layer by position (or by head), and along which edges.

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


def edge_graph(mediation: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Write a PNG of the path-patching edges whose interval excludes zero: sender -> receiver, width by |effect|.

    Uses the headline rows (t, or exact) of one sweep's edges; an edge's label is its mean
    path effect and position. Edges whose interval covers zero are left out, and the title
    says how many were drawn of how many.
    """
    import networkx as nx
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = significant_edges(mediation)
    edges = mediation[(mediation["effect"] == "indirect") & mediation["method"].isin(["t", "exact"])]
    graph = nx.DiGraph()
    for row in rows.itertuples():
        graph.add_edge(row.site, row.receiver, effect=row.estimate, label=f"{row.estimate:+.3g} @ {row.position}")
    figure = Figure(figsize=(7.5, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_title(f"{title}\n{len(rows)} of {len(edges)} edges whose interval excludes zero", fontsize=9)
    if graph.number_of_edges():
        nx.set_node_attributes(graph, _layer_of(graph, set(rows["site"])), "column")
        layout = nx.multipartite_layout(graph, subset_key="column")
        limit = max(abs(effect) for *_, effect in graph.edges(data="effect")) or 1.0
        widths = [0.8 + 4 * abs(effect) / limit for *_, effect in graph.edges(data="effect")]
        colours = ["#c0392b" if effect > 0 else "#2c6fbb" for *_, effect in graph.edges(data="effect")]
        nx.draw_networkx_nodes(graph, layout, ax=axes, node_color="#eeeeee", edgecolors="#555555", node_size=900)
        nx.draw_networkx_labels(graph, layout, ax=axes, font_size=7)
        nx.draw_networkx_edges(
            graph, layout, ax=axes, width=widths, edge_color=colours, arrows=True, node_size=900, arrowsize=12
        )
        nx.draw_networkx_edge_labels(
            graph, layout, ax=axes, edge_labels=nx.get_edge_attributes(graph, "label"), font_size=6
        )
    figure.savefig(path, dpi=110)
    return path


def significant_edges(mediation: pd.DataFrame) -> pd.DataFrame:
    """The headline indirect rows of path-patching edges whose interval excludes zero, largest |effect| first."""
    rows = mediation[
        (mediation["effect"] == "indirect") & mediation["method"].isin(["t", "exact"]) & mediation["receiver"].notna()
    ]
    excludes = (rows["ci_low"] > 0) | (rows["ci_high"] < 0)
    chosen = rows[excludes]
    return chosen.reindex(chosen["estimate"].abs().sort_values(ascending=False).index)


def _layer_of(graph: object, senders: set[str]) -> dict[str, int]:
    """Column of each node: senders on the left, receivers on the right."""
    return {node: 0 if node in senders else 1 for node in graph.nodes}
