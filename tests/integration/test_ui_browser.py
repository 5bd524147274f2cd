"""The dashboard in a real browser (Debian's chromium via Selenium) against the whole local stack.

Both demo queues show; an item enqueued from the CLI reaches SUCCEEDED on the items page without
a reload; its page shows the job's log lines (from the Cloud Logging stand-in); a long-running
item is cancelled from its page (a control message published to the queue's topic, carried out
by the dispatcher and the sweep) and shows CANCELLED.

Then every state a user meets, on one stack, at desktop (1280 px) and phone (390 px) widths:
items running, waiting for a slot, for a paused queue and for a Vertex quota (the stand-in's
quota), failed with a long error, cancelled, building (the Cloud Build stand-in held in WORKING)
a source item, and an array on a paused queue (its parent's progress bar, its children). On
every page: no 5xx, no browser console error, every waiting reason shown,
and at phone width no cell narrower than `MIN_CELL_PX`, no state word broken, no sideways
scroll. Screenshots are saved under the test's tmp path; `make screenshots` (that is,
LAUNCHQ_UI_SCREENSHOTS=docs/images) copies the busy ones into the docs.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
from launchq_client.backends import Backends
from launchq_demo.demo import TRAINER_CMD
from launchq_local.devstack import DevStack, Ports
from launchq_local.emulators import new_project_id
from launchq_ui.app import create_app
from tests.fixtures.devstack import SWEEP_INTERVAL

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
def stack(request: pytest.FixtureRequest) -> Iterator[DevStack]:
    """The shared stack (tests/fixtures/devstack.py) with a 10-minute quota backoff: checking
    every page at two widths takes longer than the default 15 s, and the `gpu` queue's quota wait
    must not end (and read `a slot is free`) until the next sweep refuses it again mid-check."""
    previous = os.environ.get(_BACKOFF)
    os.environ[_BACKOFF] = "600"
    dev = DevStack(new_project_id("launchq-ui-browser"), Ports.free(), SWEEP_INTERVAL)
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()
        if previous is None:
            os.environ.pop(_BACKOFF, None)
        else:
            os.environ[_BACKOFF] = previous
        assert dev.leftovers() == []
        dev.remove_files()


_BACKOFF = "LAUNCHQ_QUOTA_BACKOFF_INITIAL_SECONDS"


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
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, tmp_path: Path, name: str, publish: bool = False) -> Path:
    """A full-page screenshot: the window grows to the page's height first. With `publish`
    and LAUNCHQ_UI_SCREENSHOTS=DIR (`make screenshots`: docs/images/), it is copied there."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    width = int(driver.execute_script("return window.innerWidth"))
    driver.set_window_size(max(width, 360), min(max(height + 140, 500), 2400))
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    extra = os.environ.get("LAUNCHQ_UI_SCREENSHOTS")
    if extra and publish:
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

    # The link is in the live table: a re-render between finding it and clicking it makes it
    # stale, and the wait finds it again.
    wait.until(lambda d: d.find_element(By.LINK_TEXT, "ui-ok").click() is None)
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


# -- every state a user meets ------------------------------------------------------------------

DESKTOP, PHONE = (1280, 900), (390, 844)
# A cell narrower than this shows a word a few letters to a line ("CANC/ELLE/D" was ~40 px).
MIN_CELL_PX = 64
# What a job's error can look like: long, with unbroken paths (Vertex's message, then the log).
LONG_ERROR = (
    "The replica workerpool0-0 exited with a non-zero status of 1. Termination reason: Error. "
    "Traceback (most recent call last): File "
    "/usr/local/lib/python3.11/site-packages/torch/nn/modules/module.py, line 1501, in "
    "_call_impl: torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB "
    "(GPU 0; 15.77 GiB total capacity; 9.21 GiB already allocated; 4.35 GiB free; 9.45 GiB "
    "reserved in total by PyTorch). If reserved memory is >> allocated memory try setting "
    "max_split_size_mb to avoid fragmentation. See documentation for Memory Management and "
    "PYTORCH_CUDA_ALLOC_CONF. To find out more about why your job exited please check the logs."
)
QUOTA_METRIC = "custom_model_training_nvidia_a100_gpus"
_QUEUE = """name: {name}
project: launchq-demo
region: us-central1
max_jobs: {max_jobs}
retry: {{max_attempts: 1}}
spec:
  worker_pool_specs:
    - machine_spec:
        machine_type: {machine}
{accelerator}      replica_count: 1
      container_spec:
        image_uri: ${{image_uri}}
  staging_bucket: gs://launchq-demo-staging
"""
_A100 = "        accelerator_type: NVIDIA_TESLA_A100\n        accelerator_count: 1\n"

