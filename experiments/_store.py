"""The run folder: resolved config, manifest, Parquet and CSV tables, summary."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from experiments._config import ExperimentConfig
from experiments.errors import RunError

TRACKED_PACKAGES = (
    "paribus", "torch", "transformers", "tokenizers", "dowhy", "networkx",
    "numpy", "pandas", "statsmodels", "scipy", "pydantic", "pyarrow",
)


def config_hash(config: ExperimentConfig) -> str:
    """sha256 of the resolved config in canonical JSON: equal configs, equal hashes."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
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


class RunStore:
    """Writes one run's files; refuses a folder that already holds something, so no result is overwritten."""

    def __init__(self, folder: Path) -> None:
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise RunError(f"run folder {str(folder)!r} already exists and is not empty; choose another --out")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder

    def write_config(self, config: ExperimentConfig) -> None:
        text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        (self.folder / "config.yaml").write_text(text, encoding="utf-8")

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        (self.folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    def write_table(self, name: str, frame: pd.DataFrame) -> Path:
        path = self.folder / name
        if name.endswith(".csv"):
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.write_text(text, encoding="utf-8")
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
