"""report.html: built from the run folder alone, self-contained, escaped, redactable, and shaped by the folder's files.

A tiny untrained BERT classifier (seconds, exact mode) is stored under a path containing
`<script>alert(1)</script>`, and one factor has that text as a surface form, so both a model
path and a factor form flow through the whole run into the report.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import compile_config, parse_config, run_experiment
from experiments.errors import RunFolderError
from experiments.report._html import _FINDING, _NEGLIGIBLE, _UNSETTLED, _intervals, redact, render_report
from experiments.run._checksums import UNLISTED, sha256_file
from tests.experiments._tiny_runs import save_tiny_classifier

ROOT = Path(__file__).resolve().parents[2]
INJECTION = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SUMMARY_ESCAPED = "&lt;script>alert(1)&lt;/script>"  # summary.md escapes only what could open markup
MARKUP = "<img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT with random weights, saved in a folder whose path holds the injection string."""
    return save_tiny_classifier(tmp_path_factory.mktemp("models") / INJECTION)


def config(model: Path) -> dict:
    return {
        "name": "injection",
        "model": {"id": str(model), "task": "sequence-classifier", "device": "cpu"},
        "outcome": {"type": "class_prob", "label": "yes"},
        "prompt": {"template": "A {sex} with {insurance} insurance. " + MARKUP + " Refer?"},
        "factors": {
            "sex": {"values": {"female": ["woman", INJECTION], "male": ["man"]}},
            "insurance": {"values": {"private": ["private"], "$\\frac{$": ["no"]}},  # not mathtext
        },
        "graph": {"edges": ["sex -> decision", "insurance -> decision"]},
        "effects": [{"treatment": "insurance", "moderators": ["sex"]}, {"treatment": "sex"}],
        "evidence": {"methods": ["attention", "gradient_x_input"], "units": 6, "token_view_units": 2},
        "hypotheses": [
            {"id": "H1", "claim": f"insurance {INJECTION} matters", "effect": "insurance[*]", "equivalence": 0.5}
        ],
        "fairness": {"protected": ["sex"], "threshold": 0.5},
        "sampling": {"mode": "exact"},
    }