# Cell widths at phone width (visible cells only), state badges drawn on more than one line, and
# how far the page scrolls sideways, measured in the page through WebDriver.
_NARROW_CELLS = """
const out = [];
for (const cell of document.querySelectorAll("main table tbody td, main table tbody th")) {
  const box = cell.getBoundingClientRect();
  if (box.width === 0 && box.height === 0) continue;  // not shown
  if (box.width < arguments[0]) out.push([cell.dataset.label || cell.tagName,
    cell.textContent.trim().slice(0, 30), Math.round(box.width)]);
}
return out;
"""
_BROKEN_STATES = """
return [...document.querySelectorAll("main .state")].filter((badge) => {
  const line = parseFloat(getComputedStyle(badge).lineHeight);
  const box = badge.getBoundingClientRect();
  return box.height > 1.6 * line || badge.scrollWidth > badge.clientWidth + 1;
}).map((badge) => badge.textContent);
"""
_OVERFLOW = "return document.documentElement.scrollWidth - window.innerWidth"
_BAR = """
const box = document.querySelector("main svg.progress-bar").getBoundingClientRect();
return {left: box.left, right: box.right, width: box.width, viewport: window.innerWidth};
"""
# Each shown chart's tick size in CSS px as drawn, and whether "now" lies inside its chart.
_CHART_TICKS = """
return [...document.querySelectorAll("svg.chart")].filter((svg) => svg.getClientRects().length)
  .map((svg) => {
    const box = svg.getBoundingClientRect(), scale = box.width / svg.viewBox.baseVal.width;
    const ticks = [...svg.querySelectorAll("text.axis")];
    const now = ticks.find((t) => t.textContent === "now").getBoundingClientRect();
    return {px: Math.min(...ticks.map((t) => parseFloat(getComputedStyle(t).fontSize) * scale)),
            nowInside: now.left >= box.left && now.right <= box.right + 0.5};
  });
"""


def _enqueue(queue: str, item_id: str, *extra: str) -> None:
    code, _, err = run("enqueue", "-q", queue, "--item-id", item_id, *extra)
    assert code == 0, err


def _trainer(epochs: int, seconds: float) -> tuple[str, ...]:
    return (
        *("--image", "python:3.11-slim", "--command", TRAINER_CMD),
        *("--args", f"--epochs {epochs} --epoch-seconds {seconds}"),
    )


