"""`python -m core.pipeline export`: each trained stream as model.onnx + model.json +
predict.py, and predict.py, run in a bare process (no torch, not this project), writes the
scores the project's own `score` writes for the same data."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import IMG_TINY, REPO, SAMPLES, only_run_dir, run_cli
from core.export import export_zip
from core.fileio import read_json, read_jsonl

pytestmark = pytest.mark.slow

# predict.py run as a user would, in a process that cannot import torch or this project
BARE = """
import runpy, sys
from pathlib import Path
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "core"):
            raise ImportError(f"predict.py imported {name}")
sys.meta_path.insert(0, Refuse())
repo, script = Path(sys.argv[1]), sys.argv[2]
assert all(Path(p or ".").resolve() != repo for p in sys.path), sys.path
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "core")]
"""


@pytest.fixture(scope="module")
def exported(both_streams_run) -> tuple[Path, Path]:
    """(a finished run with both streams on the bundled samples, its export folder: the
    default, RUN_DIR/export/)."""
    res = run_cli("export", str(both_streams_run), timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return both_streams_run, both_streams_run / "export"


def test_one_folder_per_stream_with_model_json_and_predict(exported):
    run, out = exported
    for stream, more in (("patchtst", []), ("swinmae", ["normal_maps.npz"])):
        assert sorted(p.name for p in (out / stream).iterdir()) == \
            sorted(["model.json", "model.onnx", "predict.py", *more])
    ts = json.loads((out / "patchtst" / "model.json").read_text())
    assert ts["channels"] == ["cpu_load", "mem_used", "temp_c", "fan_rpm", "net_mbps"]
    assert ts["window"] == 40 and ts["stride"] == 8 and ts["smooth"] == 10
    assert ts["threshold"] == read_json(run / "patchtst" / "scoring.json")["threshold"]
    img = json.loads((out / "swinmae" / "model.json").read_text())
    assert (img["image_size"], img["channels"], img["mode"]) == (64, 1, "L")
    normal = img["normal_map"]  # each image against its 20 nearest normal training images
    assert (normal["neighbours"], normal["file"], normal["two_sided"]) == \
        (20, "normal_maps.npz", True)  # as the run scored: predict.py takes |z|
    with np.load(out / "swinmae" / "normal_maps.npz") as bank:
        assert bank["maps"].shape == (normal["images"], 64, 64)
        assert bank["keys"].shape == (normal["images"], normal["thumbnail"] ** 2)


def _scoring_run(run: Path, option: str, data: Path) -> Path:
    before = set(run.parent.iterdir())
    res = run_cli("score", str(run), option, str(data))
    assert res.returncode == 0, res.stdout + res.stderr
    return next(p for p in run.parent.iterdir() if p not in before and p.is_dir())


def _bare_predict(script: Path, data: Path, out: Path) -> pd.DataFrame:
    env = {"PATH": os.environ["PATH"], "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-I", "-c", BARE, str(REPO), str(script), str(data),
                          "--out", str(out)], cwd=out.parent, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return pd.read_csv(out)


def _assert_same_scores(ours: pd.DataFrame, theirs: pd.DataFrame, key: str) -> None:
    assert ours[key].tolist() == theirs[key].tolist()
    # relative to the score, or to its spread where it crosses zero (a fused score is a log
    # score: near 0, scores.csv's 6 significant digits are all a relative difference could see)
    scale = np.maximum(np.abs(theirs["score"]), theirs["score"].std())
    rel = np.abs(ours["score"] - theirs["score"]) / scale.clip(1e-12)
    assert rel.max() <= 1e-3, rel.max()
    assert ours["is_anomaly"].tolist() == theirs["is_anomaly"].tolist()


def test_bare_predict_matches_score_on_new_series(exported, tmp_path):
    run, out = exported
    new = pd.read_csv(SAMPLES / "timeseries" / "test.csv").iloc[500:1500].copy()
    new.loc[new.index[300:320], ["temp_c", "fan_rpm"]] *= 2.0  # something to flag
    data = tmp_path / "tomorrow.csv"
    new.to_csv(data, index=False)
    scored = pd.read_csv(_scoring_run(run, "--ts-data", data) / "patchtst" / "scores.csv")
    predicted = _bare_predict(out / "patchtst" / "predict.py", data, tmp_path / "scores.csv")
    assert list(predicted.columns) == list(scored.columns)
    _assert_same_scores(predicted, scored, "timestamp")
    assert predicted["is_anomaly"].any()  # the comparison covers flagged rows too


def test_bare_predict_matches_score_on_new_images(exported, tmp_path):
    run, out = exported
    data = shutil.copytree(SAMPLES / "images", tmp_path / "images")
    scored = pd.read_csv(_scoring_run(run, "--img-data", data) / "swinmae" / "scores.csv")
    predicted = _bare_predict(out / "swinmae" / "predict.py", data, tmp_path / "scores.csv")
    assert list(predicted.columns) == list(scored.columns)
    _assert_same_scores(predicted, scored, "file")
    assert predicted["label"].tolist() == scored["label"].tolist()


def test_export_zip_holds_both_streams_exporting_only_what_is_missing(exported, tmp_path):
    """The Results page's download: the run's export folder zipped; a stream missing there is
    exported now, one already there is not traced again."""
    run, out = exported
    copy = shutil.copytree(run, tmp_path / "runs" / run.name)
    shutil.rmtree(copy / "export" / "patchtst")
    onnx_before = (copy / "export" / "swinmae" / "model.onnx").stat().st_mtime_ns
    z = zipfile.ZipFile(io.BytesIO(export_zip(copy)))
    assert sorted(z.namelist()) == sorted([*(f"{s}/{f}" for s in ("patchtst", "swinmae")
                                             for f in ("model.json", "model.onnx", "predict.py")),
                                           "swinmae/normal_maps.npz"])
    assert (copy / "export" / "patchtst" / "predict.py").is_file()  # kept for the next download
    assert (copy / "export" / "swinmae" / "model.onnx").stat().st_mtime_ns == onnx_before
    assert z.read("swinmae/model.onnx") == (out / "swinmae" / "model.onnx").read_bytes()
    assert z.read("patchtst/model.json") == (out / "patchtst" / "model.json").read_bytes()


def test_export_refuses_a_scoring_run(exported, tmp_path):
    run, _ = exported
    scoring = _scoring_run(run, "--ts-data", SAMPLES / "timeseries" / "test.csv")
    res = run_cli("export", str(scoring), "--out", str(tmp_path / "x"))
    assert res.returncode == 2
    assert f"is a scoring run and holds no model; export its model run {run.name}" in res.stderr


def test_a_defect_head_run_scores_new_images_and_exports_with_its_head(tmp_path):
    """score.method head end to end: the head trains as its own stage, and a scoring run and
    the bare predict.py both reproduce the run's scores of the same images, so both use it."""
    data = shutil.copytree(SAMPLES / "images", tmp_path / "images")
    res = run_cli("run", "--img-data", str(data), "--workdir", str(tmp_path / "ws"), *IMG_TINY,
                  "--set", "swinmae.train.max_steps_per_epoch=2", "--set",
                  "swinmae.score.method=head", "--set", "swinmae.head.train.max_steps_per_epoch=2",
                  "--set", "swinmae.model.masking=uniform", timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    run = only_run_dir(tmp_path / "ws")
    stages = {s["name"]: s["status"] for s in read_json(run / "progress.json")["stages"]}
    assert stages["train_head_swinmae"] == "done" and stages["train_patchtst"] == "skipped"
    assert (run / "swinmae" / "head" / "best.pt").is_file()
    assert read_json(run / "swinmae" / "scoring.json")["method"] == "head"
    head_epochs = [m for m in read_jsonl(run / "metrics.jsonl")
                   if m.get("curve") == "swinmae head" and m["kind"] == "epoch"]
    assert [m["epoch"] for m in head_epochs] == [1, 2]  # its own loss curve, beside Swin MAE's
    ran = pd.read_csv(run / "swinmae" / "scores.csv")

    scored = pd.read_csv(_scoring_run(run, "--img-data", data) / "swinmae" / "scores.csv")
    _assert_same_scores(scored, ran, "file")  # the scoring run used the head
    res = run_cli("export", str(run), timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    spec = read_json(run / "export" / "swinmae" / "model.json")
    assert spec["method"] == "head"
    predicted = _bare_predict(run / "export" / "swinmae" / "predict.py", data,
                              tmp_path / "scores.csv")
    _assert_same_scores(predicted, ran, "file")
