"""Path patching and the new sites in a run: per-edge intervals, the edge graph, and the share they carry.

The demo model (GPT-2, 2 layers x 4 heads) on the triage example, a few units; every
number in mediation.parquet is checked against the interventions layer's own patching of
the same pairs, and its intervals against scipy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments import load_experiment, run_experiment
from experiments.config import load_yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "experiments" / "examples"


def _run(tmp_path: Path, mediation: list[dict]) -> Path:
    data = load_yaml(EXAMPLES / "triage.yaml")
    data.update(
        name="paths",
        mediation=mediation,
        sampling={"units": 40, "seed": 3},
        inference={"bootstrap": 200},
    )
    for key in ("evidence", "hypotheses", "fairness"):
        data.pop(key, None)
    path = tmp_path / "paths.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = run_experiment(load_experiment(path), out_dir=tmp_path / "run")
    return result.folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep = {"treatment": "insurance", "contrast": ["none", "private"], "units": 6}
    return _run(
        tmp_path_factory.mktemp("paths"),
        [
            {**sweep, "components": ["resid_mid", "head_q", "head_k", "head_v", "head_pattern"], "positions": ["last"]},
            {
                **sweep,
                "paths": {"senders": ["head.0.*"], "receivers": ["head_q.1.*", "resid_post.last"]},
                "positions": ["factor"],
            },
            {
                **sweep,
                "paths": {"senders": ["head.0.*", "mlp_out.0"], "receivers": ["head_v.1.*", "resid_post.last"]},
                "positions": ["factor", "last"],
                "method": "attribution",
                "verify_top": 6,
                "direction": "denoise",
            },
        ],
    )


def test_new_sites_are_swept_with_intervals(folder: Path) -> None:
    mediation = pd.read_parquet(folder / "mediation.parquet")
    sites = mediation[mediation["receiver"].isna() & (mediation["effect"] == "indirect") & (mediation["method"] == "t")]
    assert set(sites["component"]) == {"resid_mid", "head_q", "head_k", "head_v", "head_pattern"}
    assert (sites["n_units"] == 6).all() and sites["ci_low"].notna().all()


def test_every_edge_has_a_path_effect_with_a_t_interval_over_units(folder: Path) -> None:
    mediation = pd.read_parquet(folder / "mediation.parquet")
    edges = mediation[mediation["sweep"] == 1]
    headline = edges[(edges["effect"] == "indirect") & (edges["method"] == "t")]
    assert len(headline) == 4 * 5  # 4 senders (head.0.0-3) x (4 query heads of layer 1 + the final read)
    assert set(headline["receiver"]) == {f"head_q.1.{h}" for h in range(4)} | {"resid_post.last"}
    assert headline["p_adjusted"].notna().all() and (headline["p_adjusted"] >= headline["p_value"] - 1e-12).all()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    record = manifest["mediation"][1]
    assert record["senders"] == [f"head.0.{h}" for h in range(4)]
    assert (folder / record["heatmap"]).is_file()
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert "## Paths inside the model: insurance" in summary
    assert "| sender | receiver | position | path effect |" in summary


def test_each_edge_splits_the_total_into_its_path_and_the_rest(folder: Path) -> None:
    """Per unit, direct = total - path effect, so the means add up; t intervals are mean +- t(n-1) x se."""
    mediation = pd.read_parquet(folder / "mediation.parquet")
    sweep = mediation[(mediation["sweep"] == 2) & (mediation["method"] == "t")]
    total = sweep[sweep["effect"] == "total"]["estimate"].iloc[0]
    edges = sweep[sweep["effect"] != "total"]
    assert len(edges) == 2 * 6  # the six verified edges, indirect and direct
    by_edge = edges.pivot_table(index=["site", "receiver", "position"], columns="effect", values="estimate")
    assert np.allclose(by_edge["indirect"] + by_edge["direct"], total, atol=1e-9)
    half = stats.t.ppf(0.975, edges["n_units"] - 1) * edges["std_error"]
    assert np.allclose(edges["ci_high"] - edges["estimate"], half, atol=1e-9)


def test_edge_attribution_screens_every_edge_and_path_patches_the_strongest(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    record = manifest["mediation"][2]
    assert record["verified"] == 6 and record["rank_agreement"]["edges"] == 6
    mediation = pd.read_parquet(folder / "mediation.parquet")
    screened = mediation[(mediation["method"] == "attribution_t") & (mediation["effect"] == "indirect")]
    exact = mediation[
        (mediation["method"] == "t") & (mediation["effect"] == "indirect") & (mediation["direction"] == "denoise")
    ]
    assert len(screened) == 5 * 5 * 2  # (4 heads + mlp_out.0) x (4 value heads + the final read) x 2 positions
    assert len(exact) == 6
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert "screened by edge attribution patching and the top 6 path patched exactly" in summary
