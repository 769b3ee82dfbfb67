"""`python -m core.pipeline export`: each trained stream as model.onnx + model.json +
predict.py, and predict.py, run in a bare process (no torch, not this project), writes the
scores the project's own `score` writes for the same data."""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLES, assert_same_scores, bare_predict, run_cli, scoring_run
from core.export import export_zip
from core.fileio import read_json

pytestmark = pytest.mark.slow


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
    assert ts["smooth_long"] == 15 and "reconstruction@15" in ts["log_units"]  # two scales
    assert ts["fusion"] == read_json(run / "patchtst" / "scoring.json")["fusion"]
    assert ts["fusion"]["floor"] is not None and ts["fusion"]["weights"]  # the defaults' fusion
    assert ts["threshold"] == read_json(run / "patchtst" / "scoring.json")["threshold"]
    img = json.loads((out / "swinmae" / "model.json").read_text())
    assert (img["image_size"], img["channels"], img["mode"]) == (64, 1, "L")
    normal = img["normal_map"]  # each image against its 10 nearest normal training images
    assert (normal["neighbours"], normal["file"], normal["two_sided"]) == \
        (10, "normal_maps.npz", True)  # as the run scored: predict.py takes |z|
    with np.load(out / "swinmae" / "normal_maps.npz") as bank:
        assert bank["maps"].shape == (normal["images"], 64, 64)
        assert bank["keys"].shape == (normal["images"], normal["thumbnail"] ** 2)


def test_bare_predict_matches_score_on_new_series(exported, tmp_path):
    run, out = exported
    new = pd.read_csv(SAMPLES / "timeseries" / "test.csv").iloc[500:1500].copy()
    new.loc[new.index[300:320], ["temp_c", "fan_rpm"]] *= 2.0  # something to flag
    data = tmp_path / "tomorrow.csv"
    new.to_csv(data, index=False)
    scoring = scoring_run(run, "--ts-data", data) / "patchtst"
    scored = pd.read_csv(scoring / "scores.csv")
    predicted = bare_predict(out / "patchtst" / "predict.py", data, tmp_path / "scores.csv",
                             "--channels", str(tmp_path / "channels.csv"))
    assert list(predicted.columns) == list(scored.columns)
    assert_same_scores(predicted, scored, "timestamp")
    assert predicted["is_anomaly"].any()  # the comparison covers flagged rows too
    # each row's per-channel error, as the scoring run's channel_scores.npz holds it
    per_channel = pd.read_csv(tmp_path / "channels.csv")
    spec = json.loads((out / "patchtst" / "model.json").read_text())
    assert list(per_channel.columns) == ["timestamp", *spec["channels"]]
    assert per_channel["timestamp"].tolist() == scored["timestamp"].tolist()
    with np.load(scoring / "channel_scores.npz") as npz:
        np.testing.assert_allclose(per_channel[spec["channels"]].to_numpy(), npz["errors"],
                                   rtol=1e-3, atol=1e-5)
    assert spec["channel_normal"] == read_json(scoring / "scoring.json")["channel_normal"]


def test_bare_predict_matches_score_on_new_images(exported, tmp_path):
    run, out = exported
    data = shutil.copytree(SAMPLES / "images", tmp_path / "images")
    scored = pd.read_csv(scoring_run(run, "--img-data", data) / "swinmae" / "scores.csv")
    predicted = bare_predict(out / "swinmae" / "predict.py", data, tmp_path / "scores.csv")
    assert list(predicted.columns) == list(scored.columns)
    assert_same_scores(predicted, scored, "file")
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


def test_export_refuses_ascoring_run(exported, tmp_path):
    run, _ = exported
    scoring = scoring_run(run, "--ts-data", SAMPLES / "timeseries" / "test.csv")
    res = run_cli("export", str(scoring), "--out", str(tmp_path / "x"))
    assert res.returncode == 2
    assert f"is a scoring run and holds no model; export its model run {run.name}" in res.stderr
