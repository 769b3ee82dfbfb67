"""Scoring runs (`python -m core.pipeline score`): a finished run's time-series model scores
new data as a run of its own, with the model run's statistics; data that does not fit fails
before anything is computed, naming file and column."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, make_series, run_cli, scoring_run
from core.fileio import read_json
from core.config import read_config
from core.streams import stage_names

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_run(tmp_path_factory) -> Path:
    """A finished tiny time-series run on train.csv (800 rows) and test.csv (a spike)."""
    from conftest import tiny_dataset
    root = tmp_path_factory.mktemp("scoring")
    data = tiny_dataset.__wrapped__(root)
    res = run_cli("run", "--ts-data", str(data), "--workdir", str(root / "ws"), *TINY)
    assert res.returncode == 0, res.stdout + res.stderr
    return next(p for p in (root / "ws" / "runs").iterdir() if p.is_dir())


def _score(model_run: Path, *args: str):
    before = set((model_run.parent).iterdir())
    res = run_cli("score", str(model_run), *args)
    new = [p for p in model_run.parent.iterdir() if p not in before and p.is_dir()]
    return res, (new[0] if new else None)


def test_scoring_the_same_file_reproduces_the_runs_scores(model_run):
    test_csv = Path(read_json(model_run / "patchtst" / "scoring.json")["scored_file"])
    res, run = _score(model_run, "--ts-data", str(test_csv))
    assert res.returncode == 0, res.stdout + res.stderr
    cfg = read_config(run / "run.yaml")
    assert cfg.pipeline.from_run == str(model_run) and cfg.pipeline.ts_data == str(test_csv)
    progress = read_json(run / "progress.json")
    assert progress["status"] == "done"
    assert [s["name"] for s in progress["stages"]] == stage_names(scoring=True)
    assert [s["name"] for s in progress["stages"]] == [
        "prepare_data", "score_patchtst", "evaluate_patchtst", "score_swinmae",
        "evaluate_swinmae", "validate_outputs", "publish"]
    assert not (run / "patchtst" / "best.pt").exists()  # the model stays in the model run
    ours, theirs = (pd.read_csv(r / "patchtst" / "scores.csv") for r in (run, model_run))
    pd.testing.assert_frame_equal(ours, theirs)
    scoring, source = (read_json(r / "patchtst" / "scoring.json") for r in (run, model_run))
    assert scoring["threshold"] == source["threshold"]
    assert scoring["channel_scale"] == source["channel_scale"]
    assert scoring["channel_normal"] == source["channel_normal"]  # top channels rank alike
    assert scoring["variance_head"] is source["variance_head"] is True  # the same errors
    assert scoring["log_var_ceiling"] == source["log_var_ceiling"] and \
        set(source["log_var_ceiling"]) == set(source["channel_scale"])  # one per channel
    metrics = read_json(run / "patchtst" / "metrics.json")
    assert metrics["auroc"] == pytest.approx(read_json(model_run / "patchtst" /
                                                       "metrics.json")["auroc"])
    assert read_json(run / "validation.json")["ok"] is True


def test_a_model_run_made_before_the_top_channels_part_scores_as_it_did(model_run, tmp_path):
    """A run whose scoring.json fused the reconstruction and the PCA only, at one time scale
    (and recorded no channel_normal, no smooth_long and no fusion), scores new data with those
    two parts at that one scale and their plain mean, whatever today's config adds."""
    old = tmp_path / "ws" / "runs" / model_run.name
    shutil.copytree(model_run, old)
    path = old / "patchtst" / "scoring.json"
    scoring = read_json(path)
    assert scoring["smooth_long"] > 0  # today's run has two scales, else this proves less
    scoring["parts"] = ["reconstruction", "pca"]
    scoring["log_units"] = {k: scoring["log_units"][k] for k in scoring["parts"]}
    assert scoring["fusion"]["floor"] is not None  # today's fusion has a floor
    del scoring["channel_normal"], scoring["smooth_long"], scoring["fusion"]
    path.write_text(json.dumps(scoring))
    run = scoring_run(old, "--ts-data", Path(scoring["scored_file"]))
    rescored = read_json(run / "patchtst" / "scoring.json")
    assert rescored["parts"] == ["reconstruction", "pca"] and rescored["channel_normal"] is None
    assert rescored["smooth_long"] == 0 and rescored["fusion"] == {"floor": None, "weights": {}}
    ours, today = (pd.read_csv(r / "patchtst" / "scores.csv")["score"] for r in (run, model_run))
    assert not np.allclose(ours, today)  # two parts, not today's three


