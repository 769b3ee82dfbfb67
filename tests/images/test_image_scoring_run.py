"""Scoring runs on the image stream: a finished run's Swin MAE scores new images with the model
run's normal-image statistics and threshold; images of another size or mode are refused before
anything is computed, naming the file."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import IMG_TINY, REPO, run_cli
from core.fileio import read_json, write_json

pytestmark = pytest.mark.slow
SAMPLES = REPO / "data" / "samples" / "images"


@pytest.fixture(scope="module")
def model_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("img_scoring")
    images = shutil.copytree(SAMPLES, root / "images")
    res = run_cli("run", "--img-data", str(images), "--workdir", str(root / "ws"), *IMG_TINY)
    assert res.returncode == 0, res.stdout + res.stderr
    return next(p for p in (root / "ws" / "runs").iterdir() if p.is_dir())


def _score(model_run: Path, data: Path):
    before = set(model_run.parent.iterdir())
    res = run_cli("score", str(model_run), "--img-data", str(data))
    new = [p for p in model_run.parent.iterdir() if p not in before and p.is_dir()]
    return res, (new[0] if new else None)


def test_scoring_the_same_images_reproduces_the_runs_scores(model_run):
    res, run = _score(model_run, SAMPLES)
    assert res.returncode == 0, res.stdout + res.stderr
    ours, theirs = (pd.read_csv(r / "swinmae" / "scores.csv") for r in (run, model_run))
    pd.testing.assert_frame_equal(ours, theirs)
    assert read_json(run / "swinmae" / "scoring.json")["threshold"] == \
        read_json(model_run / "swinmae" / "scoring.json")["threshold"]
    with np.load(run / "swinmae" / "maps.npz") as ours, \
            np.load(model_run / "swinmae" / "maps.npz") as theirs:
        assert ours["maps"].shape == (25, 64, 64)
        np.testing.assert_array_equal(ours["maps"], theirs["maps"])
    assert read_json(run / "swinmae" / "metrics.json")["image_auroc"] == pytest.approx(
        read_json(model_run / "swinmae" / "metrics.json")["image_auroc"])
    assert list((run / "swinmae" / "overlays").iterdir())
    assert read_json(run / "validation.json")["ok"] is True


def _folder(tmp_path: Path, name: str, image: Image.Image) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for i in range(3):
        image.save(folder / f"{i:03d}.png")
    return folder


def test_a_flat_folder_of_new_images_is_scored(model_run, tmp_path):
    gray = Image.open(next((SAMPLES / "train" / "good").iterdir()))
    res, run = _score(model_run, _folder(tmp_path, "tomorrow", gray))
    assert res.returncode == 0, res.stdout + res.stderr
    scores = pd.read_csv(run / "swinmae" / "scores.csv")
    assert scores["file"].tolist() == ["000.png", "001.png", "002.png"]
    assert not (run / "swinmae" / "metrics.json").exists()


@pytest.mark.parametrize("image, expected", [
    (Image.new("RGB", (96, 96), (10, 200, 30)), "000.png is colour (mode RGB); expected "
                                                 "grayscale images like the images of run"),
    (Image.new("L", (64, 80), 128), "000.png is 64×80 (width×height); expected 96×96 like"),
])
def test_images_of_another_mode_or_size_fail_before_scoring(model_run, tmp_path, image,
                                                            expected):
    res, run = _score(model_run, _folder(tmp_path, "other", image))
    assert res.returncode == 1
    progress = read_json(run / "progress.json")
    assert expected in progress["error"]
    assert [s["status"] for s in progress["stages"]][:2] == ["failed", "idle"]


def test_a_run_without_saved_normal_statistics_is_refused(model_run, tmp_path):
    old = model_run.parent / "20200101-000000-0000"
    shutil.copytree(model_run, old)
    (old / "swinmae" / "normal_stats.npz").unlink()
    res, run = _score(old, SAMPLES)
    assert res.returncode == 1
    assert "normal_stats.npz is missing (the run predates it)" in \
        read_json(run / "progress.json")["error"]


def test_a_run_from_before_two_sided_maps_keeps_scoring_signed_maps(model_run):
    """Its threshold was set on signed z-scores, so new images are scored the same way: every
    image's score is at most its two-sided score (top-k of z against top-k of |z|), and the
    scoring run says which it used."""
    assert read_json(model_run / "swinmae" / "scoring.json")["two_sided"] is True
    old = model_run.parent / "20200101-000001-0000"
    shutil.copytree(model_run, old)
    scoring = read_json(old / "swinmae" / "scoring.json")
    del scoring["two_sided"]
    write_json(old / "swinmae" / "scoring.json", scoring)
    res, run = _score(old, SAMPLES)
    assert res.returncode == 0, res.stdout + res.stderr
    assert read_json(run / "swinmae" / "scoring.json")["two_sided"] is False
    signed, both = (pd.read_csv(r / "swinmae" / "scores.csv")["score"]
                    for r in (run, model_run))
    assert (signed <= both + 1e-4).all() and (signed < both - 1e-3).any()
