"""scripts/diff_run_folders.py: two runs that differ only in times and command match; any other change is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from scripts.diff_run_folders import differences, main

REPORT = (
    "<p>model <code>m</code>, report built {built}</p>\n"
    "<tr><th>started</th><td><code>{started}</code></td></tr>\n"
    "<tr><th>seconds</th><td><code>{seconds}</code></td></tr>\n"
    "<tr><th>command</th><td><code>{command}</code></td></tr>\n"
)


def _run(folder: Path, *, started: str, seconds: float, command: list[str]) -> Path:
    folder.mkdir()
    manifest = {
        "status": "complete",
        "config_hash": "abc",
        "started_at": started,
        "finished_at": started,
        "seconds": seconds,
        "command": command,
        "resumes": [{"at": started, "changed_fields": []}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    report = REPORT.format(built=started, started=started, seconds=seconds, command=" ".join(command))
    (folder / "report.html").write_text(report, encoding="utf-8")
    pd.DataFrame({"unit_id": [0, 1], "outcome": [0.25, -1.5]}).to_parquet(folder / "outcomes.parquet")
    return folder


def test_times_and_command_are_the_only_things_ignored(tmp_path):
    a = _run(tmp_path / "a", started="2026-01-01T00:00:00+00:00", seconds=3.5, command=["paribus", "run", "x"])
    b = _run(tmp_path / "b", started="2026-02-02T10:00:00+00:00", seconds=9.25, command=["-c", "run", "y"])
    assert differences(a, b) == []
    assert main([str(a), str(b)]) == 0


def test_a_changed_table_manifest_field_or_file_set_is_named(tmp_path, capsys):
    a = _run(tmp_path / "a", started="2026-01-01T00:00:00+00:00", seconds=3.5, command=["paribus"])
    b = tmp_path / "b"
    shutil.copytree(a, b)
    pd.DataFrame({"unit_id": [0, 1], "outcome": [0.25, -1.4999999]}).to_parquet(b / "outcomes.parquet")
    manifest = json.loads((b / "manifest.json").read_text(encoding="utf-8"))
    manifest["config_hash"] = "abd"
    (b / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (b / "extra.csv").write_text("x\n1\n", encoding="utf-8")
    (b / "report.html").write_text((a / "report.html").read_text(encoding="utf-8") + "<p>new</p>", encoding="utf-8")
    assert differences(a, b) == [
        f"only in {b}: extra.csv",
        "contents differ: manifest.json",
        "contents differ: outcomes.parquet",
        "contents differ: report.html",
    ]
    assert main([str(a), str(b)]) == 1
    assert "differ: 4 difference(s)" in capsys.readouterr().out


def test_a_folder_that_is_not_a_run_exits_2(tmp_path):
    a = _run(tmp_path / "a", started="2026-01-01T00:00:00+00:00", seconds=1.0, command=[])
    (tmp_path / "empty").mkdir()
    assert main([str(a), str(tmp_path / "empty")]) == 2
    assert main([str(a)]) == 2
