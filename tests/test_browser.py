"""The HTML reports in a real browser (headless Chromium through selenium and the system chromedriver): no console
error, tables and images present, a header click sorts, a screenshot kept under the test's temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from core_fixtures import fk_env  # noqa: F401
from report_fixtures import cli, make_grid, make_run

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (.ci/run installs Debian's "
                                                          "chromium and chromium-driver when apt-get is usable)")


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    assert driver_path, "chromium is installed but chromedriver is not (Debian: apt-get install chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1600"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


def _open(browser, page: Path, shot: Path) -> None:
    """Open ``page``; fail on any console error; check tables and loaded images; keep a screenshot."""
    from selenium.webdriver.common.by import By

    browser.get(page.resolve().as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    assert browser.find_elements(By.TAG_NAME, "table")
    images = browser.find_elements(By.TAG_NAME, "img")
    assert images and all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                          for i in images)
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000


def _column(browser, table_id: str, col: int) -> list[str]:
    from selenium.webdriver.common.by import By

    rows = browser.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [r.find_elements(By.TAG_NAME, "td")[col].get_attribute("data-value") or
            r.find_elements(By.TAG_NAME, "td")[col].text for r in rows]


def _sorts(browser, table_id: str, col: int) -> None:
    """Clicking the header sorts the column ascending, clicking again descending (numbers compared as numbers)."""
    from selenium.webdriver.common.by import By

    header = browser.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th")[col]
    header.click()
    up = [float(v) for v in _column(browser, table_id, col)]
    assert up == sorted(up) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    down = [float(v) for v in _column(browser, table_id, col)]
    assert down == sorted(up, reverse=True) and header.get_attribute("aria-sort") == "descending"
    assert not [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def test_run_page_in_chromium(fk_env, browser, tmp_path):
    run_dir = make_run(tmp_path / "runs" / "a", fusion__options__n_estimators=5)
    _open(browser, run_dir / "report.html", tmp_path / "run.png")
    _sorts(browser, "fold-table", 4)  # UAR per fold
    _sorts(browser, "class-table", 2)  # recall per class


def test_grid_and_comparison_pages_in_chromium(fk_env, browser, tmp_path):
    out = make_grid(tmp_path)
    _open(browser, out / "report.html", tmp_path / "grid.png")
    _sorts(browser, "cells-table", 6)  # UAR per cell
    cells = sorted((out / "cells").iterdir())
    result = cli("report", *cells, "--out", tmp_path / "cmp.html")
    assert result.exit_code == 0, result.output
    from selenium.webdriver.common.by import By

    browser.get((tmp_path / "cmp.html").resolve().as_uri())
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert browser.find_elements(By.CSS_SELECTOR, "#recipe-diff tr.diff")
    assert browser.save_screenshot(str(tmp_path / "compare.png"))