def test_dashboard_in_every_state_at_desktop_and_phone_width(
    stack: DevStack, dashboard: str, browser: WebDriver, tmp_path: Path
) -> None:
    from launchq_local.standin.admin import AdminClient

    backends = Backends()
    admin = AdminClient(stack.standin_url)
    build_config = f"{stack.cloudbuild_url}/emulator/v1/config"

    def item(queue: str, item_id: str) -> dict[str, Any]:
        return backends.store.item_document(queue, item_id) or {}

    def until(what: str, check: Callable[[], bool], timeout: float = 45) -> None:
        WebDriverWait(None, timeout, poll_frequency=0.2).until(lambda _: check(), what)

    queues = {
        "busy": (1, "n1-standard-4", ""),
        "flaky": (2, "n1-standard-4", ""),
        "held": (2, "n1-standard-4", ""),
        "gpu": (2, "a2-highgpu-1g", _A100),
        "swept": (2, "n1-standard-4", ""),
    }
    for name, (max_jobs, machine, accelerator) in queues.items():
        path = tmp_path / f"{name}.yaml"
        text = _QUEUE.format(name=name, max_jobs=max_jobs, machine=machine, accelerator=accelerator)
        path.write_text(text)
        assert run("queue", "apply", str(path))[0] == 0
    for name in ("source", "built"):
        assert run("queue", "apply", str(EXAMPLES / "queues" / f"{name}.yaml"))[0] == 0
    assert run("queue", "pause", "held")[0] == 0
    assert run("queue", "pause", "swept")[0] == 0  # its array stays as it is recorded
    admin.set_limits({QUOTA_METRIC: 0})  # every A100 job is refused for quota
    held_builds = requests.patch(build_config, json={"workingSeconds": 600}, timeout=10)
    assert held_builds.status_code == 200, held_builds.text
    try:
        # Idle first: the queues exist, nothing has run.
        browser.set_window_size(*PHONE)
        browser.get(dashboard + "/")
        assert _severe(browser) == []
        assert browser.execute_script(_OVERFLOW) <= 0

        _enqueue("busy", "quick", *_trainer(3, 0.0), "--display-name", "smoke test")
        # `quick` takes the one slot at once; then `long-run` (high) before the other two.
        until("quick submitted", lambda: item("busy", "quick").get("state") not in (None, "QUEUED"))
        long_run = ("--display-name", "resnet50 lr=0.1", "--priority", "high")
        _enqueue("busy", "long-run", *_trainer(3000, 0.1), *long_run)
        _enqueue("busy", "next-up", *_trainer(3, 0.0))
        _enqueue("busy", "later", *_trainer(3, 0.0), "--priority", "low")
        _enqueue("flaky", "oom", *_trainer(3000, 0.1), "--display-name", "bert large bs=512")
        _enqueue("held", "on-hold", *_trainer(3, 0.0))
        _enqueue("held", "dropped", *_trainer(3, 0.0))
        _enqueue("gpu", "a100", *_trainer(3, 0.0), "--display-name", "llama finetune")
        source = ("--source", str(EXAMPLES / "source-trainer"), "--module", "trainer.task")
        _enqueue("built", "image-build", *source)
        _enqueue("source", "from-source", *source, "--args", "--epochs 3")
        _enqueue("swept", "arr", *_trainer(3, 0.0), "--array", "3", "--max-parallel", "1")

        until("dropped recorded", lambda: item("held", "dropped").get("state") == "QUEUED")
        assert run("cancel", "dropped", "-q", "held")[0] == 0
        until("oom running", lambda: item("flaky", "oom").get("state") == "RUNNING")
        admin.set_state(item("flaky", "oom")["job"]["name"], "JOB_STATE_FAILED", (3, LONG_ERROR))
        until("long-run running", lambda: item("busy", "long-run").get("state") == "RUNNING")
        until("oom failed", lambda: item("flaky", "oom").get("state") == "FAILED")
        until("dropped cancelled", lambda: item("held", "dropped").get("state") == "CANCELLED")
        until("a100 refused", lambda: "quota" in str(item("gpu", "a100").get("reason")))
        until("building", lambda: item("built", "image-build").get("state") == "BUILDING")
        until("source ran", lambda: item("source", "from-source").get("state") == "SUCCEEDED")
        until("array expanded", lambda: item("swept", "arr").get("expanded") == 3)
        quota = f"waiting: Vertex quota {QUOTA_METRIC} exhausted in us-central1"

        pages: list[tuple[str, list[str]]] = [
            ("/", ["waiting for a free slot (2)", "queue paused (1)", f"{quota} (1)"]),
            ("/queues/busy", ["resnet50 lr=0.1", "RUNNING", "waiting for a free slot", "high"]),
            ("/queues/flaky", ["bert large bs=512", "FAILED", "CUDA out of memory"]),
            ("/queues/held", ["queue paused", "CANCELLED"]),
            ("/queues/gpu", [quota, "llama finetune"]),
            ("/queues/built", ["BUILDING", "its image is being built", "source trainer.task"]),
            ("/queues/source", ["SUCCEEDED", "source trainer.task"]),
            ("/queues/busy/items/long-run", ["RUNNING", "python:3.11-slim"]),
            ("/queues/busy/items/later", ["waiting for a free slot", "low"]),
            ("/queues/flaky/items/oom", ["FAILED", "PYTORCH_CUDA_ALLOC_CONF"]),
            ("/queues/held/items/on-hold", ["queue paused"]),
            ("/queues/held/items/dropped", ["CANCELLED"]),
            ("/queues/gpu/items/a100", [quota]),
            ("/queues/built/items/image-build", ["BUILDING", "its image is being built"]),
            ("/queues/source/items/from-source", ["SUCCEEDED", "source trainer.task"]),
            ("/queues/swept", ["SWEEP", "array of 3, at most 1 at once", "3 waiting (2 held)"]),
            ("/queues/swept/items/arr", ["0 of 3 done", "arr~00003", "HELD", "queue paused"]),
            ("/queues/swept/items/arr~00002", ["HELD", "arr (child #2)"]),
        ]
        for width, height in (DESKTOP, PHONE):
            for path, expected in pages:
                _check_page(browser, dashboard, path, expected, (width, height))
        # A sweep's progress bar keeps inside a phone's width, and is not squeezed to a sliver.
        browser.set_window_size(*PHONE)
        browser.get(dashboard + "/queues/swept")
        bar = browser.execute_script(_BAR)
        assert bar["left"] >= 0, bar
        assert bar["right"] <= bar["viewport"], bar
        assert bar["width"] >= 0.6 * bar["viewport"], bar
        # Against the local stack, the job links lead to what it serves, not Google's console.
        browser.set_window_size(*DESKTOP)
        browser.get(dashboard + "/queues/busy/items/long-run")
        # Read in one step: every poll redraws the links.
        links = "return [...document.querySelectorAll('#links a')].map((a) => a.href)"
        hrefs = [str(h) for h in browser.execute_script(links)]
        assert hrefs
        assert not any("console.cloud.google.com" in h for h in hrefs)
        assert hrefs[0].startswith(stack.standin_url)

        browser.get(dashboard + "/")
        rows = len(browser.find_elements(By.CSS_SELECTOR, "table.queues tbody tr"))
        charts_at = {"desktop": browser.execute_script(_CHART_TICKS)}
        shot(browser, tmp_path, "queues", publish=True)
        browser.set_window_size(*PHONE)
        browser.get(dashboard + "/")
        charts_at["phone"] = browser.execute_script(_CHART_TICKS)
        shot(browser, tmp_path, "queues-phone", publish=True)
        for where, drawn in charts_at.items():
            assert len(drawn) == 2 * rows, where  # two charts per queue, one drawing shown
            assert all(c["nowInside"] for c in drawn), where
            assert min(c["px"] for c in drawn) >= 10.5, (where, drawn)
        browser.set_window_size(*PHONE)
        browser.get(dashboard + "/queues/busy")
        shot(browser, tmp_path, "items-phone", publish=True)
        browser.set_window_size(*DESKTOP)
        browser.get(dashboard + "/queues/busy")
        shot(browser, tmp_path, "items", publish=True)
        browser.set_window_size(*DESKTOP)
        browser.get(dashboard + "/queues/flaky/items/oom")
        shot(browser, tmp_path, "item", publish=True)
        browser.set_window_size(*PHONE)
        browser.get(dashboard + "/queues/flaky/items/oom")
        shot(browser, tmp_path, "item-phone")
    finally:
        admin.set_limits()
        requests.patch(build_config, json={"workingSeconds": 0.5}, timeout=10)
        for queue, item_id in (("busy", "long-run"), ("flaky", "oom")):
            job = item(queue, item_id).get("job") or {}
            if job.get("name") and item(queue, item_id).get("state") == "RUNNING":
                admin.set_state(job["name"], "JOB_STATE_CANCELLED")
        browser.set_window_size(*DESKTOP)
        backends.close()


def _severe(browser: WebDriver) -> list[str]:
    """Console errors since the last call (a failed request, a CSP refusal, a script error)."""
    return [str(e["message"]) for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _check_page(
    browser: WebDriver, base: str, path: str, expected: list[str], size: tuple[int, int]
) -> None:
    """One page at one window size: answered, no console error, what it must show is shown
    (visible text only), and nothing squeezed, broken or scrolling sideways."""
    where = f"{path} at {size[0]} px"
    api = "/api" + path if path != "/" else "/api/queues"
    for url in (base + path, base + api):
        assert requests.get(url, timeout=10).status_code < 500, url
    browser.set_window_size(*size)
    browser.get(base + path)
    WebDriverWait(browser, 10).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    # innerText is the visible text, read in one step (the live table may be re-rendered).
    shown = str(browser.execute_script("return document.querySelector('main').innerText"))
    missing = [text for text in expected if text not in shown]
    assert not missing, (where, missing, shown[:2000])
    assert _severe(browser) == [], where
    assert browser.execute_script(_OVERFLOW) <= 0, where
    assert browser.execute_script(_BROKEN_STATES) == [], where
    if size == PHONE:
        assert browser.execute_script(_NARROW_CELLS, MIN_CELL_PX) == [], where
