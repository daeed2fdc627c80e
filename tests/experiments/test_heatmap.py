"""The mediation heatmap puts each estimate in its layer's row and its position's (or head's) column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.report._figures import _panels, mediation_heatmap


def sweep() -> pd.DataFrame:
    rows = []
    for component, heads in (("resid_pre", [None]), ("head", [0, 1])):
        for layer in (0, 1, 2):
            for head in heads:
                for position in ("factor", "last"):
                    for method in ("t", "bootstrap"):
                        rows.append(
                            {
                                "component": component,
                                "layer": layer,
                                "head": head,
                                "position": position,
                                "effect": "indirect",
                                "method": method,
                                "estimate": 100 * layer
                                + 10 * (head or 0)
                                + (position == "last")
                                + (method == "bootstrap") * 0.5,
                            }
                        )
    rows.append(
        {
            "component": None,
            "layer": None,
            "head": None,
            "position": None,
            "effect": "total",
            "method": "t",
            "estimate": 9.0,
        }
    )
    return pd.DataFrame(rows)


def test_grids_place_every_headline_estimate() -> None:
    panels = dict(_panels(sweep()[lambda f: (f["effect"] == "indirect") & (f["method"] == "t")]))
    assert list(panels) == ["resid_pre", "head @ factor", "head @ last"]
    resid = panels["resid_pre"]
    assert resid.index.tolist() == [0, 1, 2] and resid.columns.tolist() == ["factor", "last"]
    assert resid.loc[2, "last"] == 201 and resid.loc[1, "factor"] == 100
    heads = panels["head @ last"]
    assert heads.columns.tolist() == [0, 1] and heads.loc[1, 1] == 111


def test_heatmap_png_is_written(tmp_path: Path) -> None:
    path = mediation_heatmap(sweep(), tmp_path / "m.png", title="insurance <none vs private>")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
