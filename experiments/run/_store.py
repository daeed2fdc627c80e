"""The run folder: resolved config, manifest, Parquet and CSV tables, summary.

Stage: run. May import experiments.errors and the config stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import yaml

from experiments.config import ExperimentConfig, parse_config
from experiments.errors import ConfigError, RunError

TRACKED_PACKAGES = (
    "paribus",
    "torch",
    "transformers",
    "tokenizers",
    "dowhy",
    "networkx",
    "numpy",
    "pandas",
    "statsmodels",
    "scipy",
    "pydantic",
    "pyarrow",
)


def config_hash(config: ExperimentConfig) -> str:
    """sha256 of the resolved config in compact JSON: equal configs, equal hashes.

    Mapping order is kept, not sorted: the order of a factor's values decides which value a
    unit's noise picks and which value a contrast is taken against.
    """
    canonical = json.dumps(config.model_dump(mode="json"), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on."""
    versions: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


RESULT_NEUTRAL_FIELDS = ("name", "inference", "executor", "model.batch_size", "mediation", "evidence")
"""Config fields a resumed run may change: they do not touch the stored outcome shards
(intervals, tests and patching are recomputed from them; batching and workers give the same outcomes)."""


def config_differences(stored: ExperimentConfig, current: ExperimentConfig) -> list[tuple[str, Any, Any]]:
    """(YAML path, stored value, current value) of every leaf that differs, in path order.

    A mapping whose keys were reordered differs at "PATH (key order)": the order of a
    factor's values changes which value each unit's noise picks.
    """
    before, after = _leaves(stored.model_dump(mode="json")), _leaves(current.model_dump(mode="json"))
    missing = object()
    return [
        (path, before.get(path), after.get(path))
        for path in sorted(set(before) | set(after))
        if before.get(path, missing) != after.get(path, missing)
    ]


def _leaves(data: Any, path: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        return {f"{path or '<config>'} (key order)": list(data)} | {
            key: value
            for name, item in data.items()
            for key, value in _leaves(item, f"{path}.{name}" if path else str(name)).items()
        }
    if isinstance(data, list) and data:
        return {
            key: value for index, item in enumerate(data) for key, value in _leaves(item, f"{path}[{index}]").items()
        }
    return {path: data}


def _result_neutral(path: str) -> bool:
    return any(
        path == field or path.startswith((f"{field}.", f"{field}[", f"{field} ")) for field in RESULT_NEUTRAL_FIELDS
    )


class RunStore:
    """Writes one run's files without overwriting a result.

    An empty or new folder starts a run. A folder holding an unfinished run (status running
    or failed) of the same config, up to `RESULT_NEUTRAL_FIELDS`, is resumed: `previous`
    holds its manifest and the fields that changed. Anything else already there is refused,
    a config that changes results with the list of fields that differ.
    """

    def __init__(self, folder: Path, config: ExperimentConfig, *, resume: bool = False) -> None:
        self.folder = folder
        self.previous = self._previous_run(config, resume)
        folder.mkdir(parents=True, exist_ok=True)

    def _previous_run(self, config: ExperimentConfig, resume: bool) -> dict[str, Any] | None:
        folder = self.folder
        if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
            if resume:
                raise RunError(
                    f"--resume: {str(folder)!r} holds no run to resume; give the folder of an unfinished run"
                )
            return None
        manifest_path, config_path = folder / "manifest.json", folder / "config.yaml"
        if not (manifest_path.is_file() and config_path.is_file()):
            raise RunError(f"run folder {str(folder)!r} already exists and is not empty; choose another --out")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("status") == "complete":
            raise RunError(
                f"run folder {str(folder)!r} already exists and is not empty: it holds a complete run; "
                "choose another --out"
            )
        stored = parse_config(yaml.safe_load(config_path.read_text(encoding="utf-8")))
        changed = config_differences(stored, config)
        breaking = [f"{path} ({before!r} -> {after!r})" for path, before, after in changed if not _result_neutral(path)]
        if breaking:
            raise ConfigError(
                f"run folder {str(folder)!r} holds an unfinished run of another config; these fields differ and "
                f"change its results: {'; '.join(breaking)}. Resume with the folder's config.yaml, or choose another --out"
            )
        return {"manifest": manifest, "changed": [path for path, _, _ in changed]}

    def write_config(self, config: ExperimentConfig) -> None:
        text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        self.write_text("config.yaml", text)

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        self.write_text("manifest.json", json.dumps(manifest, indent=2) + "\n")

    def write_table(self, name: str, frame: pd.DataFrame) -> Path:
        if name.endswith(".csv"):
            return atomic_write(self.folder / name, lambda handle: frame.to_csv(handle, index=False))
        return atomic_write(self.folder / name, lambda handle: frame.to_parquet(handle, index=False))

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write(self.folder / name, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Write `path` whole or not at all: into a hidden temporary file, synced, then renamed over `path`.

    A run killed mid-write leaves the old file (or none) and a `.NAME.tmp` leftover, never half a file.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def base_manifest(config: ExperimentConfig, *, command: list[str] | None = None) -> dict[str, Any]:
    """The manifest fields known before the model is loaded."""
    return {
        "status": "running",
        "name": config.name,
        "config_hash": config_hash(config),
        "seed": config.sampling.seed,
        "sampling_mode": config.sampling.mode,
        "started_at": utc_now(),
        "finished_at": None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "command": command,
    }


def read_outcomes(folder: Path) -> pd.DataFrame:
    """A run folder's outcomes.parquet keyed by `unit_id` (a data-mode run's units are its documents, `doc_id`)."""
    return pd.read_parquet(folder / "outcomes.parquet").rename(columns={"doc_id": "unit_id"})
