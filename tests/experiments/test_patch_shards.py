"""Block shards: a run killed mid-patching or mid-evidence and resumed recomputes only the blocks it had not stored.

The tiny BERT classifier, 40 units in 2-unit shards; each sweep patches 8 units, so it runs
in 4 blocks (an attribution sweep: 4 blocks of attribution, then 4 of exact verification),
and evidence reads 8 units, so each reading runs in 4 blocks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments import Experiment, compile_config, parse_config, run_experiment
from experiments.run._evidence_blocks import EvidenceBlock
from experiments.run._patch_blocks import PatchBlock
from tests.experiments._tiny_runs import save_tiny_classifier, tiny_config
from tests.experiments.test_executor_ray import local_ray  # noqa: F401  (the fixture, used by name)

SWEEP = {"treatment": "insurance", "contrast": ["none", "private"], "components": ["resid_pre", "attn_out"], "units": 8}
EXACT = {**SWEEP, "positions": ["factor", "last"]}
ATTRIBUTION = {**EXACT, "method": "attribution", "verify_top": 3}
EVIDENCE = {
    "methods": ["attention", "attention_rollout", "gradient_x_input", "integrated_gradients"],
    "units": 8,
    "baseline": "counterfactual",
    "steps": 4,
    "token_view_units": 2,
}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-bert"))


def _experiment(
    model: Path, *sweeps: dict[str, Any], executor: dict[str, Any] | None = None, **sections: Any
) -> Experiment:
    """The tiny run in 2-unit shards with these patching sweeps; `sections` replace whole top-level keys."""
    data = tiny_config(model, executor={"shard_units": 2, **(executor or {})})
    return compile_config(parse_config({**data, "mediation": list(sweeps), **sections}))


class _Killed(BaseException):
    """What a kill looks like to the run: it stops where it is, marked failed."""


def _kill_after_blocks(count: int, stage: str) -> Callable[[str, int, int], None]:
    """A progress callback that stops the run once `count` blocks of the stage named `stage...` are done.

    Each block is stored before its progress is reported.
    """
    done = 0

    def progress(name: str, finished: int, total: int) -> None:
        nonlocal done
        if name.startswith(stage) and finished > 0:
            done += 1
            if done == count:
                raise _Killed

    return progress


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every block (patching or evidence) computed from now on."""
    names: list[str] = []
    for kind in (PatchBlock, EvidenceBlock):

        def counting(block: Any, adapter: Any, compute: Callable[..., pd.DataFrame] = kind.compute) -> pd.DataFrame:
            names.append(block.name)
            return compute(block, adapter)

        monkeypatch.setattr(kind, "compute", counting)
    return names


def _killed_run(experiment: Experiment, folder: Path, blocks: int, stage: str = "patching") -> list[str]:
    """Run `experiment` into `folder` and stop it after `blocks` blocks of `stage`; the stored blocks' shard names."""
    with pytest.raises(_Killed):
        run_experiment(experiment, out_dir=folder, progress=_kill_after_blocks(blocks, stage))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    stored = sorted(
        f"shards/{path.name}" for path in (folder / "shards").glob("*.parquet") if not path.name.startswith("outcomes-")
    )
    assert set(stored) <= set(manifest["checksums"])  # each block is listed as soon as it is written
    return stored


def test_a_run_killed_mid_patching_recomputes_only_the_blocks_it_had_not_stored(
    classifier: Path, tmp_path: Path, computed: list[str]
) -> None:
    experiment = _experiment(classifier, EXACT, ATTRIBUTION)
    whole = run_experiment(experiment, out_dir=tmp_path / "whole")
    assert [record["shards"] for record in whole.manifest["mediation"]] == [
        {"stored": 4, "reused": 0},
        {"stored": 8, "reused": 0},
    ]
    assert len(computed) == 12

    killed = tmp_path / "killed"
    stored = _killed_run(experiment, killed, 5)  # the exact sweep's 4 blocks, and 1 of the attribution sweep's
    assert [name.split("-")[1] for name in stored] == ["0"] * 4 + ["1"]
    # A block written but never listed (a kill between the two) is not trusted: removed and computed again.
    (killed / "shards" / "patch-1-unlisted.parquet").write_bytes((killed / stored[-1]).read_bytes())

    computed.clear()
    resumed = run_experiment(experiment, out_dir=killed, resume=True)
    assert len(computed) == 12 - 5 and not {f"shards/{name}.parquet" for name in computed} & set(stored)
    records = resumed.manifest["mediation"]
    assert [record["shards"] for record in records] == [{"stored": 4, "reused": 4}, {"stored": 8, "reused": 1}]
    assert [record["work"] for record in records] == [record["work"] for record in whole.manifest["mediation"]]
    assert resumed.manifest["resumes"][0]["untrusted_shards_removed"] == ["shards/patch-1-unlisted.parquet"]
    assert not (killed / "shards").exists() and not any(
        name.startswith("shards/") for name in resumed.manifest["checksums"]
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(killed / "mediation.parquet"), pd.read_parquet(whole.folder / "mediation.parquet")
    )