def test_provenance_names_data_hashes_versions_command_and_the_model(model_run):
    trained = read_json(model_run / "provenance.json")
    data = model_run.parent.parent.parent / "tiny"
    assert trained["command"].endswith(f"-m core.pipeline run --ts-data {data} "
                                       f"--workdir {model_run.parent.parent} "
                                       "--set patchtst.preset=tiny")
    assert trained["data_sha256"]["ts_data"] == {
        name: hashlib.sha256((data / name).read_bytes()).hexdigest()
        for name in ("test.csv", "train.csv")}
    assert trained["seed"] == 0 and trained["precision"] == "fp32"  # a PatchTST run: any CPU
    assert trained["device"].startswith("cpu") and trained["model_run"] is None
    assert {"python", "torch", "numpy", "pandas", "streamlit"} <= set(trained["versions"])
    assert trained["versions"]["torch"].startswith("2.13.0")
    assert len(trained["git"]["commit"]) == 40  # the tests run in a git checkout
    res, run = _score(model_run, "--ts-data", str(data / "test.csv"))
    assert res.returncode == 0, res.stdout + res.stderr
    scoring = read_json(run / "provenance.json")
    assert " core.pipeline score " in scoring["command"]
    assert scoring["model_run"]["run_id"] == model_run.name
    assert scoring["model_run"]["best_pt_sha256"] == {"patchtst": hashlib.sha256(
        (model_run / "patchtst" / "best.pt").read_bytes()).hexdigest()}
    assert list(scoring["data_sha256"]["ts_data"]) == ["test.csv"]


def test_new_data_is_scored_with_the_training_statistics(model_run, tmp_path):
    """A level shift of channel a: normalised with the new data's own statistics it would
    vanish; with the model run's it is far out of range and flagged."""
    shifted = make_series(300, 7, "2026-02-01")
    shifted["a"] += 5.0
    path = tmp_path / "tomorrow.csv"
    shifted.to_csv(path, index=False)
    res, run = _score(model_run, "--ts-data", str(path), "--name", "tomorrow")
    assert res.returncode == 0, res.stdout + res.stderr
    scores = pd.read_csv(run / "patchtst" / "scores.csv")
    assert len(scores) == 300 and "label" not in scores
    assert scores["is_anomaly"].mean() > 0.9
    scoring = read_json(run / "patchtst" / "scoring.json")
    assert "a" in scoring["out_of_range"]
    assert not (run / "patchtst" / "metrics.json").exists()  # no labels: no metrics
    assert read_config(run / "run.yaml").pipeline.name == "tomorrow"


def test_other_channels_fail_before_scoring_naming_file_and_column(model_run, tmp_path):
    frame = make_series(300, 3).rename(columns={"b": "b_renamed"})
    path = tmp_path / "renamed.csv"
    frame.to_csv(path, index=False)
    res, run = _score(model_run, "--ts-data", str(path))
    assert res.returncode == 1
    error = read_json(run / "progress.json")["error"]
    assert "renamed.csv" in error and "missing: ['b']" in error and "b_renamed" in error
    stages = {s["name"]: s["status"] for s in read_json(run / "progress.json")["stages"]}
    assert stages["prepare_data"] == "failed" and stages["score_patchtst"] == "idle"
    assert not (run / "patchtst" / "scores.csv").exists()


def test_too_few_rows_fail_naming_the_window(model_run, tmp_path):
    path = tmp_path / "short.csv"
    make_series(10, 3).to_csv(path, index=False)
    res, run = _score(model_run, "--ts-data", str(path))
    assert res.returncode == 1
    error = read_json(run / "progress.json")["error"]
    assert "short.csv: 10 rows are fewer than the model's window of 40 rows" in error


def test_refusals_exit_2_without_a_run_folder(model_run, tmp_path):
    test_csv = read_json(model_run / "patchtst" / "scoring.json")["scored_file"]
    res, run = _score(model_run, "--img-data", str(tmp_path))
    assert res.returncode == 2 and run is None
    assert "trained no Images (Swin MAE) model" in res.stderr
    res, run = _score(model_run)
    assert res.returncode == 2 and "no data given" in res.stderr and run is None
    res, run = _score(model_run, "--ts-data", str(tmp_path / "gone.csv"))
    assert res.returncode == 2 and "gone.csv: no such file" in res.stderr and run is None
    scored, first = _score(model_run, "--ts-data", test_csv)
    assert scored.returncode == 0
    res, run = _score(first, "--ts-data", test_csv)
    assert res.returncode == 2 and "is a scoring run and holds no model; score with its model run" in res.stderr
