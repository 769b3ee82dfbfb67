"""The console in a real browser, as a user clicks through it: upload the sample CSVs, train
with the tiny preset, watch the stage graph reach done with a loss curve, open the results;
and a second run stopped mid-training. Screenshots land in tests/output/ (not committed)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.slow
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "timeseries"


def open_page(page: Page, title: str, heading: str | None = None) -> None:
    page.get_by_test_id("stSidebarNavLink").filter(has_text=title).click()
    expect(page.get_by_role("heading", name=heading or title, exact=True).first).to_be_visible()


def choose(page: Page, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label`."""
    page.get_by_test_id("stSelectbox").filter(has_text=label).locator("input").click()
    page.get_by_role("option", name=re.compile(rf"^{re.escape(option)}")).first.click()


def set_number(page: Page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")


def train_tiny(page: Page, dataset: str, epochs: int) -> None:
    open_page(page, "Train")
    choose(page, "dataset", dataset)
    choose(page, "preset", "tiny")
    set_number(page, "Epochs", epochs)
    page.get_by_test_id("stFormSubmitButton").filter(has_text="Train").locator("button").click()


def test_upload_train_watch_and_see_results(page: Page, screenshot):
    open_page(page, "Data")
    page.get_by_label("Dataset name").fill("browser-sample")
    inputs = page.get_by_test_id("stFileUploaderDropzoneInput")
    inputs.nth(0).set_input_files(str(SAMPLE / "train.csv"))
    inputs.nth(1).set_input_files(str(SAMPLE / "test.csv"))
    expect(page.get_by_test_id("stFileChip")).to_have_count(2)
    page.get_by_role("button", name="Save dataset").click()
    expect(page.get_by_text("Saved 'browser-sample'")).to_be_visible()
    screenshot(page, "data")

    train_tiny(page, "browser-sample", epochs=3)
    expect(page.get_by_text(re.compile(r"Run \d{8}-\d{6}-\w{4} is running"))).to_be_visible()
    expect(page.locator("[data-testid=stMarkdownContainer] span", has_text=re.compile(r"^done$"))
           .first).to_be_visible(timeout=120_000)
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(2)  # stage graph + loss curves
    expect(page.get_by_text("6/6 done")).to_be_visible()
    screenshot(page, "train")

    open_page(page, "Results")
    expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible()
    expect(page.get_by_text("anomaly score", exact=False).first).to_be_visible()
    screenshot(page, "results")

    open_page(page, "Runs")
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
    screenshot(page, "runs")
    open_page(page, "Home", "Anomaly training console")
    expect(page.get_by_text("torch", exact=True)).to_be_visible()
    screenshot(page, "home")


def test_stop_mid_training_shows_stopped(page: Page, screenshot):
    train_tiny(page, "sample", epochs=400)
    expect(page.get_by_text(re.compile(r"step \d+/\d+ · ETA"))).to_be_visible(timeout=90_000)
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("[data-testid=stMarkdownContainer] span",
                        has_text=re.compile(r"^stopped$")).first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("train_patchtst (stopped)")).to_be_visible()
    screenshot(page, "train-stopped")
