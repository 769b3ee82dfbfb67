"""The Data page, headless (AppTest), per stream: the sample, files saved the moment they are
uploaded (time series: roles from their names, one dataset per upload round; images: a zip or
image files), a bad file's error, delete."""
from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO, make_series

PAGE = str(REPO / "pages" / "data.py")
KIND = "timeseries"
SAMPLE_LABEL = "**sample** (bundled sample) · 3,000 training rows × 5 channels"
FILES, FOLDER, NAME = f"data_{KIND}_files", f"data_{KIND}_folder", f"data_{KIND}_name"


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


def section(at: AppTest, kind: str = KIND):
    return at.container(key=f"data_{kind}")


def expander_labels(at: AppTest, kind: str = KIND) -> list[str]:
    return [e.label for e in section(at, kind).expander]


def expander(at: AppTest, dataset: str, kind: str = KIND):
    return next(e for e in section(at, kind).expander if f"**{dataset}**" in e.label)


def metrics(at: AppTest, dataset: str, kind: str = KIND) -> dict[str, str]:
    return {m.label: m.value for m in expander(at, dataset, kind).metric}


def test_a_files_and_a_folder_uploader_and_no_save_button(at):
    box = at.file_uploader(key=FILES)
    assert box.accept_multiple_files and not box.accept_directory
    assert box.allowed_type == [".csv", ".gz"]
    assert box.label.startswith("CSV files: train.csv")
    folder = at.file_uploader(key=FOLDER)
    assert folder.accept_directory
    assert [u.key for u in at.file_uploader if u.key.startswith(f"data_{KIND}")] == [FILES,
                                                                                     FOLDER]
    assert not [b for b in at.button if "save" in b.key]


def test_sample_is_shown_ready(at):
    assert at.header[0].value == "Time series (PatchTST)"
    assert expander_labels(at) == [SAMPLE_LABEL]
    assert metrics(at, "sample") == {
        "Training rows": "3,000", "Test rows": "2,000", "Channels": "5",
        "NaN cells filled": "0", "Label ratio": "6.00%"}
    assert not [b for b in at.button if b.key.endswith("_delete")]  # samples are read-only
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
    assert any("go to 'machine_7'" in c.value for c in section(at).caption)
    assert roles(at) == {"Train.csv": "train", "test.csv": "test"}  # the picker shows them

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


def test_default_names_never_collide(at, workdir):
    upload(at, ("train.csv", csv(300)))
    upload(at)  # round over: a second SMD-style upload, no name typed
    upload(at, ("train.csv", csv(200, 1)), ("test.csv", csv(100, 2)))
    assert at.success[0].value.startswith("Saved 'train-2'"), [e.value for e in at.error]
    assert stored(workdir, "train") == ["train.csv", "upload.json"]
    assert stored(workdir, "train-2") == ["test.csv", "train.csv", "upload.json"]


def test_a_folder_upload_is_named_after_its_folder(at, workdir):
    at.file_uploader(key=FOLDER).set_value([
        ("machine-1-1/train.csv", csv(300), "text/csv"),
        ("machine-1-1/test.csv", csv(100, 1), "text/csv")])
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith("Saved 'machine-1-1'")
    assert stored(workdir, "machine-1-1") == ["test.csv", "train.csv", "upload.json"]


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


def skab(anomalies: int, rows: int = 300, seed: int = 0) -> bytes:
    """A SKAB-like file: `;`-separated, with `anomaly` and `changepoint` columns."""
    frame = make_series(rows, seed).rename(columns={"timestamp": "datetime"})
    frame["anomaly"] = [1.0] * anomalies + [0.0] * (rows - anomalies)
    frame["changepoint"] = 0.0
    return frame.to_csv(index=False, sep=";").encode()


def roles(at: AppTest) -> dict[str, str]:
    return {s.label.strip("`"): s.value for s in at.selectbox
            if s.key.startswith(f"data_{KIND}_role_")}


def test_role_picker_guesses_skab_roles_and_a_change_saves_again(at, workdir):
    upload(at, ("0.csv", skab(105)), ("anomaly-free.csv", skab(0, seed=1)), name="skab")
    assert not at.error, [e.value for e in at.error]
    # names that say nothing: the file without labelled anomalies trains
    assert roles(at) == {"0.csv": "test", "anomaly-free.csv": "train"}
    meta = json.loads((workdir / "uploads" / KIND / "skab" / "upload.json").read_text())
    assert meta["files"] == {"train.csv": "anomaly-free.csv", "test.csv": "0.csv"}
    assert metrics(at, "skab")["Channels"] == "3"  # anomaly, changepoint: not channels
    assert metrics(at, "skab")["Label ratio"] == "35.00%"

    picker = next(s for s in at.selectbox if s.label == "`0.csv`")
    picker.set_value("train").run()  # swapped by hand: the SKAB test file as training data
    next(s for s in at.selectbox if s.label == "`anomaly-free.csv`").set_value("ignore").run()
    assert not at.exception, at.exception
    meta = json.loads((workdir / "uploads" / KIND / "skab" / "upload.json").read_text())
    assert meta["files"] == {"train.csv": "0.csv"}
    assert any("marks 35.0% of the training rows as anomalies" in w.value
               for w in at.warning), [w.value for w in at.warning]


