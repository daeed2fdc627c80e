"""Verify a run folder: its files against their checksums, its model against its fingerprint, a sample of its outcomes.

Stage: pipeline. May import every stage.

An auditor handed a run folder can check that it is what it says: every file as the run
wrote it, the model named by its config still the one it measured, and stored outcomes
reproduced by that model. Tampering with a table (even with its checksum updated) or a
nondeterministic model shows up as a difference between stored and re-evaluated outcomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.config import load_experiment
from experiments.errors import RunFolderError
from experiments.run import Progress, counting, load_model, read_outcomes, stage
from experiments.run._checksums import checksum_problems, read_manifest
from experiments.run._shards import shard_paths
from interventions import Generation, evaluate_outcomes

TOLERANCE = 1e-4
"""Largest difference between a stored and a re-evaluated outcome that counts as equal, for float32 or float64 weights.

The same weights read the same text to within float32 rounding whatever the batch, padding,
prefix sharing or device: 2e-6 on the demo model's outcomes (up to 2), measured between two
batchings; a tampered value, other weights or a nondeterministic model differ by far more.
"""

HALF_TOLERANCES = {"float16": 5e-2, "bfloat16": 0.25}
"""Tolerances for runs in half precision, whose rounding grows with the value: measured between two batchings
of the demo model, 4e-3 in float16 and 3e-2 in bfloat16 on outcomes up to 2; these allow outcomes up to about 10."""


@dataclass(frozen=True)
class Verification:
    """What `verify_run` found in one run folder; `ok` when every check passed.

    `problems` holds every checksum problem and anything else that keeps the folder from
    being vouched for; `max_abs_difference` is the largest |stored - re-evaluated| over the
    `checked_outcomes` sampled (unit, arm) rows, at `worst`; `tolerance` is `TOLERANCE`
    (1e-4) unless the run's weights were in half precision.
    """

    folder: Path
    checked_files: int
    checksums_ok: bool
    problems: tuple[str, ...]
    fingerprint_matches: bool
    stored_fingerprint: str | None
    current_fingerprint: str
    checked_outcomes: int
    stored_outcomes: int
    max_abs_difference: float
    worst: str | None
    tolerance: float

    @property
    def ok(self) -> bool:
        """No problem, the same model, and every re-evaluated outcome within `tolerance` of the stored one."""
        return not self.problems and self.fingerprint_matches and self.max_abs_difference <= self.tolerance

    def summary(self) -> str:
        """Plain text, one line per finding, the verdict last."""
        lines = [f"run folder: {self.folder}"]
        if self.checksums_ok:
            lines.append(f"checksums: all {self.checked_files} listed files match")
        else:
            lines.append(f"checksums: problems (below) among {self.checked_files} listed files")
        if self.fingerprint_matches:
            lines.append(f"model fingerprint: matches the manifest ({self.current_fingerprint[:16]}…)")
        else:
            lines.append(
                f"model fingerprint: DIFFERS: the manifest says {self.stored_fingerprint}, "
                f"the model loaded now is {self.current_fingerprint}"
            )
        if self.checked_outcomes:
            where = f" ({self.worst})" if self.worst else ""
            lines.append(
                f"outcomes: re-evaluated {self.checked_outcomes} of {self.stored_outcomes} stored values "
                f"(unit, arm, outcome read from logits); largest difference {self.max_abs_difference:.3g}{where}; "
                f"tolerance {self.tolerance:g}"
            )
        lines += [f"problem: {problem}" for problem in self.problems]
        lines.append("verdict: ok" if self.ok else "verdict: NOT OK")
        return "\n".join(lines)


def verify_run(folder: Path, *, sample: int = 20, seed: int = 0, progress: Progress | None = None) -> Verification:
    """Check a run folder's checksums, load its model, and re-evaluate a seeded sample of its stored outcomes.

    The model is resolved as a run resolves it (a built-in one from its packaged folder);
    documents are read with the config's `data.suffix`, as the documents front reads them.
    Outcomes come from outcomes.parquet, or the shards of an unfinished run; the sample is
    drawn from the values read from logits (a generated answer is drawn at random and is
    not decoded again). RunFolderError when `folder` is not a run folder; ValueError when
    `sample` is below 1.
    """
    if sample < 1:
        raise ValueError(
            f"sample (--sample) must be at least 1, got {sample}: verification re-evaluates stored outcomes"
        )
    manifest = read_manifest(folder)
    if not (folder / "config.yaml").is_file():
        raise RunFolderError(f"{str(folder)!r} is not a run folder: it holds no config.yaml")
    try:
        checked_files, checksums = checksum_problems(folder)
    except RunFolderError as error:
        checked_files, checksums = 0, [str(error)]
    problems = list(checksums)
    if manifest.get("status") != "complete":
        problems.append(
            f"the run is not complete (manifest status {manifest.get('status')!r}); its results are not final"
        )

    experiment = load_experiment(folder / "config.yaml")
    adapter, record = load_model(experiment)
    readers = {name: reader for name, reader in experiment.readers.items() if not isinstance(reader, Generation)}
    stored = _stored_outcomes(folder)
    stored = stored[stored["outcome"].isin(list(readers))]
    if stored.empty:
        problems.append("the folder holds no stored outcomes to re-evaluate (no outcomes.parquet and no shards)")
        chosen = stored
    else:
        rows = np.random.default_rng(seed).choice(len(stored), size=min(sample, len(stored)), replace=False)
        chosen = stored.iloc[np.sort(rows)]
    suffix = "" if experiment.data is None else experiment.data.config.suffix
    texts = [text + suffix for text in chosen["text"]]
    names = chosen["outcome"].to_numpy()
    distinct = len(set(zip(names, texts, strict=True)))
    advance = counting(stage(progress, "re-evaluating stored outcomes"), distinct)
    current = np.empty(len(texts))
    for name in dict.fromkeys(names):
        rows = np.flatnonzero(names == name)
        current[rows] = evaluate_outcomes(
            adapter,
            [texts[row] for row in rows],
            readers[name],
            batch_size=experiment.config.model.batch_size,
            progress=advance,
        )
    differences = _differences(chosen["value"].to_numpy(dtype=float), current)
    worst = int(np.argmax(differences)) if len(differences) else None
    dtype = manifest.get("dtype", record["dtype"])
    return Verification(
        folder=folder,
        checked_files=checked_files,
        checksums_ok=not checksums,
        problems=tuple(problems),
        fingerprint_matches=manifest.get("model_fingerprint") == record["model_fingerprint"],
        stored_fingerprint=manifest.get("model_fingerprint"),
        current_fingerprint=record["model_fingerprint"],
        checked_outcomes=len(chosen),
        stored_outcomes=len(stored),
        max_abs_difference=0.0 if worst is None else float(differences[worst]),
        worst=None
        if worst is None
        else f"unit {chosen['unit_id'].iloc[worst]}, {chosen['arm'].iloc[worst]}, {chosen['outcome'].iloc[worst]}",
        tolerance=HALF_TOLERANCES.get(dtype, TOLERANCE),
    )


def _stored_outcomes(folder: Path) -> pd.DataFrame:
    """outcomes.parquet (keyed by unit_id), else the shards of an unfinished run, else an empty frame."""
    if (folder / "outcomes.parquet").is_file():
        return read_outcomes(folder)
    shards = shard_paths(folder)
    if not shards:
        return pd.DataFrame({"unit_id": [], "arm": [], "text": [], "outcome": [], "value": []})
    return pd.concat([pd.read_parquet(path) for path in shards], ignore_index=True)


def _differences(stored: np.ndarray, current: np.ndarray) -> np.ndarray:
    """|stored - current|; 0 where both are NaN (an undefined outcome reproduced), inf where only one is."""
    both = np.isnan(stored) & np.isnan(current)
    difference = np.abs(stored - current)
    difference[both] = 0.0
    return np.where(np.isnan(difference), math.inf, difference)
