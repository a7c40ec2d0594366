"""The report opened in headless Chromium, as a reviewer would: no console error, no network request, every
figure drawn with a size, the verdict matrix first, user text escaped and numbers formatted — asserted on the
rendered DOM. A screenshot of the first screen is saved as a test artefact (``build/test-artifacts/`` or
``$MARGINLAB_ARTIFACTS``).

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); skipped with a
message when they are missing.
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("MARGINLAB_ARTIFACTS", Path(__file__).resolve().parents[1] / "build" /
                                "test-artifacts"))

pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="headless Chromium not installed: apt-get install -y chromium chromium-driver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1300,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, hostile_report):
    url = (hostile_report["out"] / "report.html").resolve().as_uri()
    browser.get("about:blank")
    browser.get_log("performance")  # drain what the browser itself loaded at start (its new-tab page)
    browser.get_log("browser")
    browser.get(url)
    return browser


def _requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_page_loads_offline_without_console_errors(page, hostile_report):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert page.save_screenshot(str(ARTIFACTS / "report-first-screen.png"))
    errors = [e for e in page.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    # nothing goes to the network: figures are embedded, no font, script, style or image is fetched
    requests = _requests(page)
    assert any(u.startswith("file:") for u in requests)  # the log does record the page itself
    network = [u for u in requests if not u.startswith(("file:", "data:", "about:", "chrome:"))]
    assert network == []
    assert page.execute_script("return document.scripts.length") == 0
    size = (hostile_report["out"] / "report.html").stat().st_size
    assert size < 15e6


def test_verdict_matrix_is_the_first_table_and_on_the_first_screen(page):
    first = page.execute_script("return document.querySelector('table').id")
    assert first == "verdict-matrix"
    top = page.execute_script("return document.getElementById('verdict-matrix').getBoundingClientRect().top")
    assert top < 1000  # visible without scrolling at 1300 x 1000
    sentences = page.execute_script("return [...document.querySelectorAll('#verdict ul.lede li')]"
                                    ".map(e => e.innerText)")
    assert len(sentences) == 3 and sentences[0].startswith("Coverage holds")


def test_every_figure_has_a_size_and_is_legible_at_1300px(page):
    page.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    figures = page.execute_script("""
        return [...document.querySelectorAll('figure img')].map(img => {
            const r = img.getBoundingClientRect();
            return {w: r.width, h: r.height, nw: img.naturalWidth, nh: img.naturalHeight, ok: img.complete};
        })""")
    assert len(figures) >= 6
    for f in figures:
        assert f["ok"] and f["w"] > 0 and f["h"] > 0 and f["nw"] > 0
        assert f["nw"] <= 1300 and f["w"] >= 0.95 * f["nw"]  # drawn at (close to) its own pixels: not shrunk


def test_user_text_is_escaped_in_the_dom(page, hostile_report):
    book, model, name = hostile_report["book"], hostile_report["model"], hostile_report["name"]
    assert page.title == f"marginlab study: {name}"
    assert page.execute_script("return document.querySelector('h1').textContent") == f"marginlab study: {name}"
    rows = page.execute_script("return [...document.querySelectorAll('#verdict-matrix tbody th')]"
                               ".map(e => e.textContent)")
    assert book in rows
    heads = page.execute_script("return [...document.querySelectorAll('#verdict-matrix thead th')]"
                                ".map(e => e.firstChild && e.firstChild.textContent)")
    assert model in heads
    # no element came from the names: no <script>, no <img> outside figures, no <b>/<i> inside headers
    injected = page.execute_script("return document.querySelectorAll('script, img:not(figure img):not(img.formula), "
                                   "h1 i, th b').length")
    assert injected == 0
    body = page.execute_script("return document.body.innerText")
    assert "<b>bold?</b> no: text & more" in body
    file_name = hostile_report["study_file"].name
    summaries = page.execute_script("return [...document.querySelectorAll('summary')].map(e => e.textContent)")
    assert any(file_name in s for s in summaries)
    alts = page.execute_script("return [...document.querySelectorAll('figure img')].map(e => e.alt)")
    assert any(book in a for a in alts)


def test_numbers_are_formatted_for_people(page):
    page.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    money = page.execute_script("return [...document.querySelectorAll('td.money')].map(e => e.textContent)")
    assert len(money) > 20
    for text in money:
        assert re.fullmatch(r"-?\d{1,3}(,\d{3})*(\.\d\d)?|\u2014|\u221e", text), text
    assert "0" in money  # a zero amount reads 0 (largest shortfall of a model without breaches)
    cells = page.execute_script("return [...document.querySelectorAll('td')].map(e => e.textContent)")
    scientific = [c for c in cells if re.search(r"\de[+-]\d", c) and c != "< 1e-10"]
    assert scientific == []
    percents = page.execute_script("return [...document.querySelectorAll('#verdict-matrix td .vn')]"
                                   ".map(e => e.textContent)")
    assert any(re.fullmatch(r"\d+\.\d% of notional", p) for p in percents)