def test_naming_errors_are_shown_beside_the_uploader(at, workdir):
    upload(at, ("test.csv", csv()))
    assert "expected a training file too" in at.error[0].value
    upload(at, ("train.csv", csv()), name="sample")
    assert "reserved for the bundled sample" in at.error[0].value
    assert not (workdir / "uploads" / KIND).exists()
    assert expander_labels(at) == [SAMPLE_LABEL]
    upload(at)
    upload(at, ("a.csv", csv()), ("b.csv", csv()), name="ab")  # names that say nothing:
    assert at.success[0].value.startswith("Saved 'ab' (train `a.csv`, test `b.csv`)")  # guessed
    assert not at.error and roles(at) == {"a.csv": "train", "b.csv": "test"}


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
    box = expander(at, "bad_one")
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


# ---------------------------------------------------------------- images

IMG = "images"
IMG_FILES, IMG_FOLDER, IMG_NAME = f"data_{IMG}_files", f"data_{IMG}_folder", f"data_{IMG}_name"
IMG_SAMPLE_LABEL = "**sample** (bundled sample) · 60 training + 25 test images"


def png(value: int = 128, size: tuple[int, int] = (20, 16)) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", size, (value, value, 0)).save(buf, "PNG")
    return buf.getvalue()


def mvtec_zip(top: str = "part/", extra: tuple[tuple[str, bytes], ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel, data in [("train/good/0.png", png(90)), ("train/good/1.png", png(95)),
                          ("test/good/0.png", png(92)), ("test/dent/0.png", png(240)),
                          ("ground_truth/dent/0_mask.png", png(255)), *extra]:
            zf.writestr(top + rel, data)
    return buf.getvalue()


def upload_images(at: AppTest, *files: tuple[str, bytes], key: str = IMG_FILES,
                  name: str | None = None) -> None:
    if name is not None:
        at.text_input(key=IMG_NAME).input(name).run()
    mime = {"zip": "application/zip"}
    at.file_uploader(key=key).set_value(
        [(n, data, mime.get(n.rsplit(".", 1)[-1], "image/png")) for n, data in files] or None)
    at.run()
    assert not at.exception


def captions(box) -> list[str]:
    return [img.caption for img in box.get("image")[0].proto.imgs]


def test_images_uploaders_accept_files_zips_and_folders(at):
    files, folder = at.file_uploader(key=IMG_FILES), at.file_uploader(key=IMG_FOLDER)
    assert files.accept_multiple_files and not files.accept_directory
    assert files.allowed_type == [".zip", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"]
    assert folder.accept_directory and ".zip" not in folder.allowed_type
    assert "not available yet" not in [i.value for i in at.info]


def test_image_sample_is_shown_ready_with_counts_and_a_preview(at):
    assert section(at, IMG).header[0].value == "Images (Swin MAE)"
    assert expander_labels(at, IMG) == [IMG_SAMPLE_LABEL]
    assert metrics(at, "sample", IMG) == {
        "Training images": "60", "Test good": "10", "Test defect": "15", "Masks": "15"}
    box = expander(at, "sample", IMG)
    assert box.caption[0].value == ("Size: 96 × 96 px (width × height, smallest–largest) · "
                                    "mode: L (85 images)")
    assert "missing_pattern 5 · scratch 5 · spot 5" in box.caption[1].value
    shown = captions(box)
    assert len(shown) == 8 and sum(c.startswith("train: ") for c in shown) == 4
    assert {c.split(":")[0] for c in shown[4:]} == {
        "test missing_pattern", "test scratch", "test spot"}  # defects first, type by type


def test_image_zip_is_saved_at_once_and_summarised(at, workdir):
    upload_images(at, ("Part A.zip", mvtec_zip()))
    path = workdir / "uploads" / IMG / "Part_A"
    assert (path / "test" / "dent" / "0.png").is_file()  # the zip's top folder dropped
    assert [s.value for s in at.success] == [
        "Saved 'Part_A' (`Part A.zip`): 2 training + 2 test images."]
    assert "**Part_A** · 2 training + 2 test images" in expander_labels(at, IMG)
    assert metrics(at, "Part_A", IMG) == {
        "Training images": "2", "Test good": "1", "Test defect": "1", "Masks": "1"}
    box = expander(at, "Part_A", IMG)
    assert box.caption[0].value == "Uploaded as `Part A.zip`"
    assert box.caption[1].value.startswith("Size: 20 × 16 px")
    assert captions(box) == ["train: 0.png", "train: 1.png", "test dent: 0.png", "test good: 0.png"]

    at.button(key=f"data_{IMG}_Part_A_delete").click().run()
    assert not at.exception and not path.exists()
    assert expander_labels(at, IMG) == [IMG_SAMPLE_LABEL]


def test_mixed_sizes_and_modes_are_a_caption_not_a_cut_tile(at, workdir):
    upload_images(at, ("a.png", png(size=(121, 98))), ("b.png", png(size=(640, 480))),
                  ("c.png", png(size=(300, 300))), ("d.png", png(size=(200, 100))),
                  name="tiles")
    assert all(len(v) <= 8 for v in metrics(at, "tiles", IMG).values())
    sizes = [c.value for c in expander(at, "tiles", IMG).caption if c.value.startswith("Size")]
    assert sizes == ["Size: 121–640 × 98–480 px (width × height, smallest–largest) · "
                     "mode: RGB (4 images)"]


def test_image_files_and_a_folder_join_one_round(at, workdir):
    upload_images(at, ("a.png", png()), name="mixed")
    upload_images(at, ("shots/test/dent/9.png", png()), key=IMG_FOLDER)  # a folder, same round
    root = workdir / "uploads" / IMG / "mixed"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == [
        "test/dent/9.png", "train/good/a.png"]
    assert at.text_input(key=IMG_NAME).disabled
    assert "**mixed** · 1 training + 1 test images" in expander_labels(at, IMG)
    assert "1 of 1 defect images have no mask" in at.warning[0].value  # the notice, beside it


def test_a_folder_upload_keeps_its_layout_and_is_named_after_it(at, workdir):
    files = [f"shots/train/good/{i}.png" for i in range(3)] + ["shots/test/good/0.png",
                                                               "shots/misc/extra.png"]
    upload_images(at, *[(n, png()) for n in files], key=IMG_FOLDER)
    root = workdir / "uploads" / IMG / "shots"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == [
        "test/good/0.png", "train/good/0.png", "train/good/1.png", "train/good/2.png",
        "train/good/misc_extra.png"]
    assert section(at, IMG).warning[0].value == (
        "Saved 'shots' (the folder `shots`, 5 files): 4 training + 1 test images; "
        "test/ holds no defect images: image AUROC needs some")
    assert expander(at, "shots", IMG).caption[0].value == "Uploaded as the folder `shots`, 5 files"


@pytest.mark.parametrize("name, data, message", [
    ("broken.png", b"\x89PNG\r\n\x1a\n not really",
     "skipped as unreadable: train/good/broken.png: not a readable PNG"),
    ("moving.png", b"GIF89a" + b"\0" * 40,
     "train/good/moving.png: expected a PNG, JPEG, BMP or TIFF image, found GIF"),
])
def test_bad_image_shows_the_cores_error_naming_it(at, workdir, name, data, message):
    upload_images(at, (name, data), name="bad")
    errors = [e.value for e in section(at, IMG).error]
    assert len(errors) == 2 and all(message in e for e in errors)  # the notice and the dataset
    assert errors[0].startswith(f"Saved 'bad' (`{name}`), but it cannot be used as it is: ")
    assert "**bad** · ⚠️ cannot be used" in expander_labels(at, IMG)
    assert (workdir / "uploads" / IMG / "bad" / "train" / "good" / name).is_file()  # kept


def test_corrupt_image_in_a_zip_is_skipped_and_named(at):
    upload_images(at, ("z.zip", mvtec_zip("", (("train/good/2.png", b"\x89PNG\r\n\x1a\n x"),))))
    notice = section(at, IMG).warning[0].value
    assert notice.startswith("Saved 'z' (`z.zip`): 2 training + 2 test images; skipped 1 "
                             "unreadable file(s): train/good/2.png: not a readable PNG")
    assert any("train/good/2.png" in w.value for w in expander(at, "z", IMG).warning)


def test_refused_image_upload_shows_the_reason(at, workdir):
    upload_images(at, ("a.zip", mvtec_zip()), ("b.png", png()), name="two")
    assert "expected one .zip archive on its own" in section(at, IMG).error[0].value
    assert not (workdir / "uploads" / IMG / "two").exists()
