"""The run folder: resolved config, manifest, Parquet and CSV tables, summary; its lock and checksums.

Stage: run. May import experiments.errors, the config stage and the run folder's lock, checksums and CSV cells.

`RunStore` is the one writer of a run folder: it locks the folder, lists every file it
writes with its sha256 in the manifest, writes CSVs safe for spreadsheets (`_csv_cells`), and
decides whether an existing folder may be resumed (same config up to result-neutral
fields, unchanged shards, same model, Paribus version and outcome definition).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import yaml

from experiments.config import ExperimentConfig, parse_config
from experiments.errors import ConfigError, RunFolderError
from experiments.run._checksums import file_problem, read_manifest, recorded_checksums, sha256_file
from experiments.run._csv_cells import write_csv
from experiments.run._lock import LOCK_NAME, FolderLock, LockHolder, acquire_lock

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


@dataclass(frozen=True)
class PreviousRun:
    """The unfinished run a RunStore resumes: its manifest, the config fields that changed, and its shards.

    `shards` are the stored shards whose checksums match (reused); `untrusted_shards` were
    present but not listed in the manifest (a run killed between writing a shard and listing
    it) and were removed, to be computed again; `missing_shards` were listed but gone.
    """

    manifest: dict[str, Any]
    changed: tuple[str, ...]
    shards: tuple[str, ...]
    untrusted_shards: tuple[str, ...]
    missing_shards: tuple[str, ...]

    def provenance(self) -> dict[str, Any]:
        """The stored manifest's provenance fields, which a resumed run keeps until its own are checked against them.

        So an attempt that is refused, or killed while loading the model, never overwrites
        what the stored shards were made with.
        """
        return {
            key: self.manifest[key]
            for key in ("packages", "model_fingerprint", "outcome_definitions")
            if key in self.manifest
        }

    def record(self, at: str) -> dict[str, Any]:
        """The manifest's record of this resume."""
        return {
            "at": at,
            "previous_started_at": self.manifest.get("started_at"),
            "previous_status": self.manifest.get("status"),
            "changed_fields": list(self.changed),
            "untrusted_shards_removed": list(self.untrusted_shards),
            "missing_shards": list(self.missing_shards),
        }


PROVENANCE: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "model_fingerprint": lambda manifest: manifest.get("model_fingerprint"),
    "packages.paribus": lambda manifest: (manifest.get("packages") or {}).get("paribus"),
    "outcome_definitions": lambda manifest: manifest.get("outcome_definitions"),
}
"""Manifest fields a resumed run must share with the stored one: the weights and tokenizer, Paribus, the outcomes read."""


