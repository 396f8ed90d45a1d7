"""The HTML report opened in a real headless browser (Debian's chromium + chromedriver).

Every figure must load (non-zero natural size), the page must log no error, and a
screenshot is left for a reviewer in ``tmp_path`` and ``test-artifacts/report.png``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analysis.report import write_report
from tests._synthetic import write_synthetic_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1200,900",
)


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None or not Path(CHROMEDRIVER).is_file():
        pytest.skip(
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_renders_in_a_browser_with_every_figure_and_no_errors(browser, tmp_path):
    results = write_synthetic_results(tmp_path / "results")
    index = write_report(results)
    browser.get(index.as_uri())

    images = browser.execute_script(
        "return Array.from(document.images).map("
        "i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,"
        " shown: i.getBoundingClientRect().width}))"
    )
    # the divergence map, sensitivity, stability, lr shift, tunability, importance,
    # training curves
    assert len(images) == 7, [i["alt"] for i in images]
    for image in images:
        assert image["complete"] and image["w"] > 300 and image["h"] > 150, image
        assert image["shown"] > 300, image  # laid out at a readable width
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    assert browser.title == "Robustness report: synthetic"
    summary = browser.find_element("id", "summary")
    assert summary.is_displayed()

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1200, min(int(height), 8000))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 50_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "report.png")
