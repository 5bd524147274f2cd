"""The dashboard in a real browser (Debian's chromium via Selenium) against the whole local stack.

Both demo queues show; an item enqueued from the CLI reaches SUCCEEDED on the items page without
a reload; its page shows the job's log lines (from the Cloud Logging stand-in); a long-running
item is cancelled from its page (a control message published to the queue's topic, carried out
by the dispatcher and the sweep) and shows CANCELLED. Screenshots of the pages are saved under
the test's tmp path (and, with LAUNCHQ_UI_SCREENSHOTS=DIR, there too: how docs/images/ is made).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import BaseWSGIServer, make_server

from launchq_cli import main
from launchq_cli.common import Backends
from launchq_local.demo import TRAINER_CMD
from launchq_local.devstack import DevStack, Ports
from launchq_local.emulators import new_project_id
from launchq_ui.app import create_app

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver (or `make bootstrap`)"
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    dev = DevStack(new_project_id("launchq-ui"), Ports.free(), sweep_interval=1.0)
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()
        assert dev.leftovers() == []
        dev.remove_files()


@pytest.fixture(scope="module")
def dashboard(stack: DevStack) -> Iterator[str]:
    backends = Backends()  # the stack put its addresses in the environment, as `launchq dev`
    server: BaseWSGIServer = make_server("127.0.0.1", 0, create_app(backends), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        backends.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: install with `{INSTALL}`")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot: the window grows to the page's height first."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    width = int(driver.execute_script("return window.innerWidth"))
    driver.set_window_size(max(width, 360), min(max(height + 140, 500), 2400))
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    extra = os.environ.get("LAUNCHQ_UI_SCREENSHOTS")
    if extra:
        shutil.copy(path, Path(extra) / path.name)
    return path


def text_of(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def test_dashboard_follows_and_cancels_items(
    stack: DevStack, dashboard: str, browser: WebDriver, tmp_path: Path
) -> None:
    for name in ("default", "trainer"):
        code, _, err = run("queue", "apply", str(EXAMPLES / "queues" / f"{name}.yaml"))
        assert code == 0, err
    # The items table is re-rendered by live polling every 2 s: an element read a moment ago can
    # be replaced before its text is read, so waits ignore stale references and retry.
    wait = WebDriverWait(
        browser, 60, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,)
    )

    browser.get(dashboard + "/")
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "table.queues tbody th a")]
    assert names == ["default", "trainer"]
    # Keyboard: the first Tab lands on the skip link, Enter moves focus to the content.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("class") == "skip"

    browser.find_element(By.LINK_TEXT, "trainer").click()
    wait.until(lambda d: "Items of" in text_of(d, "h1"))
    browser.execute_script("window.launchqNoReload = 'still here'")
    code, _, err = run(
        "enqueue", "--from-file", str(EXAMPLES / "items" / "train.json"), "--item-id", "ui-ok"
    )
    assert code == 0, err
    row = 'tr[data-item="ui-ok"] .state'
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    wait.until(lambda d: text_of(d, row) == "SUCCEEDED")
    assert browser.execute_script("return window.launchqNoReload") == "still here"
    items_png = shot(browser, tmp_path, "items")
    # Filter and search through the form, by keyboard.
    search = browser.find_element(By.NAME, "q")
    search.send_keys("ui-", Keys.ENTER)
    wait.until(lambda d: "q=ui-" in d.current_url)
    wait.until(
        lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "tbody th a")] == ["ui-ok"]
    )
    browser.get(f"{dashboard}/queues/trainer?state=FAILED")
    assert text_of(browser, "tbody") == "No items match."
    api = requests.get(f"{dashboard}/api/queues/trainer/items?q=ui-ok", timeout=10).json()
    assert [(r["item_id"], r["state"]) for r in api["items"]] == [("ui-ok", "SUCCEEDED")]
    browser.get(f"{dashboard}/queues/trainer")
    # Phone width: the page reflows, only the table scrolls sideways, never the page.
    browser.set_window_size(390, 800)
    overflow = "return document.documentElement.scrollWidth - window.innerWidth"
    assert browser.execute_script(overflow) <= 0
    phone_png = shot(browser, tmp_path, "items-phone")
    browser.set_window_size(1280, 900)

    browser.find_element(By.LINK_TEXT, "ui-ok").click()
    wait.until(lambda d: text_of(d, "#state") == "SUCCEEDED")
    wait.until(lambda d: "epoch 300/300 loss=" in text_of(d, "#log"))
    history = text_of(browser, "#history")
    assert "QUEUED" in history
    assert "SUCCEEDED" in history
    assert text_of(browser, "#run-time") != "-"
    assert browser.find_elements(By.CSS_SELECTOR, "#cancel") == []  # ended: nothing to cancel
    item_png = shot(browser, tmp_path, "item")

    code, _, err = run(
        *("enqueue", "-q", "default", "--item-id", "ui-long", "--image", "python:3.11-slim"),
        *("--command", TRAINER_CMD, "--args", "--epochs 600 --epoch-seconds 0.1"),
    )
    assert code == 0, err
    # Published is not yet recorded: open its page once the dispatcher has recorded it.
    WebDriverWait(None, 30, poll_frequency=0.25).until(
        lambda _: run("status", "ui-long", "-q", "default")[0] == 0
    )
    browser.get(f"{dashboard}/queues/default/items/ui-long")
    wait.until(lambda d: text_of(d, "#state") == "RUNNING")
    wait.until(lambda d: "training y = w*x + b" in text_of(d, "#log"))
    browser.find_element(By.ID, "cancel").click()
    wait.until(lambda d: "cancel requested" in text_of(d, ".notice"))
    wait.until(lambda d: text_of(d, "#state") == "CANCELLED")
    assert "cancel" in text_of(browser, "#history").lower()

    browser.get(dashboard + "/")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "svg.chart path.line"))
    trainer = 'tr[data-queue="trainer"]'
    assert text_of(browser, f"{trainer} .ok") == "1"
    assert text_of(browser, 'tr[data-queue="default"] .running') == "0 / 1"
    queues_png = shot(browser, tmp_path, "queues")

    for png in (items_png, phone_png, item_png, queues_png):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
