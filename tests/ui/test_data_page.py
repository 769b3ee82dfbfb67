"""The Data page, headless (AppTest): the sample, files saved the moment they are uploaded (roles
from their names, one dataset per upload round), a bad file's error, delete."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO, make_series

PAGE = str(REPO / "pages" / "data.py")
KIND = "timeseries"
SAMPLE_LABEL = "**sample** (bundled sample) · 3,000 training rows × 5 channels"
FILES, NAME = f"data_{KIND}_files", f"data_{KIND}_name"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("ATC_WORKDIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def at(workdir: Path) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not app.exception
    return app


def csv(rows: int = 100, seed: int = 0, labels: list[int] | None = None) -> bytes:
    frame = make_series(rows, seed)
    if labels is not None:
        frame["label"] = labels
    return frame.to_csv(index=False).encode()


def upload(at: AppTest, *files: tuple[str, bytes], name: str | None = None) -> None:
    """Type the dataset name (when given), then make these files all the uploader holds, as the
    browser reports it after files are added or removed (no files: all removed)."""
    if name is not None:
        at.text_input(key=NAME).input(name).run()
    at.file_uploader(key=FILES).set_value([(n, data, "text/csv") for n, data in files] or None)
    at.run()
    assert not at.exception


def stored(workdir: Path, dataset: str) -> list[str]:
    return sorted(p.name for p in (workdir / "uploads" / KIND / dataset).iterdir())


def expander_labels(at: AppTest) -> list[str]:
    return [e.label for e in at.expander]


def metrics(at: AppTest, dataset: str) -> dict[str, str]:
    box = next(e for e in at.expander if f"**{dataset}**" in e.label)
    return {m.label: m.value for m in box.metric}


def test_one_multi_file_uploader_and_no_save_button(at):
    box = at.file_uploader(key=FILES)
    assert box.accept_multiple_files and box.allowed_type == [".csv", ".gz"]
    assert box.label.startswith("CSV files: train.csv")
    assert [u.key for u in at.file_uploader if u.key.startswith(f"data_{KIND}")] == [FILES]
    assert not [b for b in at.button if "save" in b.key]


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


def test_upload_is_saved_at_once_with_roles_from_the_names(at, workdir):
    test = make_series(200, 1, "2026-01-02")
    test["label"] = [0] * 190 + [1] * 10
    upload(at, ("Train.csv", csv(500)), ("test.csv", test.to_csv(index=False).encode()),
           name="machine 7")

    assert stored(workdir, "machine_7") == ["test.csv", "train.csv", "upload.json"]
    assert [s.value for s in at.success] == [
        "Saved 'machine_7' (train `Train.csv`, test `test.csv`): "
        "500 training rows × 3 channels."]
    assert "**machine_7** · 500 training rows × 3 channels" in expander_labels(at)
    assert metrics(at, "machine_7") == {
        "Training rows": "500", "Test rows": "200", "Channels": "3",
        "NaN cells filled": "0", "Label ratio": "5.00%"}
    assert [f.name for f in at.file_uploader(key=FILES).value] == ["Train.csv", "test.csv"]
    assert at.text_input(key=NAME).disabled  # the round's dataset is named
    assert "go to 'machine_7'" in at.caption[0].value

    at.run()  # a later run lists it from disk, message gone
    assert not at.success
    assert "**machine_7** · 500 training rows × 3 channels" in expander_labels(at)

    upload(at)  # all files removed: the round is over, the form is fresh
    assert at.text_input(key=NAME).value == "" and not at.text_input(key=NAME).disabled
    assert "**machine_7** · 500 training rows × 3 channels" in expander_labels(at)


def test_a_single_file_is_the_training_data_named_after_it(at, workdir):
    upload(at, ("machine 7.csv.gz", gzip.compress(csv(300))))
    assert stored(workdir, "machine_7") == ["train.csv.gz", "upload.json"]
    assert at.success[0].value.startswith("Saved 'machine_7' (train `machine 7.csv.gz`)")


def test_files_added_in_the_same_round_replace_that_dataset(at, workdir):
    train, test = ("train.csv", csv(300)), ("test.csv", csv(120, 1))
    upload(at, train, name="round")
    assert stored(workdir, "round") == ["train.csv", "upload.json"]

    upload(at, train, test)  # the uploader now holds both
    assert stored(workdir, "round") == ["test.csv", "train.csv", "upload.json"]
    assert at.success[0].value.startswith("Saved 'round' (train `train.csv`, test `test.csv`)")
    assert metrics(at, "round")["Test rows"] == "120"
    assert [p.name for p in (workdir / "uploads" / KIND).iterdir()] == ["round"]  # no leftovers

    upload(at, ("labels.csv", b"label\n0\n"), train)  # test removed, labels added: refused
    assert "expected a test CSV too" in at.error[0].value
    assert stored(workdir, "round") == ["test.csv", "train.csv", "upload.json"]  # as it was

    upload(at, train)  # the test file removed: the dataset follows
    assert stored(workdir, "round") == ["train.csv", "upload.json"]


def test_a_new_round_never_overwrites_an_earlier_dataset(at, workdir):
    upload(at, ("train.csv", csv(300)), name="twice")
    upload(at)  # round over
    upload(at, ("train.csv", csv(50, 1)), ("test.csv", csv(50, 2)), name="twice")
    assert [e.value for e in at.error] == [
        "dataset 'twice' already exists; expected a new name (or delete the old one first)"]
    assert stored(workdir, "twice") == ["train.csv", "upload.json"]
    assert metrics(at, "twice")["Training rows"] == "300"

    at.text_input(key=NAME).input("second").run()  # a new name saves the files held
    assert not at.exception and at.success[0].value.startswith("Saved 'second'")
    assert stored(workdir, "second") == ["test.csv", "train.csv", "upload.json"]


def test_naming_errors_are_shown_beside_the_uploader(at, workdir):
    upload(at, ("a.csv", csv()), ("b.csv", csv()))
    assert [e.value for e in at.error] == [
        "'a.csv', 'b.csv': cannot tell which file is which; expected names starting with "
        "train, test or test_label (train.csv, test.csv, test_label.csv)"]
    upload(at, ("test.csv", csv()))
    assert "expected a training file too" in at.error[0].value
    upload(at, ("train.csv", csv()), name="sample")
    assert "reserved for the bundled sample" in at.error[0].value
    assert not (workdir / "uploads" / KIND).exists()
    assert expander_labels(at) == [SAMPLE_LABEL]


def test_bad_text_column_shows_the_error_naming_the_column(at, workdir):
    frame = make_series(50, 0)
    frame["status"] = "ok"
    upload(at, ("sensors.csv", frame.to_csv(index=False).encode()), name="bad one")

    errors = [e.value for e in at.error]
    assert errors and all("column 'status' row 1: expected a number, found 'ok'" in e
                          for e in errors)
    assert errors[0].startswith("Saved 'bad_one' (train `sensors.csv`), but it cannot be used")
    assert "**bad_one** · ⚠️ cannot be used" in expander_labels(at)
    assert (workdir / "uploads" / KIND / "bad_one" / "train.csv").is_file()  # kept to inspect
    box = next(e for e in at.expander if "bad_one" in e.label)
    assert "sensors.csv" in box.caption[0].value  # the stored file and its uploaded name


def test_delete_removes_the_dataset(at, workdir):
    upload(at, ("g.csv", csv()), name="gone")
    assert (workdir / "uploads" / KIND / "gone").is_dir()
    assert not [r for r in at.radio if "gone" in r.key]  # one split: nothing to choose

    at.button(key=f"data_{KIND}_gone_delete").click().run()
    assert not at.exception
    assert not (workdir / "uploads" / KIND / "gone").exists()
    assert [s.value for s in at.success] == ["Deleted dataset 'gone'."]
    assert expander_labels(at) == [SAMPLE_LABEL]


def test_preview_switches_split_and_channels(at):
    at.radio(key=f"data_{KIND}_sample_split").set_value("test").run()
    at.multiselect(key=f"data_{KIND}_sample_channels").set_value(["net_mbps"]).run()
    assert not at.exception
    spec = at.get("plotly_chart")[0].proto.spec.replace(" ", "")
    assert '"name":"net_mbps"' in spec and '"name":"cpu_load"' not in spec
    assert '"name":"anomaly(label)"' in spec  # the test split has labels