@pytest.fixture(scope="module")
def run_folder(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / "run"
    run_experiment(compile_config(parse_config(config(model_path))), out_dir=folder)
    return folder


class _Outline(HTMLParser):
    """Section ids in document order, img sources and rows of each table with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.rows: dict[str, int] = {}
        self.tags: set[str] = set()
        self._table: str | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(str(attributes.get("id")))
        elif tag == "img":
            self.images.append(str(attributes.get("src")))
        elif tag == "table":
            self._table = attributes.get("id")
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table and self._in_body:
            self.rows[self._table] = self.rows.get(self._table, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "tbody":
            self._in_body = False


def outline(html: str) -> _Outline:
    parser = _Outline()
    parser.feed(html)
    return parser


def test_run_writes_a_report_with_verdicts_first(run_folder: Path) -> None:
    page = outline((run_folder / "report.html").read_text())
    assert page.sections == [
        "verdicts",
        "graph",
        "effects",
        "cate",
        "evidence",
        "examples",
        "fairness",
        "surrogate",
        "manifest",
    ]
    effects = pd.read_csv(run_folder / "effects.csv")
    assert page.rows["effects-table"] == len(effects)
    assert page.rows["verdict-table"] == len(pd.read_csv(run_folder / "hypotheses.csv")) == 1
    assert page.rows["fairness-table"] == len(pd.read_csv(run_folder / "fairness.csv"))


def test_report_is_self_contained(run_folder: Path) -> None:
    html = (run_folder / "report.html").read_text()
    page = outline(html)
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert page.images
    for source in page.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.removeprefix("data:image/png;base64,"))[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)


def test_injected_model_path_and_surface_form_appear_escaped(run_folder: Path, model_path: Path) -> None:
    html = (run_folder / "report.html").read_text()
    assert INJECTION not in html and "<script" not in html.lower()
    assert ESCAPED + "/config.json" not in html
    assert str(model_path).replace("<", "&lt;").replace(">", "&gt;") in html  # the manifest's model path
    assert f"- {ESCAPED}\n" in html  # the resolved config
    assert "&gt;</span>" in html and "&lt;</span>" in html  # the token views
    assert "<img src=x" not in html
    examples = re.findall(r'<td class="example-text">(.*?)</td>', html)
    assert examples and all("&lt;img src=x onerror=alert(2)&gt;" in text for text in examples)
    assert f"insurance {ESCAPED} matters" in html  # a hypothesis claim
    summary = (run_folder / "summary.md").read_text()
    assert re.search(r"<[A-Za-z/!?]", summary) is None  # no tag or comment can open
    assert f"/{SUMMARY_ESCAPED}` (fingerprint" in summary  # the model
    assert f"| insurance {SUMMARY_ESCAPED} matters |" in summary  # a hypothesis claim


def test_redacted_report_shows_hashes_instead_of_texts(run_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "redacted"
    shutil.copytree(run_folder, folder)
    (folder / "report.html").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "report", str(folder), "--redact-texts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert f"report: {folder / 'report.html'}" in done.stdout
    html = (folder / "report.html").read_text()
    texts = set(pd.read_parquet(folder / "outcomes.parquet")["text"])
    escaped = {text.replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;") for text in texts}
    assert not any(text in html for text in texts | escaped)
    assert 'id="redaction-notice"' in html
    shown = re.findall(r'<td class="example-text">(sha256:[0-9a-f]{12})</td>', html)
    assert shown and set(shown) <= {redact(text) for text in texts}
    assert redact("abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()[:12]
    tokens = pd.read_parquet(folder / "token_view.parquet")
    assert '<span class="token' not in html and len(tokens)


def test_rebuilding_gives_the_same_report_in_any_process(run_folder: Path, tmp_path: Path) -> None:
    """`paribus report` reproduces the report byte for byte, build time aside, whatever the hash seed."""
    pages = []
    for seed in ("1", "2"):
        folder = tmp_path / seed
        shutil.copytree(run_folder, folder)
        done = subprocess.run(
            [sys.executable, "-m", "experiments.cli", "report", str(folder)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"},
        )
        assert done.returncode == 0, done.stderr
        pages.append(re.sub(r"report built [0-9T:+-]+", "", (folder / "report.html").read_text()))
    assert pages[0] == pages[1]
    original = re.sub(r"report built [0-9T:+-]+", "", (run_folder / "report.html").read_text())
    assert pages[0] == original


def _vouch_for_files(folder: Path) -> None:
    """Record the checksums of the folder's files as they are now, as a run that wrote exactly them would."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["checksums"] = {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() not in UNLISTED
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_sections_follow_the_files_of_the_folder(run_folder: Path, tmp_path: Path) -> None:
    """Absent tables drop their section; observational tables, when present, get one."""
    folder = tmp_path / "data-mode"
    shutil.copytree(run_folder, folder)
    for name in (
        "evidence_links.csv",
        "evidence_agreement.csv",
        "evidence.parquet",
        "token_view.parquet",
        "fairness.csv",
        "surrogate.csv",
        "hypotheses.csv",
        "outcomes.parquet",
    ):
        (folder / name).unlink(missing_ok=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["review"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    pd.DataFrame(
        {"refuter": ["placebo treatment", f"random {INJECTION}"], "new_effect": [0.01, 0.5], "p_value": [0.7, 0.2]}
    ).to_csv(folder / "refutations.csv", index=False)
    pd.DataFrame({"row": [3], "reason": ["missing insurance"]}).to_csv(folder / "dropped.csv", index=False)
    _vouch_for_files(folder)  # the folder now holds what such a run would have written
    html = render_report(folder)
    page = outline(html)
    assert page.sections == ["verdicts", "graph", "effects", "cate", "observational", "manifest"]
    assert "No hypotheses were pre-registered" in html
    assert "Refutations" in html and "Dropped rows" in html and "Overlap" not in html
    assert f"random {ESCAPED}" in html and "placebo treatment" in html


def test_a_folder_that_is_not_a_run_is_refused_as_a_user_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "report", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "is not a finished run folder: config.yaml is missing" in done.stderr and str(tmp_path) in done.stderr
    assert "Traceback" not in done.stderr
    (tmp_path / "config.yaml").write_text("name: x\n")
    with pytest.raises(RunFolderError, match=r"is not a finished run folder: manifest.json is missing"):
        render_report(tmp_path)


def test_forest_colours_a_negligible_interval_grey_even_when_it_excludes_zero() -> None:
    """Red marks a finding, grey an interval inside ±negligible, dark one that settles nothing."""
    from matplotlib.figure import Figure

    rows = pd.DataFrame(
        {
            "estimate": [0.5, 0.004, 0.1, -0.02, 0.0],
            "ci_low": [0.3, 0.002, -0.2, -0.04, float("nan")],
            "ci_high": [0.7, 0.006, 0.4, 0.01, float("nan")],
        }
    )
    colours = {}
    for negligible in (0.05, 0.0):
        axes = Figure().add_subplot()
        _intervals(axes, np.arange(len(rows)), rows, negligible)
        colours[negligible] = {
            float(x): container.lines[0].get_color()
            for container in axes.containers
            for x in container.lines[0].get_xdata()
        }
    assert colours[0.05] == {0.5: _FINDING, 0.004: _NEGLIGIBLE, 0.1: _UNSETTLED, -0.02: _NEGLIGIBLE, 0.0: _UNSETTLED}
    assert colours[0.0] == {0.5: _FINDING, 0.004: _FINDING, 0.1: _UNSETTLED, -0.02: _UNSETTLED, 0.0: _UNSETTLED}
