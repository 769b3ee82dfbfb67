"""The Data page, headless (AppTest): the sample, saving an upload, a bad file's error, delete."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO, make_series

PAGE = str(REPO / "pages" / "data.py")
KIND = "timeseries"
SAMPLE_LABEL = "**sample** (bundled sample) · 3,000 training rows × 5 channels"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("ATC_WORKDIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def at(workdir: Path) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not app.exception
    return app


def uploader(at: AppTest, role: str):
    """The current uploader of a role (its key changes after each save, which empties it)."""
    return at.file_uploader(key=f"data_{KIND}_{role}_{at.session_state[f'data_{KIND}_round']}")


def save(at: AppTest, name: str, train: tuple[str, bytes], test: tuple[str, bytes] | None = None):
    at.text_input(key=f"data_{KIND}_name").input(name)
    uploader(at, "train").set_value((*train, "text/csv"))
    if test:
        uploader(at, "test").set_value((*test, "text/csv"))
    at.run()
    at.button(key=f"data_{KIND}_save").click().run()
    assert not at.exception


def expander_labels(at: AppTest) -> list[str]:
    return [e.label for e in at.expander]


def metrics(at: AppTest, dataset: str) -> dict[str, str]:
    box = next(e for e in at.expander if f"**{dataset}**" in e.label)
    return {m.label: m.value for m in box.metric}


def test_save_needs_a_training_file(at):
    assert at.button(key=f"data_{KIND}_save").disabled
    uploader(at, "test").set_value(("t.csv", b"a\n1\n", "text/csv"))
    at.run()
    assert at.button(key=f"data_{KIND}_save").disabled


def test_sample_is_shown_ready(at):
    assert at.header[0].value == "Time series (PatchTST)"
    assert expander_labels(at) == [SAMPLE_LABEL]
    assert metrics(at, "sample") == {
        "Training rows": "3,000", "Test rows": "2,000", "Channels": "5",
        "NaN cells filled": "0", "Label ratio": "6.00%"}
    assert not [b for b in at.button if b.key.endswith("_delete")]  # the sample is read-only
    chart = at.get("plotly_chart")
    assert len(chart) == 1 and '"name":"cpu_load"' in chart[0].proto.spec.replace(" ", "")
    assert at.multiselect(key=f"data_{KIND}_sample_channels").value == [
        "cpu_load", "mem_used", "temp_c", "fan_rpm"]


def test_save_valid_upload_shows_its_summary(at, workdir):
    test = make_series(200, 1, "2026-01-02")
    test["label"] = [0] * 190 + [1] * 10
    save(at, "", ("machine 7.csv", make_series(500, 0).to_csv(index=False).encode()),
         ("machine 7 test.csv", test.to_csv(index=False).encode()))

    folder = workdir / "uploads" / KIND / "machine_7"
    assert sorted(p.name for p in folder.iterdir()) == ["test.csv", "train.csv", "upload.json"]
    assert [s.value for s in at.success] == ["Saved 'machine_7': 500 training rows × 3 channels."]
    assert "**machine_7** · 500 training rows × 3 channels" in expander_labels(at)
    assert metrics(at, "machine_7") == {
        "Training rows": "500", "Test rows": "200", "Channels": "3",
        "NaN cells filled": "0", "Label ratio": "5.00%"}
    assert uploader(at, "train").value is None  # fresh uploaders: the files live on disk now
    assert at.text_input(key=f"data_{KIND}_name").value == ""

    at.run()  # a later run (another page and back) lists it from disk, message gone
    assert not at.success
    assert "**machine_7** · 500 training rows × 3 channels" in expander_labels(at)


def test_bad_text_column_shows_the_error_naming_the_column(at, workdir):
    frame = make_series(50, 0)
    frame["status"] = "ok"
    save(at, "bad one", ("sensors.csv", frame.to_csv(index=False).encode()))

    errors = [e.value for e in at.error]
    assert errors and all("column 'status' row 1: expected a number, found 'ok'" in e
                          for e in errors)
    assert errors[0].startswith("Saved 'bad_one', but it cannot be used")
    assert "**bad_one** · ⚠️ cannot be used" in expander_labels(at)
    assert (workdir / "uploads" / KIND / "bad_one" / "train.csv").is_file()  # kept to inspect
    box = next(e for e in at.expander if "bad_one" in e.label)
    assert "sensors.csv" in box.caption[0].value  # the stored file and its uploaded name


def test_delete_removes_the_dataset(at, workdir):
    save(at, "gone", ("g.csv", make_series(100, 0).to_csv(index=False).encode()))
    assert (workdir / "uploads" / KIND / "gone").is_dir()
    assert not [r for r in at.radio if "gone" in r.key]  # one split: nothing to choose

    at.button(key=f"data_{KIND}_gone_delete").click().run()
    assert not at.exception
    assert not (workdir / "uploads" / KIND / "gone").exists()
    assert [s.value for s in at.success] == ["Deleted dataset 'gone'."]
    assert expander_labels(at) == [SAMPLE_LABEL]


def test_save_errors_are_shown_beside_the_form(at):
    train = ("t.csv", make_series(100, 0).to_csv(index=False).encode())
    save(at, "twice", train)
    save(at, "twice", train)
    assert [e.value for e in at.error] == [
        "dataset 'twice' already exists; expected a new name (or delete the old one first)"]
    save(at, "sample", train)
    assert "reserved for the bundled sample" in at.error[0].value


def test_preview_switches_split_and_channels(at):
    at.radio(key=f"data_{KIND}_sample_split").set_value("test").run()
    at.multiselect(key=f"data_{KIND}_sample_channels").set_value(["net_mbps"]).run()
    assert not at.exception
    spec = at.get("plotly_chart")[0].proto.spec.replace(" ", "")
    assert '"name":"net_mbps"' in spec and '"name":"cpu_load"' not in spec
    assert '"name":"anomaly(label)"' in spec  # the test split has labels