def test_blocks_of_another_plan_are_not_reused(classifier: Path, tmp_path: Path, computed: list[str]) -> None:
    """The patching config may change on resume (it does not touch the outcomes), and then no stored block fits."""
    killed = tmp_path / "killed"
    assert len(_killed_run(_experiment(classifier, EXACT), killed, 2)) == 2
    changed = _experiment(classifier, {**SWEEP, "positions": ["last"]})
    computed.clear()
    resumed = run_experiment(changed, out_dir=killed, resume=True)
    assert resumed.manifest["resumes"][0]["changed_fields"] == [
        "mediation[0].positions[0]",
        "mediation[0].positions[1]",
    ]
    assert resumed.manifest["mediation"][0]["shards"] == {"stored": 4, "reused": 0} and len(computed) == 4
    fresh = run_experiment(changed, out_dir=tmp_path / "fresh")
    pd.testing.assert_frame_equal(
        pd.read_parquet(killed / "mediation.parquet"), pd.read_parquet(fresh.folder / "mediation.parquet")
    )


def test_a_run_killed_mid_evidence_recomputes_only_the_blocks_it_had_not_stored(
    classifier: Path, tmp_path: Path, computed: list[str]
) -> None:
    """Attention, gradient x input, and integrated gradients against the counterfactual: 12 blocks.

    Sex alone is the evidence factor: insurance's two arms differ in token length in every drawn unit,
    so integrated gradients against the counterfactual would skip them all and linking refuses a
    factor without rows (with or without shards).
    """
    experiment = _experiment(classifier, evidence=EVIDENCE, effects=[{"treatment": "sex"}])
    whole = run_experiment(experiment, out_dir=tmp_path / "whole")
    assert whole.manifest["evidence"]["shards"] == {"stored": 12, "reused": 0} and len(computed) == 12

    killed = tmp_path / "killed"
    stored = _killed_run(experiment, killed, 5, stage="reading")
    assert len(stored) == 5 and all(name.startswith("shards/evidence-") for name in stored)
    computed.clear()
    resumed = run_experiment(experiment, out_dir=killed, resume=True)
    assert len(computed) == 12 - 5
    assert resumed.manifest["evidence"] == {**whole.manifest["evidence"], "shards": {"stored": 12, "reused": 5}}
    for name in ("evidence.parquet", "token_view.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(killed / name), pd.read_parquet(whole.folder / name))
    for name in ("evidence_links.csv", "evidence_agreement.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(killed / name), pd.read_csv(whole.folder / name))


@pytest.mark.usefixtures("local_ray")
def test_sweeps_and_evidence_on_ray_workers_equal_the_local_ones(classifier: Path, tmp_path: Path) -> None:
    evidence = {**EVIDENCE, "baseline": "pad"}
    local = run_experiment(_experiment(classifier, EXACT, ATTRIBUTION, evidence=evidence), out_dir=tmp_path / "local")
    distributed = run_experiment(
        _experiment(classifier, EXACT, ATTRIBUTION, evidence=evidence, executor={"type": "ray", "num_workers": 2}),
        out_dir=tmp_path / "ray",
    )
    for ours, theirs in zip(distributed.manifest["mediation"], local.manifest["mediation"], strict=True):
        assert ours["shards"] == theirs["shards"] and ours["work"] == theirs["work"]
    assert distributed.manifest["evidence"]["shards"] == local.manifest["evidence"]["shards"]
    for name in ("mediation.parquet", "evidence.parquet"):
        ours, theirs = (pd.read_parquet(run.folder / name) for run in (distributed, local))
        pd.testing.assert_frame_equal(ours, theirs, check_exact=False, rtol=0, atol=1e-6)


def test_edge_screening_runs_in_blocks_that_a_resume_reuses_and_equals_one_block(
    example: Path, tmp_path: Path, computed: list[str]
) -> None:
    """Edge attribution in blocks, the ranking over all units, the strongest edges path patched in blocks: killed
    after two blocks and resumed it reuses them, and it equals the sweep computed as one block."""
    sweep = {
        "treatment": "insurance",
        "contrast": ["none", "private"],
        "units": 6,
        "paths": {"senders": ["head.0.*", "mlp_out.0"], "receivers": ["head_v.1.*", "resid_post.last"]},
        "positions": ["factor", "last"],
        "method": "attribution",
        "verify_top": 4,
    }

    def experiment(shard_units: int) -> Experiment:
        data = yaml.safe_load(example.read_text())
        for key in ("evidence", "hypotheses", "fairness"):
            data.pop(key)
        data.update(
            mediation=[sweep],
            sampling={"units": 12, "seed": 3},
            inference={"bootstrap": 200},
            executor={"shard_units": shard_units},
        )
        return compile_config(parse_config(data), base_dir=example.parent)

    whole = run_experiment(experiment(2), out_dir=tmp_path / "whole")
    one_block = run_experiment(experiment(64), out_dir=tmp_path / "one")
    killed = tmp_path / "killed"
    stored = _killed_run(experiment(2), killed, 2)
    assert len(stored) == 2
    computed.clear()
    resumed = run_experiment(experiment(2), out_dir=killed, resume=True)
    assert resumed.manifest["mediation"][0]["shards"] == {"stored": 6, "reused": 2} and len(computed) == 4
    assert resumed.manifest["mediation"][0]["verified"] == 4
    pd.testing.assert_frame_equal(
        pd.read_parquet(killed / "mediation.parquet"), pd.read_parquet(whole.folder / "mediation.parquet")
    )
    # In blocks or as one, the same edges are verified with the same exact path effects (float32 batches aside).
    exact = [
        frame[frame["method"] == "t"].reset_index(drop=True)
        for frame in (pd.read_parquet(folder / "mediation.parquet") for folder in (killed, one_block.folder))
    ]
    keys = ["site", "receiver", "position", "effect"]
    pd.testing.assert_frame_equal(exact[0][keys], exact[1][keys])
    np.testing.assert_allclose(exact[0]["estimate"], exact[1]["estimate"], rtol=0, atol=1e-5)
