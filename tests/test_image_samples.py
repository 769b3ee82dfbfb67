"""The bundled image sample (`data/samples/images/`) and its generator `data/make_image_samples.py`.

The committed files must be exactly what the generator writes, load as a valid MVTec-layout
dataset with every defect masked, and carry defects that a detector can find in principle.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from core.images.data import load_image_dataset, summarize_images

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data" / "make_image_samples.py"
SAMPLES = REPO / "data" / "samples" / "images"


def load_script() -> ModuleType:
    """Import `data/make_image_samples.py` by path (`data/` is not a package)."""
    spec = importlib.util.spec_from_file_location("make_image_samples", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return load_script()


def tree(root: Path) -> dict[str, bytes]:
    """{relative path: content} of every file under `root`."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64) / 255.0


def test_committed_files_exist_and_are_small(gen: ModuleType) -> None:
    files = tree(SAMPLES)
    expected = gen.N_TRAIN + gen.N_TEST_GOOD + 2 * gen.N_PER_DEFECT * len(gen.DEFECT_TYPES)
    assert len(files) == expected, f"run `python data/make_image_samples.py` ({len(files)} files)"
    assert all(name.endswith(".png") for name in files)
    assert sum(map(len, files.values())) < 1_500_000


def test_regenerating_gives_byte_identical_files(gen: ModuleType, tmp_path: Path, capsys) -> None:
    written = gen.main(tmp_path / "fresh")
    assert "100 PNGs" in capsys.readouterr().out
    fresh, committed = tree(tmp_path / "fresh"), tree(SAMPLES)
    assert sorted(fresh) == sorted(committed), "file lists differ (a stale committed file?)"
    differing = [name for name in fresh if fresh[name] != committed[name]]
    assert differing == [], f"differ from a fresh run: {differing[:5]}"
    assert len(written) == len(fresh)


def test_layout_and_mask_pairing_are_valid(gen: ModuleType) -> None:
    ds = load_image_dataset(SAMPLES, on_corrupt="fail")
    summary = summarize_images(ds)
    assert ds.warnings == [] and ds.skipped == []
    assert summary["counts"] == {
        "train": {"good": gen.N_TRAIN},
        "test": {"good": gen.N_TEST_GOOD, **{t: gen.N_PER_DEFECT for t in gen.DEFECT_TYPES}}}
    assert summary["masks"] == gen.N_PER_DEFECT * len(gen.DEFECT_TYPES)
    assert summary["width"] == summary["height"] == [gen.SIZE, gen.SIZE]
    assert summary["modes"] == {"L": len(ds.train) + len(ds.test)}
    for item in ds.test:
        if item.label:
            mask = np.asarray(Image.open(item.mask_path))
            assert set(np.unique(mask)) == {0, 255}, item.mask_path
            assert 10 <= (mask > 0).sum() <= 0.1 * mask.size  # small but not a speck


def test_defects_differ_from_normal_texture(gen: ModuleType) -> None:
    normal = np.stack([pixels(p) for p in sorted((SAMPLES / "train" / "good").glob("*.png"))])
    mean = normal.mean()
    # the bump grid's local contrast: std over PERIOD×PERIOD tiles of normal images
    tiles = normal[:, :88, :88].reshape(len(normal), 11, 8, 11, 8)
    local_std = tiles.std(axis=(2, 4)).mean()
    for kind in gen.DEFECT_TYPES:
        for path in sorted((SAMPLES / "test" / kind).glob("*.png")):
            image = pixels(path)
            inside = image[pixels(SAMPLES / "ground_truth" / kind / f"{path.stem}_mask.png") > 0]
            if kind == "scratch":
                assert inside.mean() > mean + 0.15, path
            elif kind == "spot":
                assert inside.mean() < mean - 0.15, path
            else:  # same brightness, but the pattern is gone
                assert abs(inside.mean() - mean) < 0.1 and inside.std() < 0.5 * local_std, path


def test_build_samples_equals_what_is_written(gen: ModuleType) -> None:
    built = gen.build_samples()
    name = "test/spot/002.png"
    expected = np.round(np.clip(built[name], 0, 1) * 255)
    np.testing.assert_array_equal(np.asarray(Image.open(SAMPLES / name)), expected)
    mask = np.asarray(Image.open(SAMPLES / "ground_truth" / "spot" / "002_mask.png"))
    np.testing.assert_array_equal(mask > 0, built["ground_truth/spot/002_mask.png"])
