"""The console in a real browser, as a user clicks through it: upload the sample CSVs (saved as
they arrive), train with the tiny preset, watch the stage graph reach done with a loss curve,
open the results; and a second run stopped mid-training.

A real `streamlit run app.py` on a free localhost port, with its own workspace, driven by
Playwright through Debian's Chromium (`apt-get install chromium`; never `playwright install`).
Screenshots of each page go to tests/output/ (git-ignored) for a person to look at."""
from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from core.streams import STREAMS, plan

pytestmark = pytest.mark.slow
# an assertion waits up to 15 s, not Playwright's 5: the suite's other worker (-n 2) shares the
# two cores, and a page's script run can take seconds then; what never shows still fails
expect.set_options(timeout=15_000)

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "tests" / "output"
SAMPLE = REPO / "data" / "samples" / "timeseries"
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # no network here: keep Chromium from trying


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not become healthy at {url}")


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> str:
    """URL of a fresh console with an empty workspace."""
    ws = tmp_path_factory.mktemp("console-ws")
    port = _free_port()
    log = open(ws / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env={**os.environ, "ATC_WORKDIR": str(ws)}, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install -y chromium"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, console) -> Page:
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    p = context.new_page()
    p.set_default_timeout(30_000)
    p.goto(console)
    expect(p.locator("[data-testid=stApp][data-test-connection-state=CONNECTED]")).to_be_visible(
        timeout=30_000)
    # Until app.py's first run has called st.navigation, the sidebar lists Streamlit's automatic
    # pages/ links ("app", "data", ... lower case: has_text="Home" matches "home" too), and a
    # click on one runs that page without the router for the rest of the session. App.py's own
    # sidebar caption shows that its run got past the navigation: a fresh server's first run
    # imports torch ("Looking at the hardware…"), past expect's 5 s default with the suite's
    # other worker busy (seen with -n 2)
    expect(p.get_by_test_id("stSidebar").get_by_text(
        re.compile(r"^(No training job running|Training: )"))).to_be_visible(timeout=60_000)
    expect(p.get_by_test_id("stSidebarNavLink").filter(has_text="app")).to_have_count(0)
    yield p
    context.close()


@pytest.fixture
def screenshot():
    """screenshot(page, name): save tests/output/<name>.png for a person to look at."""
    def take(page: Page, name: str) -> None:
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"))
    return take


def open_page(page: Page, title: str, heading: str | None = None) -> None:
    page.get_by_test_id("stSidebarNavLink").filter(has_text=title).click()
    # the first run of a fresh server imports torch for the sidebar: seconds on a busy machine
    expect(page.get_by_role("heading", name=heading or title, exact=True).first).to_be_visible(
        timeout=30_000)


def choose(page: Page, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label`: type it into the box's search
    and press Enter (the first match), then, with the box left, check that it shows the option
    (an unpicked search is dropped on leaving). Typing, unlike clicking an entry of the open
    list, survives a rerun that closes the list just after the click (seen in CI with two test
    workers: the option waited for never showed)."""
    # force: the live panel's redraws below can keep the box from counting as "stable" for
    # Playwright's click checks on a loaded machine (seen waiting past 30 s)
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).locator("input")
    shown = re.compile(rf"^{re.escape(option)}")
    for attempt in range(3):
        box.click(force=True)
        box.fill(option)
        page.keyboard.press("Enter")
        box.blur()
        try:
            expect(box).to_have_value(shown, timeout=10_000)
            return
        except AssertionError:
            if attempt == 2:
                raise


def csv_uploader(page: Page):
    """The time-series section's file uploader (not its folder one): scoped to the section's
    container, as a page-wide `.first` was seen to land on the image uploader in CI."""
    return page.locator(".st-key-data_timeseries [data-testid=stFileUploaderDropzoneInput]"
                        ":not([webkitdirectory])")


def wait_for_rerun(page: Page) -> None:
    """Wait for the rerun that a widget just asked for to end. Files set on an uploader while
    the script was still running after the dataset name's Enter were seen to be lost (no file
    chip in 30 s, once in three full suites). The rerun may end before its start is seen: then
    this waits 5 s longer than it needs."""
    app = page.get_by_test_id("stApp")
    with contextlib.suppress(AssertionError):
        expect(app).not_to_have_attribute("data-test-script-state", "notRunning", timeout=5_000)
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=60_000)


def set_number(page: Page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True).first  # the first stream's (time series) field
    box.fill(str(value))
    box.press("Enter")


def train_tiny(page: Page, dataset: str, epochs: int, patience: int | None = None) -> None:
    open_page(page, "Train")
    # the page's first run checks every stored dataset (cached after) and draws the last run:
    # widgets clicked before it ends can wait for it past the click's timeout on a busy machine
    expect(page.get_by_test_id("stFormSubmitButton").filter(has_text="Train")).to_be_visible(
        timeout=60_000)
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state",
                                                           "notRunning", timeout=60_000)
    choose(page, "Time series (PatchTST): dataset", dataset)
    choose(page, "Time series (PatchTST): preset", "tiny")
    # the preset fills the form in a rerun: type only after it (else "3" + "400" = "3400")
    expect(page.get_by_label("Window (time steps)", exact=True).first).to_have_value(
        "40", timeout=30_000)
    set_number(page, "Epochs", epochs)
    if patience is not None:
        set_number(page, "Early-stop patience (epochs)", patience)
    page.get_by_test_id("stFormSubmitButton").filter(has_text="Train").locator("button").click()


def test_upload_train_watch_and_see_results(page: Page, screenshot):
    open_page(page, "Data")
    # let the page's first run (checking the sample) finish first: files set while it was still
    # going were seen to show up only after it, past expect's 5 s on a cold, busy server
    # every stream's section has drawn its bundled sample: the page's first run is over, so the
    # files set below are not lost to it
    expect(page.get_by_text("(bundled sample)")).to_have_count(len(STREAMS), timeout=30_000)
    name = page.get_by_label("Dataset name")
    name.fill("browser-sample")
    name.press("Enter")  # a text input's value reaches the app on Enter or blur
    wait_for_rerun(page)
    # both files into the one uploader: saved as they arrive (roles from the names), no button
    csv_uploader(page).set_input_files(
        [str(SAMPLE / "train.csv"), str(SAMPLE / "test.csv")])
    expect(page.get_by_test_id("stFileChip")).to_have_count(2, timeout=30_000)
    saved = page.get_by_test_id("stAlert").filter(has_text="Saved 'browser-sample'")
    expect(saved).to_contain_text(
        "(train train.csv, test test.csv): 3,000 training rows × 5 channels", timeout=30_000)
    expect(page.get_by_text("Files added here go to 'browser-sample'")).to_be_visible()
    screenshot(page, "data")

    train_tiny(page, "browser-sample", epochs=3)
    running = re.compile(r"Run \d{8}-\d{6}-\w{4} is (starting|running)")
    expect(page.get_by_text(running)).to_be_visible(timeout=60_000)  # after the checks
    expect(page.locator("[data-testid=stMarkdownContainer] span", has_text=re.compile(r"^done$"))
           .first).to_be_visible(timeout=120_000)
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(2)  # stage graph + loss curves
    expect(page.get_by_text(f"{len(plan())}/{len(plan())} done")).to_be_visible()
    screenshot(page, "train")

    open_page(page, "Results")
    expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("anomaly score", exact=False).first).to_be_visible()
    screenshot(page, "results")

    open_page(page, "Runs")
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
    screenshot(page, "runs")
    open_page(page, "Home", "Anomaly training console")
    expect(page.get_by_text("torch", exact=True)).to_be_visible()
    screenshot(page, "home")


def test_upload_new_data_score_it_and_see_its_scores(page: Page, screenshot, tmp_path):
    """After the run above: new data uploaded, scored with that run's model from Results, the
    scoring run followed live on Train, its scores on Results."""
    new = pd.read_csv(SAMPLE / "test.csv").head(600).drop(columns="label")
    new.to_csv(tmp_path / "tomorrow.csv", index=False)  # unlabelled: stored as its train.csv
    open_page(page, "Data")
    expect(page.get_by_text("(bundled sample)")).to_have_count(len(STREAMS), timeout=30_000)
    csv_uploader(page).set_input_files([str(tmp_path / "tomorrow.csv")])
    expect(page.get_by_test_id("stAlert").filter(has_text="Saved 'tomorrow'")).to_be_visible(
        timeout=30_000)

    open_page(page, "Results")
    page.get_by_test_id("stExpander").filter(has_text="Use this model").click()
    choose(page, "Time series (PatchTST): data to score", "tomorrow")
    score = page.get_by_role("button", name="Score new data")
    expect(score).to_have_count(1, timeout=30_000)  # the page's rerun after the choice is over
    expect(score).to_be_enabled(timeout=30_000)
    score.click()
    expect(page.get_by_text(re.compile(r"Run \d{8}-\d{6}-\w{4} is (starting|running)"))
           ).to_be_visible(timeout=60_000)  # the Train page's live panel follows the scoring
    expect(page.locator("[data-testid=stMarkdownContainer] span", has_text=re.compile(r"^done$"))
           .first).to_be_visible(timeout=120_000)
    screenshot(page, "scoring-run")

    open_page(page, "Results")  # the newest finished run: the scoring
    expect(page.get_by_text("A scoring run: the data was scored with the model of run")
           ).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("stMetric").filter(has_text="Flagged rows")).to_be_visible()
    expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible(timeout=30_000)
    no_accidents(page)
    screenshot(page, "results-scoring")


def test_reload_mid_training_then_stop(page: Page, screenshot):
    # no early stop: the tiny run stops itself in about 40 epochs (15 s here), which a busy
    # machine's reload and redraw outlasted: no Stop button left to click
    train_tiny(page, "sample", epochs=400, patience=0)
    expect(page.get_by_text(re.compile(r"step \d+/\d+ · ETA"))).to_be_visible(timeout=90_000)
    page.reload()  # the live run, first on the page, with the settings it was started with
    expect(page.get_by_text(re.compile(r"step \d+/\d+ · ETA"))).to_be_visible(timeout=30_000)
    expect(page.get_by_label("Epochs", exact=True).first).to_have_value("400")
    expect(page.get_by_label("Early-stop patience (epochs)", exact=True).first
           ).to_have_value("0")
    expect(page.get_by_label("Window (time steps)", exact=True).first).to_have_value("40")  # tiny
    loss = page.get_by_test_id("stPlotlyChart").nth(1)
    expect(loss).to_contain_text("patchtst train", timeout=30_000)
    screenshot(page, "train-live-after-reload")
    # the app's Stop, not Streamlit's header Stop that shows while a script run is in progress
    page.locator("button[kind=primary]", has_text="Stop").click()
    expect(page.locator("[data-testid=stMarkdownContainer] span",
                        has_text=re.compile(r"^stopped$")).first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("train_patchtst (stopped)")).to_be_visible()
    screenshot(page, "train-stopped")


def no_accidents(page: Page) -> None:
    """Nothing drawn by accident (a DeltaGenerator's docstring) and no exception box."""
    expect(page.get_by_text("DeltaGenerator")).to_have_count(0)
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_runs_compare_and_every_page_is_clean(page: Page, screenshot):
    """After the two runs above: the Runs page compares them (the two newest, by default)."""
    open_page(page, "Runs")
    expect(page.get_by_text("Config differences")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("stPlotlyChart").first).to_contain_text("Time series (PatchTST)",
                                                                       timeout=30_000)
    no_accidents(page)
    page.get_by_text("Compare runs").scroll_into_view_if_needed()
    screenshot(page, "runs-compare")
    for title, heading in (("Home", "Anomaly training console"), ("Data", None),
                           ("Train", None), ("Results", None)):
        open_page(page, title, heading)
        no_accidents(page)


def test_data_role_picker_for_files_whose_names_say_nothing(page: Page, screenshot, tmp_path):
    frame = pd.read_csv(SAMPLE / "train.csv").head(400)
    free, faulty = frame.copy(), frame.copy()
    free["anomaly"], faulty["anomaly"] = 0, [1] * 120 + [0] * 280  # SKAB-like label columns
    free.to_csv(tmp_path / "anomaly-free.csv", sep=";", index=False)
    faulty.to_csv(tmp_path / "0.csv", sep=";", index=False)
    open_page(page, "Data")
    expect(page.get_by_text("(bundled sample)")).to_have_count(len(STREAMS), timeout=30_000)
    csv_uploader(page).set_input_files(
        [str(tmp_path / "0.csv"), str(tmp_path / "anomaly-free.csv")])
    saved = page.get_by_test_id("stAlert").filter(has_text="Saved 'anomaly-free'")
    expect(saved).to_contain_text("(train anomaly-free.csv, test 0.csv)", timeout=30_000)
    expect(page.get_by_test_id("stSelectbox").filter(has_text="0.csv")).to_be_visible(
        timeout=30_000)  # the role picker (its value is not text: the alert says the roles)
    no_accidents(page)
    screenshot(page, "data-role-picker")