class RunStore:
    """Writes one run's files without overwriting a result, as the folder's only writer, keeping their checksums.

    An empty or new folder starts a run. A folder holding an unfinished run (status running
    or failed) of the same config, up to `RESULT_NEUTRAL_FIELDS`, is resumed: `previous`
    describes it. Anything else already there is refused, a config that changes results
    with the list of fields that differ. The folder is locked (`experiments.run._lock`)
    until `close`; every file written is listed with its sha256 in the manifest's
    "checksums", and the manifest is rewritten as each file is listed, so a run killed at
    any moment leaves a manifest that vouches for every file it lists.
    """

    def __init__(self, folder: Path, config: ExperimentConfig, *, resume: bool = False) -> None:
        self.folder = folder
        self.checksums: dict[str, str] = {}
        self._manifest: Mapping[str, Any] | None = None
        if resume and not folder.is_dir():
            raise _nothing_to_resume(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"cannot create run folder {str(folder)!r}: {error}; choose another --out") from None
        self.lock: FolderLock | None = acquire_lock(folder)
        try:
            self.previous = self._previous_run(config, resume)
        except BaseException:
            self.close()
            raise

    @property
    def lock_taken_over(self) -> LockHolder | None:
        """The dead process whose stale lock this store took over, if any."""
        return None if self.lock is None else self.lock.taken_over

    def close(self) -> None:
        """Release the folder's lock (the run ended, complete or not)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _previous_run(self, config: ExperimentConfig, resume: bool) -> PreviousRun | None:
        folder = self.folder
        if not any(path.name != LOCK_NAME for path in folder.iterdir()):
            if resume:
                raise _nothing_to_resume(folder)
            return None
        manifest_path, config_path = folder / "manifest.json", folder / "config.yaml"
        if not (manifest_path.is_file() and config_path.is_file()):
            raise RunFolderError(f"run folder {str(folder)!r} already exists and is not empty; choose another --out")
        manifest = read_manifest(folder)
        if manifest.get("status") == "complete":
            raise RunFolderError(
                f"run folder {str(folder)!r} already exists and is not empty: it holds a complete run; "
                "choose another --out"
            )
        checksums = recorded_checksums(folder, manifest)
        problem = (
            file_problem(folder, "config.yaml", checksums)
            if "config.yaml" in checksums
            else "config.yaml is not listed in manifest.json; restore the manifest or start a new run folder"
        )
        if problem:
            raise RunFolderError(f"run folder {str(folder)!r} cannot be resumed: {problem}")
        stored = parse_config(yaml.safe_load(config_path.read_text(encoding="utf-8")))
        changed = config_differences(stored, config)
        breaking = [f"{path} ({before!r} -> {after!r})" for path, before, after in changed if not _result_neutral(path)]
        if breaking:
            raise ConfigError(
                f"run folder {str(folder)!r} holds an unfinished run of another config; these fields differ and "
                f"change its results: {'; '.join(breaking)}. Resume with the folder's config.yaml, or choose another --out"
            )
        previous = self._stored_shards(manifest, checksums, tuple(path for path, _, _ in changed))
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink()
        return previous

    def _stored_shards(
        self, manifest: dict[str, Any], checksums: Mapping[str, str], changed: tuple[str, ...]
    ) -> PreviousRun:
        """Sort the stored shards (outcomes and patching blocks) into trusted, untrusted (removed) and missing;
        keep the checksums of trusted files.

        RunFolderError when a listed shard changed: its results would be reused.
        """
        present = {f"shards/{path.name}": path for path in sorted((self.folder / "shards").glob("*.parquet"))}
        listed = [name for name in present if name in checksums]
        for name in listed:
            problem = file_problem(self.folder, name, checksums)
            if problem:
                raise RunFolderError(
                    f"run folder {str(self.folder)!r} cannot be resumed: {problem}. Its results cannot be "
                    "trusted, so no stored shard was used"
                )
        untrusted = [name for name in present if name not in checksums]
        for name in untrusted:
            present[name].unlink()
        self.checksums = {
            name: digest
            for name, digest in checksums.items()
            if name in listed or (not name.startswith("shards/") and file_problem(self.folder, name, checksums) is None)
        }
        missing = [name for name in checksums if name.startswith("shards/") and name not in present]
        return PreviousRun(manifest, changed, tuple(listed), tuple(untrusted), tuple(missing))

    def check_provenance(self, current: Mapping[str, Any]) -> None:
        """Refuse to resume a run made with other weights, tokenizer, Paribus version or outcome definition.

        `current` holds this run's `PROVENANCE` fields (as the manifest will). Called after the
        model is loaded and before a stored shard is reused; each change is listed as
        `field (stored -> current)`. A field the stored manifest lacks (a run stopped before
        its model loaded) counts only when stored shards would be reused.
        """
        if self.previous is None:
            return
        stored = self.previous.manifest
        changes = [
            f"{field} ({read(stored)!r} -> {read(current)!r})"
            for field, read in PROVENANCE.items()
            if read(stored) != read(current) and (read(stored) is not None or self.previous.shards)
        ]
        if changes:
            raise RunFolderError(
                f"run folder {str(self.folder)!r} holds an unfinished run made with another model, Paribus version "
                f"or outcome; these differ: {'; '.join(changes)}. None of its {len(self.previous.shards)} stored "
                "shards was used; resume with the model and Paribus version it was run with, or choose another --out"
            )

    def write_config(self, config: ExperimentConfig) -> None:
        text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        self.write_text("config.yaml", text)

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Write manifest.json: `manifest` and the checksums of every file listed so far.

        The store keeps `manifest` and writes it again (as it then is) whenever a file is listed.
        """
        self._manifest = manifest
        self._write_manifest()

    def _write_manifest(self) -> None:
        if self._manifest is None:
            return
        text = json.dumps({**self._manifest, "checksums": dict(sorted(self.checksums.items()))}, indent=2) + "\n"
        atomic_write(self.folder / "manifest.json", lambda handle: handle.write(text.encode("utf-8")))

    def record(self, path: Path) -> None:
        """List a file the run wrote into the folder (e.g. a figure) with its sha256, and rewrite the manifest."""
        self.checksums[path.relative_to(self.folder).as_posix()] = sha256_file(path)
        self._write_manifest()

    def write_table(self, name: str, frame: pd.DataFrame) -> Path:
        """Parquet, or CSV with spreadsheet formulas neutralised (`write_csv`; `read_table` undoes it)."""
        if name.endswith(".csv"):
            path = atomic_write(self.folder / name, lambda handle: write_csv(frame, handle))
        else:
            path = atomic_write(self.folder / name, lambda handle: frame.to_parquet(handle, index=False))
        self.record(path)
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = atomic_write(self.folder / name, lambda handle: handle.write(text.encode("utf-8")))
        self.record(path)
        return path

    def discard_shards(self) -> None:
        """Remove a finished run's shards and their checksums: outcomes.parquet and mediation.parquet hold their results."""
        shutil.rmtree(self.folder / "shards", ignore_errors=True)
        self.checksums = {name: digest for name, digest in self.checksums.items() if not name.startswith("shards/")}
        self._write_manifest()


def _nothing_to_resume(folder: Path) -> RunFolderError:
    return RunFolderError(f"--resume: {str(folder)!r} holds no run to resume; give the folder of an unfinished run")


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
