"""Compare two run folders file by file, ignoring only what differs between any two runs: times and the command.

    python scripts/diff_run_folders.py RUN_A RUN_B

Prints one line per difference and exits 1 when there is any, 0 when the folders hold the
same files with the same contents. Every file is compared byte for byte except
`manifest.json` (compared as JSON, key order included, without its timestamps, duration
and command line) and `report.html` (compared with those same values masked), so a
refactoring that should not change behaviour can be checked on real runs.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

VOLATILE_MANIFEST_FIELDS = ("started_at", "finished_at", "seconds", "command")
VOLATILE_RESUME_FIELDS = ("at", "previous_started_at")
_REPORT_MASKS = (
    re.compile(r"(<th>(?:started|finished|seconds|command)</th><td><code>)[^<]*(</code>)"),
    re.compile(r"(report built )[^<]*()"),
)


def _manifest(path: Path) -> str:
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for field in VOLATILE_MANIFEST_FIELDS:
        manifest.pop(field, None)
    for resume in manifest.get("resumes", []):
        for field in VOLATILE_RESUME_FIELDS:
            resume.pop(field, None)
    return json.dumps(manifest, indent=1)


def _report(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    for mask in _REPORT_MASKS:
        text = mask.sub(r"\1…\2", text)
    return text


def _comparable(path: Path) -> bytes | str:
    if path.name == "manifest.json":
        return _manifest(path)
    if path.name == "report.html":
        return _report(path)
    return path.read_bytes()


def differences(run_a: Path, run_b: Path) -> list[str]:
    """What differs between two run folders, one line per file (empty when they match)."""
    files_a = {path.relative_to(run_a) for path in run_a.rglob("*") if path.is_file()}
    files_b = {path.relative_to(run_b) for path in run_b.rglob("*") if path.is_file()}
    found = [f"only in {run_a}: {name}" for name in sorted(files_a - files_b)]
    found += [f"only in {run_b}: {name}" for name in sorted(files_b - files_a)]
    found += [
        f"contents differ: {name}"
        for name in sorted(files_a & files_b)
        if _comparable(run_a / name) != _comparable(run_b / name)
    ]
    return found


def main(arguments: list[str]) -> int:
    if len(arguments) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    run_a, run_b = (Path(argument) for argument in arguments)
    for folder in (run_a, run_b):
        if not (folder / "manifest.json").is_file():
            print(f"{folder} is not a run folder (no manifest.json)", file=sys.stderr)
            return 2
    found = differences(run_a, run_b)
    for line in found:
        print(line)
    count = len({path for path in run_a.rglob("*") if path.is_file()})
    print(f"{'differ' if found else 'same'}: {len(found)} difference(s) over {count} file(s) of {run_a}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
