"""A real `streamlit run app.py` on a free localhost port, with its own workspace, driven by
Playwright through Debian's Chromium (`apt-get install chromium`; never `playwright install`).
Screenshots of each page go to tests/output/ (git-ignored) for a person to look at."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "tests" / "output"
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
    expect(p.locator("[data-testid=stApp][data-test-connection-state=CONNECTED]")).to_be_visible()
    # app.py's navigation replaces Streamlit's automatic pages/ list once its first run ends
    expect(p.get_by_test_id("stSidebarNavLink").filter(has_text="Home")).to_be_visible()
    yield p
    context.close()


@pytest.fixture
def screenshot():
    """screenshot(page, name): save tests/output/<name>.png for a person to look at."""
    def take(page: Page, name: str) -> None:
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"))
    return take
