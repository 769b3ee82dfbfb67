"""`score.method: head` end to end through the real CLI (its own file, so that it runs beside
test_export.py's tests rather than after them): the defect head trains as its own stage with
its own loss curve and files, and a scoring run and the exported bare predict.py both reproduce
the run's scores of the same images, so both use the head (and the reconstruction error beside
it, and the distance map of the head's features to their memory bank); the scoring run also
reproduces the run's two-scale maps; a head run from before the two maps were added is
refused."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import IMG_TINY, SAMPLES, assert_same_scores, bare_predict, only_run_dir, \
    run_cli, scoring_run
from core.errors import DataError
from core.fileio import read_json, read_jsonl, write_json
from core.images.files import ImageFiles
from core.images.results import load_image_results
from core.images.trained import load_trained

pytestmark = pytest.mark.slow


def test_a_defect_head_run_scores_new_images_and_exports_with_its_head(tmp_path):
    data = shutil.copytree(SAMPLES / "images", tmp_path / "images")
    res = run_cli("run", "--img-data", str(data), "--workdir", str(tmp_path / "ws"), *IMG_TINY,
                  "--set", "swinmae.train.max_steps_per_epoch=2", "--set",
                  "swinmae.score.method=head", "--set", "swinmae.head.train.max_steps_per_epoch=2",
                  "--set", "swinmae.model.masking=uniform", timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    run = only_run_dir(tmp_path / "ws")
    stages = {s["name"]: s["status"] for s in read_json(run / "progress.json")["stages"]}
    assert stages["train_head_swinmae"] == "done" and stages["train_patchtst"] == "skipped"
    assert {p.name for p in (run / "swinmae" / ImageFiles.head).iterdir()} == \
        {ImageFiles.checkpoint, ImageFiles.last, ImageFiles.training}  # the head's own files
    assert read_json(run / "swinmae" / "scoring.json")["method"] == "head"
    head_epochs = [m for m in read_jsonl(run / "metrics.jsonl")
                   if m.get("curve") == "swinmae head" and m["kind"] == "epoch"]
    assert [m["epoch"] for m in head_epochs] == [1, 2]  # its own loss curve, beside Swin MAE's
    ran = pd.read_csv(run / "swinmae" / "scores.csv")

    scoring = read_json(run / "swinmae" / "scoring.json")
    assert scoring["coarse"] == {"sigma": 16.0, "weight": 4.0, "neighbours": 40,  # 64 px / 4
                                 "two_sided": False}  # a rise only, though the fine maps are
    assert scoring["two_sided"]
    assert scoring["head_knn"] and (run / "swinmae" / ImageFiles.knn_bank).is_file()
    assert scoring["map_cap"] == 10.0 and load_trained(run).normal.cap == 10.0
    assert scoring["match_shape"] and load_trained(run).normal.match_shape
    assert scoring["match_head"] == 0.5 and load_trained(run).normal.head_weight == 0.5
    shown = load_image_results(run)
    assert shown.head_knn and "score.head_knn" in shown.maps_caption  # Results says so
    again = scoring_run(run, "--img-data", data) / "swinmae"
    assert_same_scores(pd.read_csv(again / "scores.csv"), ran, "file")  # it used the head
    measured = ("method", "mode", "image_score", "two_sided", "map_cap", "neighbours",
                "match_shape", "match_head", "head_knn", "coarse")  # so Results describes
    # the scoring run's maps as the run's
    assert {k: read_json(again / "scoring.json")[k] for k in measured} == \
        {k: scoring[k] for k in measured}
    with np.load(again / "maps.npz") as ours, np.load(run / "swinmae" / "maps.npz") as theirs:
        np.testing.assert_allclose(ours["maps"], theirs["maps"], atol=1e-3)  # both scales
    res = run_cli("export", str(run), timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    spec = read_json(run / "export" / "swinmae" / "model.json")
    assert spec["method"] == "head" and spec["normal_map"]["map_cap"] == 10.0
    assert spec["normal_map"]["match_shape"] is True and spec["normal_map"]["match_head"] == 0.5
    assert spec["normal_map"]["coarse"] == {"sigma": 16.0, "weight": 4.0, "neighbours": 40}
    predicted = bare_predict(run / "export" / "swinmae" / "predict.py", data,
                              tmp_path / "scores.csv", "--maps", str(tmp_path / "maps.npz"))
    assert_same_scores(predicted, ran, "file")
    with np.load(tmp_path / "maps.npz") as ours, np.load(run / "swinmae" / "maps.npz") as theirs:
        assert ours["files"].tolist() == theirs["files"].tolist()
        # the maps Results shows, both scales: float16 maps of z-scores in the tens
        np.testing.assert_allclose(ours["maps"], theirs["maps"], atol=2e-2, rtol=2e-3)

    stats = run / "swinmae" / ImageFiles.normal_stats
    with np.load(stats) as z:
        arrays = dict(z)
    assert arrays["maps"].shape[1] == 3  # (N, 3, S, S): the error's, the head's, the bank's
    assert arrays["keys"].shape[1] == 16 * 16 + 2 * 3 * 8 * 4  # thumbnail, 3 heads' mean, std
    # a head run from before the bank, the cap, shape and head matching (none in
    # scoring.json, two maps, thumbnails for keys) still loads, and measures as it did
    (run / "swinmae" / ImageFiles.knn_bank).unlink()
    write_json(run / "swinmae" / "scoring.json", {k: v for k, v in scoring.items()
                                                  if k not in ("head_knn", "map_cap",
                                                               "match_shape", "match_head")})
    np.savez(stats, **arrays | {"maps": arrays["maps"][:, :2], "keys": arrays["keys"][:, :256]})
    before = load_trained(run)
    assert before.detector.bank is None and before.normal.maps_per_image == 2
    assert before.normal.cap == 0.0 and not before.normal.match_shape
    assert before.normal.head_weight == 0.0 and before.detector.cfg.match_head == 0.0
    # a head run from before the two maps were added kept its head's maps alone: refused
    np.savez(stats, **arrays | {"maps": arrays["maps"][:, 1]})
    with pytest.raises(DataError, match="defect head made the maps alone"):
        load_trained(run)
