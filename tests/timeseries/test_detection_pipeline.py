"""The time-series detector end to end through the CLI (tiny preset): the post-processing is the
same for the model, its parts and its baselines, the cross-channel block runs on and off, a
validation
shift is said in the log, the live panel and Results, and a channel constant in training is
named when it changes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, make_series, only_run_dir, run_cli
from core import metrics
from core.config import read_config
from core.curves import shift_warning
from core.fileio import read_json
from core.train_view import live_view
from core.timeseries.results import load_ts_results, postprocess_caption
from core.timeseries.baselines import pca_scores
from core.timeseries.scoring import Fusion, detector_scores, step_scores, top_channel_scores
from core.timeseries.stages import load

pytestmark = pytest.mark.slow


def run_tiny(data, ws, *sets: str):
    res = run_cli("run", "--ts-data", str(data), "--workdir", str(ws), *TINY,
                  *(arg for s in sets for arg in ("--set", s)))
    assert res.returncode == 0, res.stdout + res.stderr
    return only_run_dir(ws)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from conftest import tiny_dataset
    root = tmp_path_factory.mktemp("detect")
    return run_tiny(tiny_dataset.__wrapped__(root), root / "ws")


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """The same data without the cross-channel block and with the reconstruction's mean alone as
    the score (one run for both: each test below looks at one of the two)."""
    from conftest import tiny_dataset
    root = tmp_path_factory.mktemp("plain")
    return run_tiny(tiny_dataset.__wrapped__(root), root / "ws",
                    "patchtst.model.cross_channel=false", "patchtst.score.fuse_pca=false",
                    "patchtst.score.top_quantile=0")


def test_postprocessing_is_identical_for_the_model_its_parts_and_its_baselines(tiny_run):
    cfg = read_config(tiny_run / "run.yaml")
    sc = cfg.patchtst.score
    assert sc.smooth > 1 and sc.fuse_pca and sc.top_quantile > 0  # else this proves less
    assert sc.smooth_long > sc.smooth and len(load(cfg)[0].val) >= 10 * sc.smooth_long
    scores = pd.read_csv(tiny_run / "patchtst" / "scores.csv")
    labels = scores["label"].to_numpy()
    with np.load(tiny_run / "patchtst" / "channel_scores.npz") as npz:
        val_point, point = (step_scores(npz[k], sc.channel_cap) for k in ("val_errors", "errors"))
        val_top, top = (top_channel_scores(npz[k], sc.top_quantile)
                        for k in ("val_errors", "errors"))
    data, _ = load(cfg)
    pca_val, pca = pca_scores(data.train, [data.val, data.target_values])
    parts = {"reconstruction": (val_point, point), "top_channels": (val_top, top),
             "pca": (pca_val, pca)}
    windows = (sc.smooth, sc.smooth_long)  # both time scales, for every detector alike
    fusion = Fusion.of_config(sc)
    assert fusion.floor is not None and fusion.weights  # else this proves less
    fused = detector_scores(parts, *windows, fusion)[1]
    np.testing.assert_allclose(scores["score"], fused, rtol=1e-4, atol=1e-5)

    m = read_json(tiny_run / "patchtst" / "metrics.json")
    assert m["postprocess"] == {"smooth": sc.smooth, "smooth_long": sc.smooth_long,
                                "fuse_floor": fusion.floor}
    expect = {("model", False): detector_scores(parts, 1, fusion=fusion)[1],
              ("model", True): fused}
    for name, pair in parts.items():  # the floor on each detector's two terms alike
        expect[name, True] = detector_scores({name: pair}, *windows, fusion)[1]
        expect[name, False] = pair[1]
    for (who, post), values in expect.items():
        found = {"model": m, **m["parts"], **m["baselines"]}[who] if post else m["pointwise"][who]
        assert found["auprc"] == pytest.approx(
            metrics.evaluate(values, labels, 0.0)["auprc"], rel=1e-4), (who, post)
    assert m["baselines"]["random"]["auprc"] != m["pointwise"]["random"]["auprc"]
    assert list(m["parts"]) == ["reconstruction", "top_channels"] and "pca" in m["baselines"]


def test_the_reconstruction_alone_when_fusion_is_off(plain_run):
    run = plain_run
    sc = read_config(run / "run.yaml").patchtst.score
    with np.load(run / "patchtst" / "channel_scores.npz") as npz:
        val, point = (step_scores(npz[k], sc.channel_cap) for k in ("val_errors", "errors"))
    scores = pd.read_csv(run / "patchtst" / "scores.csv")["score"]
    # the reconstruction's mean alone, at the two time scales
    alone = detector_scores({"reconstruction": (val, point)}, sc.smooth, sc.smooth_long,
                            Fusion.of_config(sc))[1]
    np.testing.assert_allclose(scores, alone, rtol=1e-4, atol=1e-5)
    assert read_json(run / "patchtst" / "scoring.json")["parts"] == ["reconstruction"]
    assert "parts" not in read_json(run / "patchtst" / "metrics.json")
    assert not (run / "patchtst" / "pca.npz").exists()


def test_a_validation_split_too_short_for_the_long_scale_scores_at_one(tmp_path):
    from conftest import tiny_dataset
    run = run_tiny(tiny_dataset.__wrapped__(tmp_path), tmp_path / "ws",
                   "patchtst.score.smooth_long=100")  # 160 validation rows hold 1.6 such windows
    assert "one time scale: the validation split's 160 rows are too few for the 100-step one" \
        in (run / "pipeline.log").read_text()
    scoring = read_json(run / "patchtst" / "scoring.json")
    assert scoring["smooth_long"] == 0 and not any("@" in t for t in scoring["log_units"])
    assert read_json(run / "patchtst" / "metrics.json")["postprocess"]["smooth_long"] == 0
    assert "fused with" not in postprocess_caption(
        read_json(run / "patchtst" / "metrics.json"))


def test_cross_channel_block_on_and_off(tiny_run, plain_run):
    for run, on in ((tiny_run, True), (plain_run, False)):
        state = torch.load(run / "patchtst" / "best.pt", weights_only=True)["model"]
        assert any(k.startswith("mixer.") for k in state) == on
        scores = pd.read_csv(run / "patchtst" / "scores.csv")["score"]
        assert 190 <= scores.idxmax() <= 212  # both find the planted spike (rows 200-202)
        assert read_json(run / "patchtst" / "metrics.json")["auroc"] > 0.9


def test_a_validation_shift_and_a_changed_constant_channel_are_said(tmp_path):
    """Train rows 640-799 (the validation split) sit 8 units higher in channel a; channel d is
    constant in training and steps up in test rows 300-309."""
    folder = tmp_path / "shifted"
    folder.mkdir()
    train, test = make_series(800, 0), make_series(400, 1, "2026-01-02")
    train.loc[640:, "a"] += 8.0
    train["d"], test["d"] = 1.0, 1.0
    test.loc[300:309, "d"] = 1.05
    test["label"] = 0
    test.loc[300:309, "label"] = 1
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    run = run_tiny(folder, tmp_path / "ws")

    log = (run / "pipeline.log").read_text()
    assert "Validation loss" in log and "d was constant in training and changes here" in log
    assert live_view(run).warnings["patchtst"].startswith("Validation loss")
    notes = load_ts_results(run).notes
    assert notes[0].startswith("Validation loss") and "× the training loss" in notes[0]
    assert any(n.startswith("d was constant in training and changes here") for n in notes)
    assert read_json(run / "patchtst" / "scoring.json")["constant_in_training"] == {"d": True}
    scores = pd.read_csv(run / "patchtst" / "scores.csv")["score"]
    assert scores.max() < 100 * scores.median() + read_config(
        run / "run.yaml").patchtst.score.channel_cap  # one channel cannot drown the rest


def test_shift_warning_only_far_above_the_training_loss():
    assert shift_warning(0.28, 232.0).startswith("Validation loss 232 is 829× the training loss")
    assert shift_warning(0.3, 0.6) is None
    assert shift_warning(0.0, 1.0) is None  # a zero training loss gives no ratio
