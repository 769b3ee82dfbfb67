"""`core.images.data`: listing and validating image datasets, and reading their pixels.

Datasets are written into tmp_path as tiny images (a few pixels); one test loads the real
magnetic-tile set from the shared datasets folder.
"""
from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from PIL import Image

from core.errors import DataError
from core.images.data import (ImageFolderDataset, ImageItem, load_image, load_image_dataset,
                              load_mask, pad_geometry, summarize_images)

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO.parent / "shared" / "datasets"
MAGNETIC_TILE = DATASETS / "magnetic_tile"


def write_image(path: Path, size: tuple[int, int] = (8, 6), value: int = 128, mode: str = "L",
                fmt: str | None = None) -> Path:
    """A uniform image of `size` (width, height) at `path` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, value // 2, 255 - value)
    Image.new(mode, size, color).save(path, format=fmt)
    return path


def write_mask(path: Path, size: tuple[int, int] = (8, 6)) -> Path:
    """A 0/255 mask of `size` with its left half set."""
    pixels = np.zeros(size[::-1], np.uint8)
    pixels[:, : size[0] // 2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_mvtec(root: Path) -> Path:
    """3 train, 1 test/good, 2 scratch (one without mask), 1 spot (a JPEG, mask by same stem)."""
    for name in ("a", "b", "c"):
        write_image(root / "train" / "good" / f"{name}.png")
    write_image(root / "test" / "good" / "g.png")
    write_image(root / "test" / "scratch" / "s1.png", value=200)
    write_image(root / "test" / "scratch" / "s2.png", value=200)
    write_image(root / "test" / "spot" / "p1.jpg", value=30, fmt="JPEG")
    write_mask(root / "ground_truth" / "scratch" / "s1_mask.png")
    write_mask(root / "ground_truth" / "spot" / "p1.png")
    return root


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as e:
        load_image_dataset(path, **kwargs)
    return str(e.value)


# ---------------------------------------------------------------- layouts

def test_mvtec_layout_labels_types_and_masks(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "ds")
    ds = load_image_dataset(root)
    assert [it.path.name for it in ds.train] == ["a.png", "b.png", "c.png"]
    assert all(it.label == 0 and it.defect_type == "good" for it in ds.train)
    by_name = {it.path.name: it for it in ds.test}
    assert [(n, it.label, it.defect_type) for n, it in by_name.items()] == [
        ("g.png", 0, "good"), ("s1.png", 1, "scratch"), ("s2.png", 1, "scratch"),
        ("p1.jpg", 1, "spot")]
    assert by_name["s1.png"].mask_path == root / "ground_truth" / "scratch" / "s1_mask.png"
    assert by_name["p1.jpg"].mask_path == root / "ground_truth" / "spot" / "p1.png"
    assert by_name["s2.png"].mask_path is None and by_name["g.png"].mask_path is None
    assert ds.skipped == [] and ds.layout == "mvtec"
    assert any("1 of 3 defect images have no mask" in w and "test/scratch/s2.png" in w
               for w in ds.warnings)
    summary = summarize_images(ds)
    json.dumps(summary)
    assert summary["counts"] == {"train": {"good": 3},
                                 "test": {"good": 1, "scratch": 2, "spot": 1}}
    assert (summary["test_good"], summary["test_defect"], summary["masks"]) == (1, 3, 2)
    assert summary["defects_without_mask"] == 1
    assert summary["width"] == [8, 8] and summary["height"] == [6, 6]
    assert summary["modes"] == {"L": 7} and summary["channels"] == 1


def test_flat_folder_is_all_training_images(tmp_path: Path) -> None:
    write_image(tmp_path / "x.png")
    write_image(tmp_path / "y.bmp", mode="RGB", fmt="BMP")
    write_image(tmp_path / "z.tif", size=(5, 9), fmt="TIFF")
    write_image(tmp_path / "jpeg-named.png", fmt="JPEG")  # content decides, not the name
    (tmp_path / "notes.txt").write_text("taken on line 3\n")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "upload.json").write_text("{}")  # the uploads store's metadata
    ds = load_image_dataset(tmp_path)
    assert ds.layout == "flat" and ds.test == []
    assert sorted(it.path.name for it in ds.train) == ["jpeg-named.png", "x.png", "y.bmp", "z.tif"]
    assert all(it.label == 0 and it.mask_path is None for it in ds.train)
    assert len(ds.warnings) == 1 and "ignored 1 entries" in ds.warnings[0]
    assert "notes.txt" in ds.warnings[0] and ".DS_Store" not in ds.warnings[0]
    summary = summarize_images(ds)
    assert summary["modes"] == {"L": 3, "RGB": 1} and summary["channels"] == 3
    assert summary["width"] == [5, 8] and summary["height"] == [6, 9]


@pytest.mark.parametrize("top", ["", "my_tiles/"])
def test_zip_with_or_without_a_top_level_folder(tmp_path: Path, top: str) -> None:
    root = make_mvtec(tmp_path / "src")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                z.write(path, top + path.relative_to(root).as_posix())
        z.writestr("__MACOSX/._a.png", b"resource fork")
    ds = load_image_dataset(archive, extract_to=tmp_path / "out")
    assert (len(ds.train), len(ds.test)) == (3, 4)
    assert ds.root == tmp_path / "out" / top.rstrip("/")
    assert all(it.path.is_relative_to(tmp_path / "out") for it in ds.train + ds.test)
    assert sum(it.mask_path is not None for it in ds.test) == 2
    assert len(load_image_dataset(archive).train) == 3  # default: a temporary folder


def test_a_file_that_is_not_a_zip_is_an_error(tmp_path: Path) -> None:
    path = write_image(tmp_path / "one.png")
    assert "one.png: expected a folder of images or a .zip archive" in error_of(path)
    assert "found nothing" in error_of(tmp_path / "missing")


# ---------------------------------------------------------------- broken input

def png_bytes(size: tuple[int, int] = (32, 32), fmt: str = "PNG") -> bytes:
    """A noisy image (so that it does not compress to a few bytes) as PNG or JPEG bytes."""
    noise = np.random.default_rng(0).integers(0, 256, size[::-1], dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, format=fmt)
    return out.getvalue()


CORRUPT = {
    "truncated.png": png_bytes()[:300],
    "truncated.jpg": png_bytes(fmt="JPEG")[:400],  # passes verify(); only load() notices
    "random.png": np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes(),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_file_is_skipped_or_fails(tmp_path: Path, name: str) -> None:
    root = make_mvtec(tmp_path / "ds")
    (root / "train" / "good" / name).write_bytes(CORRUPT[name])
    ds = load_image_dataset(root)
    assert len(ds.train) == 3
    assert len(ds.skipped) == 1 and ds.skipped[0].startswith(f"train/good/{name}: ")
    assert any(f"skipped 1 unreadable file(s): train/good/{name}" in w for w in ds.warnings)
    message = error_of(root, on_corrupt="fail")
    assert message.startswith(f"train/good/{name}: ") and "expected a complete" in message


def test_corrupt_defect_image_drops_its_mask_silently(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "ds")
    (root / "test" / "scratch" / "s1.png").write_bytes(CORRUPT["truncated.png"])
    ds = load_image_dataset(root)
    assert [it.path.name for it in ds.test if it.defect_type == "scratch"] == ["s2.png"]
    assert ds.skipped[0].startswith("test/scratch/s1.png")


@pytest.mark.parametrize("name, fmt", [("anim.gif", "GIF"), ("photo.webp", "WEBP"),
                                       ("gif-inside.png", "GIF")])
def test_unsupported_image_type_names_the_file(tmp_path: Path, name: str, fmt: str) -> None:
    root = make_mvtec(tmp_path / "ds")
    write_image(root / "test" / "good" / name, fmt=fmt)
    message = error_of(root)
    assert message.startswith(f"test/good/{name}: expected a PNG, JPEG, BMP or TIFF image")
    assert ("found GIF" if fmt == "GIF" else "found WebP") in message


def test_mask_without_image_is_an_error(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "ds")
    write_mask(root / "ground_truth" / "scratch" / "s9_mask.png")
    message = error_of(root)
    assert message == ("ground_truth/scratch/s9_mask.png: expected an image test/scratch/s9.* "
                       "for this mask, found none")


def test_mask_of_another_size_names_both_and_their_sizes(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "ds")
    write_mask(root / "ground_truth" / "scratch" / "s2_mask.png", size=(9, 6))
    message = error_of(root)
    assert "ground_truth/scratch/s2_mask.png is 9×6" in message
    assert "test/scratch/s2.png is 8×6" in message and "expected the same size" in message


def test_two_masks_for_one_image_is_an_error(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "ds")
    write_mask(root / "ground_truth" / "scratch" / "s1.png")
    assert "test/scratch/s1.png has two masks" in error_of(root)


def test_empty_or_unusable_folders_say_what_was_expected_and_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    message = error_of(tmp_path / "empty")
    assert "expected PNG, JPEG, BMP or TIFF images in train/good/" in message
    assert message.endswith("found an empty folder")
    write_image(tmp_path / "no_train" / "test" / "good" / "g.png")
    assert error_of(tmp_path / "no_train").endswith("found test/ but no train/ folder")
    (tmp_path / "no_good" / "train" / "good").mkdir(parents=True)
    (tmp_path / "no_good" / "train" / "good" / "readme.txt").write_text("x")
    assert error_of(tmp_path / "no_good").endswith("found train/good/readme.txt")
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "a.png").write_bytes(CORRUPT["random.png"])
    assert "skipped as unreadable: a.png: not a readable" in error_of(only_broken)


def test_bad_on_corrupt_value_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_corrupt"):
        load_image_dataset(tmp_path, on_corrupt="ignore")


# ---------------------------------------------------------------- pixels

def test_load_image_shapes_and_ranges_for_l_and_rgb(tmp_path: Path) -> None:
    gray = write_image(tmp_path / "g.png", size=(10, 7), value=51)
    rgb = write_image(tmp_path / "c.png", size=(10, 7), value=204, mode="RGB")
    for path in (gray, rgb):
        for channels in (1, 3):
            x = load_image(path, 16, channels)
            assert x.shape == (channels, 16, 16) and x.dtype == np.float32
            assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(load_image(gray, 16, 3), 0.2, atol=1e-6)  # gray repeated
    np.testing.assert_allclose(load_image(rgb, 16, 3)[:, 0, 0], [0.8, 0.4, 51 / 255], atol=1e-6)


def test_sixteen_bit_gray_keeps_its_scale(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(path)
    np.testing.assert_allclose(load_image(path, 4, 1), 32768 / 65535, atol=1e-6)


def test_resize_stretches_and_pad_keeps_the_aspect(tmp_path: Path) -> None:
    wide = write_image(tmp_path / "wide.png", size=(40, 20), value=255)  # 2:1
    np.testing.assert_allclose(load_image(wide, 20, 1, "resize"), 1.0)
    assert pad_geometry(40, 20, 20) == (20, 10, 0, 5)
    padded = load_image(wide, 20, 1, "pad")[0]
    assert (padded[:5] == 0).all() and (padded[15:] == 0).all()  # black bands above and below
    np.testing.assert_allclose(padded[5:15], 1.0)  # the image in the middle band
    tall = write_image(tmp_path / "tall.png", size=(10, 30), value=255)
    assert (load_image(tall, 30, 1, "pad")[0].sum(axis=0) > 0).sum() == 10  # middle columns


def test_load_mask_is_nearest_and_binary(tmp_path: Path) -> None:
    checker = (np.indices((4, 4)).sum(axis=0) % 2 * 255).astype(np.uint8)
    Image.fromarray(checker).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", 8)
    assert mask.dtype == np.uint8 and mask.shape == (8, 8)
    np.testing.assert_array_equal(mask, np.kron(checker // 255, np.ones((2, 2), np.uint8)))
    Image.fromarray(checker // 255).save(tmp_path / "m01.png")  # a mask stored as 0/1
    np.testing.assert_array_equal(load_mask(tmp_path / "m01.png", 8), mask)
    np.testing.assert_array_equal(load_mask(None, 5), np.zeros((5, 5), np.uint8))
    write_mask(tmp_path / "wide.png", size=(40, 20))
    padded = load_mask(tmp_path / "wide.png", 20, "pad")  # same geometry as load_image
    assert padded[:5].sum() == 0 and padded[15:].sum() == 0 and padded[5:15, :10].all()


def test_unreadable_file_at_load_time_names_it(tmp_path: Path) -> None:
    path = tmp_path / "gone.png"
    path.write_bytes(CORRUPT["truncated.png"])
    with pytest.raises(DataError, match="gone.png: cannot be read"):
        load_image(path, 8, 1)


# ---------------------------------------------------------------- torch dataset

def test_folder_dataset_is_lazy_and_gives_tensors(tmp_path: Path, monkeypatch) -> None:
    ds = load_image_dataset(make_mvtec(tmp_path / "ds"))
    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open",
                        lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    data = ImageFolderDataset(ds.test, 16, 3, with_masks=True)
    assert opened == [] and len(data) == 4
    item = data[1]
    assert opened, "files are opened when an item is read"
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (16, 16) and item["mask"].dtype == torch.uint8
    assert (item["label"], item["index"], item["mask_known"]) == (1, 1, True)
    assert item["mask"][:, :8].all() and not item["mask"][:, 8:].any()
    assert data[2]["mask_known"] is False and data[0]["mask_known"] is True  # s2; good
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["label"].tolist() == [0, 1, 1, 1]
    assert "mask" not in ImageFolderDataset(ds.train, 8, 1)[0]


def test_hflip_flips_image_and_mask_together(tmp_path: Path) -> None:
    pixels = np.zeros((6, 8), np.uint8)
    pixels[:, :4] = 255
    Image.fromarray(pixels).save(tmp_path / "half.png")
    write_mask(tmp_path / "half_mask.png")  # the same left half
    item = ImageItem(tmp_path / "half.png", 1, "x", tmp_path / "half_mask.png")
    data = ImageFolderDataset([item], 8, 1, with_masks=True, hflip=True)
    torch.manual_seed(0)
    lefts = set()
    for _ in range(12):
        out = data[0]
        left = bool(out["image"][0, :, 0].mean() > 0.5)
        assert left == bool(out["mask"][:, 0].all())
        lefts.add(left)
    assert lefts == {True, False}


def test_bad_arguments_are_value_errors(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png")
    for kwargs in ({"size": 0, "channels": 1}, {"size": 8, "channels": 2},
                   {"size": 8, "channels": 1, "resize": "crop"}):
        with pytest.raises(ValueError):
            load_image(path, **kwargs)


# ---------------------------------------------------------------- real data

def test_magnetic_tile_loads_with_the_expected_counts() -> None:
    start = time.perf_counter()
    ds = load_image_dataset(MAGNETIC_TILE)
    seconds = time.perf_counter() - start
    summary = summarize_images(ds)
    assert (summary["train"], summary["test_good"], summary["test_defect"]) == (762, 95, 303)
    assert summary["masks"] == 303 and summary["defects_without_mask"] == 0
    assert summary["counts"]["test"] == {"defect": 303, "good": 95}
    assert summary["modes"] == {"L": 1160} and summary["channels"] == 1
    assert ds.skipped == [] and ds.warnings == []
    assert all(it.mask_path.name == f"{it.path.stem}_mask.png" for it in ds.test if it.label)
    assert seconds < 60, f"listing took {seconds:.1f} s"
