"""`score.method: knn` at `data.zoom: 2` end to end through the real CLI: the run builds and
keeps its memory bank, maps every tile of the zoomed images, its Results caption names the
method, and a scoring run and the exported bare predict.py (the bank and the tiling inside
model.onnx) both reproduce the run's scores of the same images."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import IMG_TINY, SAMPLES, assert_same_scores, bare_predict, only_run_dir, \
    run_cli, scoring_run
from core.fileio import read_json
from core.images.files import ImageFiles
from core.images.knn import MemoryBank
from core.images.results import load_image_results

pytestmark = pytest.mark.slow


def test_a_knn_run_keeps_its_bank_and_scores_new_images_and_exports_with_it(tmp_path):
    data = shutil.copytree(SAMPLES / "images", tmp_path / "images")
    res = run_cli("run", "--img-data", str(data), "--workdir", str(tmp_path / "ws"), *IMG_TINY,
                  "--set", "swinmae.train.max_steps_per_epoch=2", "--set",
                  "swinmae.score.method=knn", "--set", "swinmae.score.knn.bank_size=500",
                  "--set", "swinmae.data.zoom=2",
                  timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    run = only_run_dir(tmp_path / "ws")
    stages = {s["name"]: s["status"] for s in read_json(run / "progress.json")["stages"]}
    assert stages["train_head_swinmae"] == "skipped" and stages["score_swinmae"] == "done"
    assert read_json(run / "swinmae" / "scoring.json")["method"] == "knn"
    bank = MemoryBank.load(run / "swinmae" / ImageFiles.knn_bank)
    assert bank.bank.shape == (500, 32 + 64)  # tiny: stages 0 and 1, 32 and 64 wide
    with np.load(run / "swinmae" / ImageFiles.maps) as z:
        assert z["maps"].shape[1:] == (128, 128)  # tiny's 64 px, zoomed twice
    results = load_image_results(run)
    assert "score.method: knn" in results.maps_caption
    assert "distance to the nearest normal patch" in results.score_title
    ran = pd.read_csv(run / "swinmae" / "scores.csv")
    assert ran["score"].std() > 0

    scored = pd.read_csv(scoring_run(run, "--img-data", data) / "swinmae" / "scores.csv")
    assert_same_scores(scored, ran, "file")
    res = run_cli("export", str(run), timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert read_json(run / "export" / "swinmae" / "model.json")["method"] == "knn"
    predicted = bare_predict(run / "export" / "swinmae" / "predict.py", data,
                             tmp_path / "scores.csv")
    assert_same_scores(predicted, ran, "file")
