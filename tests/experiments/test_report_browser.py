"""The demo run's report.html in a real headless Chromium: the rendered DOM, its images and the console.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them when it can); without
them the test is skipped and says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SECTIONS = [
    "verdicts",
    "graph",
    "effects",
    "cate",
    "mediation",
    "evidence",
    "examples",
    "fairness",
    "surrogate",
    "manifest",
]


def _missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists() and shutil.which(path.name) is None:
            return f"{path} not found: install Debian's {package} package (.ci/run tries to)"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(argument)
    if CHROMIUM.exists():
        options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        service=Service(str(CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver"))), options=options
    )
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def demo_run(example: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped demo config, every block on, on 60 units."""
    folder = tmp_path_factory.mktemp("browser") / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "run", str(example), "--units", "60", "--out", str(folder)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    return folder


def test_demo_report_renders_in_chromium(browser, demo_run: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get((demo_run / "report.html").as_uri())
    sections = [element.get_attribute("id") for element in browser.find_elements(By.CSS_SELECTOR, "main > section")]
    assert sections == SECTIONS
    for name in SECTIONS:
        assert browser.find_element(By.ID, name).find_element(By.TAG_NAME, "h2").is_displayed()

    rows = browser.find_elements(By.CSS_SELECTOR, "#effects-table tbody tr")
    assert len(rows) == len(pd.read_csv(demo_run / "effects.csv"))
    verdicts = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#verdict-table tbody td:nth-child(5)")]
    assert verdicts == pd.read_csv(demo_run / "hypotheses.csv")["verdict"].tolist()

    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 5  # graph, forest, three strata plots, heatmap
    for image in images:
        loaded = browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
        assert loaded and loaded > 0, image.get_attribute("alt")

    assert browser.find_elements(By.CSS_SELECTOR, "#token-views .token.slot")
    assert browser.find_elements(By.CSS_SELECTOR, "#fairness-table .flag")  # insurance fails four-fifths
    assert "not a cause" in browser.find_element(By.ID, "surrogate").text

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []

    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, min(height + 100, 16_000))
    screenshot = tmp_path / "report.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
