"""core.uploads: safe names, roles from file names, the dataset store (save, replace within an
upload round, list, delete), summaries, image datasets (zip or files → MVTec)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, make_series, make_zip
from core import uploads
from core.errors import DataError
from core.figures.data import preview_figure, thin_split
from core.images.uploads import image_paths, save_image_dataset
from core.timeseries import uploads as ts_uploads
from core.timeseries.uploads import assign_roles, save_timeseries_dataset
from core.uploads import Dataset, dataset_summary, delete_dataset, list_datasets, sanitize_name

SAMPLE_DIR = REPO / "data" / "samples" / "timeseries"
IMAGE_SAMPLE_DIR = REPO / "data" / "samples" / "images"


def csv_bytes(rows: int = 300, seed: int = 0, **extra) -> bytes:
    frame = make_series(rows, seed)
    for column, values in extra.items():
        frame[column] = values
    return frame.to_csv(index=False).encode()


# ---------------------------------------------------------------- sanitize_name

@pytest.mark.parametrize("raw, expected", [
    ("../../etc/passwd", "passwd"),
    ("C:\\x\\y.csv", "y.csv"),
    (".hidden", "hidden"),
    ("..secret..", "secret"),
    ("Données été.csv", "Donnees_ete.csv"),
    ("my  data (v2).csv", "my_data_v2_.csv"),
    ("-rf", "rf"),
    ("machine-1-1", "machine-1-1"),
    ("dir/file.csv.gz", "file.csv.gz"),
    ("数据2", "_2"),
])
def test_sanitize_name(raw, expected):
    assert sanitize_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", ".", "..", "../..", "a/", "数据", "___", "..."])
def test_sanitize_name_refuses_names_with_nothing_left(raw):
    with pytest.raises(DataError, match="expected at least one letter"):
        sanitize_name(raw)


def test_sanitize_name_caps_length_and_is_idempotent():
    name = sanitize_name("x" * 300 + ".csv")
    assert len(name) == uploads.MAX_NAME and set(name) == {"x"}
    for raw in ("../../etc/passwd", "Données été.csv", ".hidden", "a" * 150):
        once = sanitize_name(raw)
        assert sanitize_name(once) == once


def test_free_name_never_collides(tmp_path):
    for name in ("train", "train-2", "Images"):
        ts_uploads.save_timeseries_dataset(tmp_path, name, ("train.csv", b"a\n1\n2\n"))
    assert uploads.free_name(tmp_path, "timeseries", "train") == "train-3"
    assert uploads.free_name(tmp_path, "timeseries", "images") == "images-2"  # case ignored
    assert uploads.free_name(tmp_path, "timeseries", "sample") == "sample-2"  # reserved
    assert uploads.free_name(tmp_path, "timeseries", "machine 1") == "machine_1"
    assert uploads.free_name(tmp_path, "images", "train") == "train"  # per data kind


# ---------------------------------------------------------------- assign_roles

def roles_of(*names: str) -> dict[str, str]:
    return {role: up[0] for role, up in assign_roles([(n, b"") for n in names]).items()}


@pytest.mark.parametrize("names, expected", [
    (["train.csv"], {"train": "train.csv"}),
    (["machine-1.csv"], {"train": "machine-1.csv"}),  # one file: the training data
    (["TRAIN_m1.CSV.GZ", "Test_m1.csv"],
     {"train": "TRAIN_m1.CSV.GZ", "test": "Test_m1.csv"}),
    (["test_label.csv", "test.csv", "train.csv"],
     {"labels": "test_label.csv", "test": "test.csv", "train": "train.csv"}),
    (["labels.csv", "testing.csv", "training.csv"],
     {"labels": "labels.csv", "test": "testing.csv", "train": "training.csv"}),
    (["label.csv.gz", "test.gz", "train.gz"],
     {"labels": "label.csv.gz", "test": "test.gz", "train": "train.gz"}),
    (["dir/test_labels.csv", "train.csv", "test.csv"],
     {"labels": "dir/test_labels.csv", "train": "train.csv", "test": "test.csv"}),
])
def test_assign_roles_from_names(names, expected):
    assert roles_of(*names) == expected


@pytest.mark.parametrize("names, message", [
    ([], "expected at least one CSV file .*found none"),
    (["train.csv", "m1.csv", "x.csv"],
     r"^'m1.csv', 'x.csv': cannot tell which file is which; expected names starting with "
     r"train, test or test_label \(train.csv, test.csv, test_label.csv\), or a role picked "
     r"for each file$"),
    (["a.csv", "b.csv"], "^'a.csv', 'b.csv': cannot tell"),
    (["train.csv", "train_2.csv"], "^'train.csv', 'train_2.csv': expected one train file, found 2"),
    (["train.csv", "labels.csv", "test_label.csv"], "expected one labels file, found 2"),
    (["test.csv"], r"^'test.csv': expected a training file too \(a name starting with train"),
    (["test.csv", "labels.csv"], "^'test.csv', 'labels.csv': expected a training file too"),
])
def test_assign_roles_refuses_what_it_cannot_tell(names, message):
    with pytest.raises(DataError, match=message):
        roles_of(*names)


def test_picked_roles_win_over_names_and_ignore_leaves_a_file_out():
    ups = [(n, b"") for n in ("anomaly-free.csv", "0.csv", "train.csv")]
    picked = {"anomaly-free.csv": "train", "0.csv": "test", "train.csv": "ignore"}
    assert {r: up[0] for r, up in assign_roles(ups, picked).items()} == {
        "train": "anomaly-free.csv", "test": "0.csv"}
    with pytest.raises(DataError, match="expected one test file, found 2"):
        assign_roles(ups, {"anomaly-free.csv": "test", "0.csv": "test"})
    with pytest.raises(DataError, match="or a file picked as train"):
        assign_roles(ups, {"train.csv": "ignore"} | {"anomaly-free.csv": "test",
                                                       "0.csv": "labels"})


def skab_csv(anomalies: int, rows: int = 20) -> bytes:
    """SKAB's layout: `;`-separated, a datetime, channels, then `anomaly` and `changepoint`."""
    lines = ["datetime;Accelerometer1RMS;Temperature;anomaly;changepoint"]
    lines += [f"2020-03-09 10:{i:02d}:00;0.02{i};90.{i};{int(i < anomalies)}.0;0.0"
              for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def test_guess_roles_fills_unknown_names_from_their_labels():
    # SKAB: the anomaly-free file is the training data even when it comes second
    ups = [("valve1/0.csv", skab_csv(7)), ("anomaly-free.csv", skab_csv(0))]
    assert ts_uploads.guess_roles(ups) == {"anomaly-free.csv": "train", "valve1/0.csv": "test"}
    assert ts_uploads.labelled_share(ups[0]) == pytest.approx(0.35)
    assert ts_uploads.labelled_share(("x.csv", b"a,b\n1,2\n")) is None
    assert ts_uploads.guess_roles([("test.csv", b""), ("a.csv", b""), ("b.csv", b"")]) == {
        "test.csv": "test", "a.csv": "train", "b.csv": "ignore"}
    assert ts_uploads.guess_roles([("readings.csv", skab_csv(3))]) == {"readings.csv": "train"}


def test_a_training_file_with_labelled_anomalies_is_warned_about(tmp_path):
    ts_uploads.save_timeseries_dataset(tmp_path, "skab", ("valve1/0.csv", skab_csv(7)))
    summary = dataset_summary(tmp_path / "uploads" / "timeseries" / "skab")
    assert summary["error"] is None and summary["channels"]["names"] == [
        "Accelerometer1RMS", "Temperature"]  # label-like columns are never channels
    assert any("marks 35.0% of the training rows as anomalies" in w
               for w in summary["warnings"]), summary["warnings"]


def test_assign_roles_keeps_the_content_objects():
    train, test = io.BytesIO(b"a\n1\n"), io.BytesIO(b"a\n2\n")
    roles = assign_roles([("test.csv", test), ("train.csv", train)])
    assert roles == {"test": ("test.csv", test), "train": ("train.csv", train)}


# ---------------------------------------------------------------- save / list / delete

def test_save_list_delete_round_trip(tmp_path):
    labels = ("labels.csv", b"label\n" + b"0\n" * 299 + b"1\n")
    path = save_timeseries_dataset(tmp_path, "../My Data", ("m1.csv", csv_bytes()),
                                   ("m1_test.csv", csv_bytes(300, 1)), labels)
    assert path == tmp_path / "uploads" / "timeseries" / "My_Data"
    assert sorted(p.name for p in path.iterdir()) == [
        "test.csv", "test_label.csv", "train.csv", "upload.json"]
    meta = json.loads((path / "upload.json").read_text())
    assert meta["files"] == {"train.csv": "m1.csv", "test.csv": "m1_test.csv",
                             "test_label.csv": "labels.csv"}
    assert (path / "train.csv").read_bytes() == csv_bytes()
    assert [f["uploaded_as"] for f in uploads.stored_files(path)] == [
        "m1_test.csv", "labels.csv", "m1.csv"]
    summary = dataset_summary(path)
    assert summary["error"] is None
    assert summary["train"]["rows"] == 300 and summary["channels"]["count"] == 3
    assert summary["test"]["label_ratio"] == pytest.approx(1 / 300)

    save_timeseries_dataset(tmp_path, "alpha", ("a.csv", csv_bytes()))
    names = [d.name for d in list_datasets(tmp_path, "timeseries")]
    assert names == ["sample", "alpha", "My_Data"]  # sample first, then by name (any case)

    delete_dataset(tmp_path, "timeseries", "My_Data")
    assert not path.exists()
    assert [d.name for d in list_datasets(tmp_path, "timeseries")] == ["sample", "alpha"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["alpha"]  # no staging/trash left


def test_sample_is_listed_first_and_read_only(tmp_path):
    datasets = list_datasets(tmp_path, "timeseries")  # no uploads folder yet
    assert datasets == [Dataset("sample", SAMPLE_DIR, True)]
    assert dataset_summary(SAMPLE_DIR)["error"] is None
    with pytest.raises(DataError, match="read-only"):
        delete_dataset(tmp_path, "timeseries", "sample")
    assert (SAMPLE_DIR / "train.csv").is_file()
    with pytest.raises(DataError, match="reserved"):
        save_timeseries_dataset(tmp_path, "sample", ("train.csv", csv_bytes()))


def test_save_keeps_gzip_and_takes_file_objects(tmp_path):
    import gzip
    upload = io.BytesIO(gzip.compress(csv_bytes()))
    upload.read()  # a stream already read to the end is rewound
    path = save_timeseries_dataset(tmp_path, "zipped", ("m1.csv.gz", upload),
                                   ("t.GZ", gzip.compress(csv_bytes(100, 2))))
    assert sorted(p.name for p in path.iterdir()) == ["test.csv.gz", "train.csv.gz", "upload.json"]
    summary = dataset_summary(path)
    assert summary["error"] is None and summary["test"]["rows"] == 100


@pytest.mark.parametrize("kwargs, message", [
    ({"train": ("train.txt", b"a\n1\n")}, r"train.txt \(training data\): expected a .csv"),
    ({"train": ("train.csv", b"a\n1\n"), "labels": ("l.csv", b"label\n0\n")},
     "expected a test CSV too"),
    ({"train": ("train.csv", b"a\n1\n"), "dataset": "???"}, "expected at least one letter"),
])
def test_save_refuses_bad_requests_and_writes_nothing(tmp_path, kwargs, message):
    kwargs = {"dataset": "d"} | kwargs
    with pytest.raises(DataError, match=message):
        save_timeseries_dataset(tmp_path, **kwargs)
    folder = tmp_path / "uploads" / "timeseries"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_save_refuses_an_existing_name(tmp_path):
    first = save_timeseries_dataset(tmp_path, "d", ("a.csv", csv_bytes()))
    with pytest.raises(DataError, match="'d' already exists"):
        save_timeseries_dataset(tmp_path, "d", ("b.csv", b"x\n1\n2\n"))
    assert (first / "train.csv").read_bytes() == csv_bytes()  # the old one is untouched
    assert [p.name for p in first.parent.iterdir()] == ["d"]


def stored_names(path: Path) -> list[str]:
    return [f["name"] for f in uploads.stored_files(path)]


def hidden_leftovers(ws: Path) -> list[str]:
    return [p.name for p in (ws / "uploads" / "timeseries").iterdir() if p.name.startswith(".")]


def test_saving_again_in_the_same_round_replaces_that_dataset(tmp_path):
    first = save_timeseries_dataset(tmp_path, "d", ("train.csv", csv_bytes()), round_id="r1")
    assert json.loads((first / "upload.json").read_text())["round"] == "r1"
    again = save_timeseries_dataset(tmp_path, "d", ("train.csv", csv_bytes(200, 1)),
                                    ("test.csv.gz", b"gz"), round_id="r1")
    assert again == first
    assert sorted(p.name for p in again.iterdir()) == ["test.csv.gz", "train.csv", "upload.json"]
    assert (again / "train.csv").read_bytes() == csv_bytes(200, 1)
    assert json.loads((again / "upload.json").read_text())["files"] == {
        "train.csv": "train.csv", "test.csv.gz": "test.csv.gz"}
    shrunk = save_timeseries_dataset(tmp_path, "d", ("t.csv", csv_bytes()), round_id="r1")
    assert sorted(p.name for p in shrunk.iterdir()) == ["train.csv", "upload.json"]
    assert hidden_leftovers(tmp_path) == []


@pytest.mark.parametrize("saved_by, saving_as", [("r1", "r2"), ("r1", None), (None, "r1"),
                                                  (None, None)])
def test_another_round_never_replaces_a_dataset(tmp_path, saved_by, saving_as):
    first = save_timeseries_dataset(tmp_path, "d", ("a.csv", csv_bytes()), round_id=saved_by)
    with pytest.raises(DataError, match="'d' already exists"):
        save_timeseries_dataset(tmp_path, "d", ("b.csv", b"x\n1\n"), round_id=saving_as)
    assert (first / "train.csv").read_bytes() == csv_bytes()
    assert stored_names(first) == ["train.csv"] and hidden_leftovers(tmp_path) == []


def test_a_round_whose_dataset_was_deleted_saves_it_afresh(tmp_path):
    save_timeseries_dataset(tmp_path, "d", ("a.csv", csv_bytes()), round_id="r1")
    delete_dataset(tmp_path, "timeseries", "d")
    path = save_timeseries_dataset(tmp_path, "d", ("a.csv", csv_bytes(50)), round_id="r1")
    assert stored_names(path) == ["train.csv"] and hidden_leftovers(tmp_path) == []
    delete_dataset(tmp_path, "timeseries", "d")  # another tab took the name meanwhile
    save_timeseries_dataset(tmp_path, "d", ("b.csv", csv_bytes(60)), round_id="other tab")
    with pytest.raises(DataError, match="already exists"):
        save_timeseries_dataset(tmp_path, "d", ("a.csv", csv_bytes(50)), round_id="r1")
    assert dataset_summary(path)["train"]["rows"] == 60


def test_a_refused_replace_keeps_the_round_dataset(tmp_path):
    path = save_timeseries_dataset(tmp_path, "d", ("a.csv", csv_bytes()), round_id="r1")
    with pytest.raises(DataError, match="expected a .csv"):
        save_timeseries_dataset(tmp_path, "d", ("a.csv", csv_bytes()), ("t.txt", b""),
                                round_id="r1")
    assert stored_names(path) == ["train.csv"] and hidden_leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["../timeseries", "..", ".", "", "a/../../b", "/etc",
                                  "missing", ".staging-x"])
def test_delete_guards_against_traversal_and_missing(tmp_path, name):
    save_timeseries_dataset(tmp_path, "keep", ("a.csv", csv_bytes()))
    (tmp_path / "uploads" / "timeseries" / ".staging-x").mkdir()
    with pytest.raises(DataError, match="no dataset"):
        delete_dataset(tmp_path, "timeseries", name)
    assert (tmp_path / "uploads" / "timeseries" / "keep" / "train.csv").is_file()


def test_bad_csv_summary_names_the_column_and_keeps_the_files(tmp_path):
    bad = csv_bytes(50, status=["ok"] * 49 + ["bad"])
    path = save_timeseries_dataset(tmp_path, "bad", ("sensors.csv", bad))
    summary = dataset_summary(path)
    assert summary["error"] == (
        "train.csv: column 'status' row 1: expected a number, found 'ok' "
        "('timestamp' is the timestamp column; only one is kept)")
    assert summary == {"error": summary["error"], "warnings": []}  # nothing else on error
    assert (path / "train.csv").read_bytes() == bad  # kept: the user decides to delete
    assert [d.name for d in list_datasets(tmp_path, "timeseries")] == ["sample", "bad"]


def test_dataset_stamp_changes_with_the_files(tmp_path):
    path = save_timeseries_dataset(tmp_path, "d", ("a.csv", csv_bytes()))
    before = uploads.dataset_stamp(path)
    (path / "train.csv").write_bytes(csv_bytes(301))
    assert uploads.dataset_stamp(path) != before
    assert uploads.dataset_stamp(tmp_path / "nothing") == ()


# ---------------------------------------------------------------- preview figure

def test_preview_figure_axes_legend_and_labels():
    frame = make_series(5000, 0)
    labels = np.zeros(5000, dtype=np.int8)
    labels[4000:4003] = 1
    fig = preview_figure(frame[["a", "b", "c"]].to_numpy(), ["a", "b", "c"],
                         frame["timestamp"].to_numpy(), max_channels=2, max_points=1000,
                         labels=labels)
    names = [t.name for t in fig.data]
    assert names == ["a", "b", "anomaly (label)"]
    assert all(len(t.x) <= 1000 for t in fig.data)
    assert fig.data[2].y.max() == 1  # the 3-row anomaly survives thinning
    assert fig.layout.showlegend and fig.layout.height >= 300
    assert fig.layout.xaxis3.title.text == "time"
    assert str(fig.data[0].x[0]).startswith("2026-01-01")

    plain = preview_figure(np.arange(20.0)[:, None], ["only"])
    assert plain.layout.xaxis.title.text == "row" and list(plain.data[0].x) == list(range(20))


def test_thin_split_without_timestamps_and_choosing_channels():
    from core.figures.data import draw_preview
    preview = thin_split(np.random.default_rng(0).normal(size=(3000, 5)), list("vwxyz"),
                         max_points=500)
    assert preview.x_title == "row" and preview.n_rows == 3000 and preview.x.shape[0] <= 500
    fig = draw_preview(preview, ["z", "v", "not a channel"])
    assert [t.name for t in fig.data] == ["z", "v"]


# ---------------------------------------------------------------- image datasets

def png(value: int = 128, size: tuple[int, int] = (16, 12)) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("L", size, value).save(buf, "PNG")
    return buf.getvalue()


def mvtec(top: str = "") -> list[tuple[str, bytes]]:
    """A tiny MVTec tree: 3 training images, a good and a crack test image, the crack's mask."""
    return [(f"{top}{rel}", data) for rel, data in [
        ("train/good/000.png", png(100)), ("train/good/001.png", png(110)),
        ("train/good/002.png", png(120)), ("test/good/000.png", png(105)),
        ("test/crack/000.png", png(200)), ("ground_truth/crack/000_mask.png", png(255))]]


def tree(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


MVTEC_TREE = ["ground_truth/crack/000_mask.png", "test/crack/000.png", "test/good/000.png",
              "train/good/000.png", "train/good/001.png", "train/good/002.png", "upload.json"]


@pytest.mark.parametrize("top", ["", "bottle/"])
def test_image_zip_is_stored_as_an_mvtec_tree(tmp_path, top):
    members = [*mvtec(top), ("__MACOSX/._x.png", b"mac clutter")]
    path = save_image_dataset(tmp_path, "bottle", [("Bottle.zip", io.BytesIO(make_zip(*members)))])
    assert path == tmp_path / "uploads" / "images" / "bottle"
    assert [t for t in tree(path) if not t.startswith("__MACOSX")] == MVTEC_TREE  # top dropped
    assert json.loads((path / "upload.json").read_text())["uploaded"] == ["Bottle.zip"]
    summary = dataset_summary(path, "images")
    assert summary["error"] is None and summary["warnings"] == []
    assert (summary["train"], summary["test_good"], summary["test_defect"], summary["masks"]) == (
        3, 1, 1, 1)


def test_loose_images_go_to_train_good_and_folder_paths_keep_the_layout(tmp_path):
    path = save_image_dataset(tmp_path, "loose", [("Photo 1.PNG", png()), ("b.jpg", png())])
    assert tree(path) == ["train/good/Photo_1.PNG", "train/good/b.jpg", "upload.json"]
    # a folder upload: names are paths inside the chosen folder ("bottle"), which is dropped
    path = save_image_dataset(tmp_path, "folder", [*mvtec("bottle/"), ("bottle/extra/x y.png",
                                                                       png())])
    assert tree(path) == sorted([*MVTEC_TREE, "train/good/extra_x_y.png"])
    assert dataset_summary(path, "images")["train"] == 4
    flat = save_image_dataset(tmp_path, "flat", [("a.zip", make_zip(("x.png", png()),
                                                                    ("y.png", png())))])
    assert tree(flat) == ["upload.json", "x.png", "y.png"]  # a flat folder: training images
    assert dataset_summary(flat, "images")["layout"] == "flat"


@pytest.mark.parametrize("files, message", [
    ([("../x.png", b"")], "found '..'"),
    ([("/etc/x.png", b"")], "found an absolute one"),
    ([("notes.txt", b"")], r"notes.txt: expected a .zip archive or a PNG, JPEG, BMP or TIFF image"),
    ([("a b.png", b""), ("a_b.png", b"")], "would all be stored as train/good/a_b.png"),
    ([("a.zip", b""), ("b.png", b"")], "expected one .zip archive on its own"),
    ([], "found none"),
    ([("a.zip", make_zip(("ok.png", b"x"), ("../evil.png", b"x")))],
     "^a.zip: zip member '../evil.png': expected a path inside the upload, found '..'"),
    ([("a.zip", b"not a zip")], "^a.zip: expected a zip archive"),
])
def test_image_save_refuses_unsafe_or_unknown_files_and_writes_nothing(tmp_path, files, message):
    with pytest.raises(DataError, match=message):
        save_image_dataset(tmp_path, "d", files)
    assert not (tmp_path / "evil.png").exists()
    folder = tmp_path / "uploads" / "images"
    assert not folder.exists() or list(folder.iterdir()) == []  # no dataset, no staging left


def test_image_paths_skips_system_files():
    assert list(image_paths([("d/.DS_Store.png", b""), ("d/x.png", b"")])) == ["train/good/x.png"]
    with pytest.raises(DataError, match="found only files the system hides"):
        image_paths([("._x.png", b"")])


def test_image_round_replaces_its_own_dataset_only(tmp_path):
    first = save_image_dataset(tmp_path, "d", [("a.png", png())], round_id="r1")
    again = save_image_dataset(tmp_path, "d", [("a.png", png()), ("b.png", png())], round_id="r1")
    assert again == first and tree(again) == ["train/good/a.png", "train/good/b.png", "upload.json"]
    with pytest.raises(DataError, match="'d' already exists"):
        save_image_dataset(tmp_path, "d", [("c.png", png())], round_id="r2")
    with pytest.raises(DataError, match="reserved"):
        save_image_dataset(tmp_path, "sample", [("c.png", png())])
    assert [d.name for d in list_datasets(tmp_path, "images")] == ["sample", "d"]
    assert [p.name for p in (tmp_path / "uploads" / "images").iterdir()] == ["d"]


def test_corrupt_image_is_the_cores_error_and_the_files_are_kept(tmp_path):
    path = save_image_dataset(tmp_path, "bad", [("broken.png", b"\x89PNG\r\n\x1a\n garbage")])
    summary, ds = uploads.check_dataset(path, "images")
    assert ds is None and "train/good/broken.png: cannot be decoded" in summary["error"]
    assert (path / "train" / "good" / "broken.png").is_file()
    gif = save_image_dataset(tmp_path, "gif", [("anim.png", b"GIF89a" + b"\0" * 30)])
    assert dataset_summary(gif, "images")["error"].startswith(
        "train/good/anim.png: expected a PNG, JPEG, BMP or TIFF image, found GIF")


def test_bundled_image_sample_is_listed_and_valid(tmp_path):
    assert list_datasets(tmp_path, "images") == [Dataset("sample", IMAGE_SAMPLE_DIR, True)]
    summary, ds = uploads.check_dataset(IMAGE_SAMPLE_DIR, "images")
    assert summary["error"] is None and summary["warnings"] == []
    assert (summary["train"], summary["test"], summary["masks"]) == (60, 25, 15)
    assert len(ds.train) == 60 and summary["modes"] == {"L": 85}
