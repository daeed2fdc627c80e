"""Checksums of a run folder: the sha256 of every file the run wrote, kept in manifest.json under "checksums".

Stage: run. May import experiments.errors and the run folder's lock.

They make a run folder tamper-evident: a file changed, removed or added after the run
wrote the folder shows up in `checksum_problems`. Not listed: manifest.json itself (it
holds the list), report.html (`paribus report` rebuilds it) and the lock file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from experiments.errors import RunFolderError
from experiments.run._lock import LOCK_NAME

UNLISTED = ("manifest.json", "report.html", LOCK_NAME)
"""Files of a run folder that its checksums do not cover."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict:
    """A run folder's manifest.json; RunFolderError when the folder holds none, or one that is not JSON."""
    path = folder / "manifest.json"
    if not path.is_file():
        raise RunFolderError(
            f"{str(folder)!r} is not a run folder: it holds no manifest.json; give a folder written by `paribus run`"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise RunFolderError(f"run folder {str(folder)!r}: manifest.json is not valid JSON ({error})") from None


def recorded_checksums(folder: Path, manifest: Mapping) -> dict[str, str]:
    """The manifest's checksums; RunFolderError when it keeps none."""
    checksums = manifest.get("checksums")
    if not isinstance(checksums, dict):
        raise RunFolderError(
            f"run folder {str(folder)!r}: manifest.json holds no checksums (the folder was written before "
            "checksums were kept, or they were removed), so nothing vouches for its files; "
            "rerun the experiment into a new folder"
        )
    return checksums


def file_problem(folder: Path, name: str, checksums: Mapping[str, str]) -> str | None:
    """What is wrong with one listed file (missing, or changed since the run wrote it), or None."""
    path = folder / name
    if not path.is_file():
        return f"{name} is listed in manifest.json but missing; restore it or rerun the experiment into a new folder"
    found = sha256_file(path)
    if found != checksums[name]:
        return (
            f"{name} changed since the run wrote it (sha256 {checksums[name][:12]}… recorded, {found[:12]}… now); "
            "restore the original or rerun the experiment into a new folder"
        )
    return None


def checksum_problems(folder: Path) -> tuple[int, list[str]]:
    """How many listed files were checked, and every changed, missing or unlisted file (one line each).

    RunFolderError when `folder` is not a run folder or its manifest keeps no checksums.
    """
    checksums = recorded_checksums(folder, read_manifest(folder))
    problems = [problem for name in sorted(checksums) if (problem := file_problem(folder, name, checksums))]
    present = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and path.relative_to(folder).as_posix() not in UNLISTED
    )
    problems += [
        f"{name} is not listed in manifest.json: the run did not write it (or was killed before listing it); "
        "remove it if it is not part of the run"
        for name in present
        if name not in checksums
    ]
    return len(checksums), problems


def verify_checksums(folder: Path) -> None:
    """Check every file of a run folder against manifest.json's checksums.

    RunFolderError naming the first file that changed, is missing or is not listed, and what
    to do; also when the folder is not a run or was written before checksums were kept.
    """
    _, problems = checksum_problems(folder)
    if problems:
        raise RunFolderError(f"run folder {str(folder)!r} is not as its run left it: {problems[0]}")
