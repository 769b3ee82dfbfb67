"""core/results.py and the results/runs figures: segments, metrics at a threshold and the top
anomalies on hand-computed cases; a real tiny run (one per module) for loading results, the
planted spike and the runs tables; figure traces, shading and downsampling."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TINY, only_run_dir, run_cli, tiny_dataset
from core import jobs, results, runs_tables
from core.curves import loss_curves
from core.figures.results import (MAX_BANDS, SCORE_AXIS, bucket_max, contributions_figure,
                                  display_segments, ranges_differ, signal_score_figure)
from core.figures.runs import overlay_loss_figure
from core.progress import process_start, read_metrics
from core.runs import RunIndex
from core.streams import STREAMS
from core.timeseries import results as ts_results


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished tiny run on conftest's tiny dataset (spike in channel b, rows 200-202)."""
    root = tmp_path_factory.mktemp("results")
    data = tiny_dataset.__wrapped__(root)  # the fixture's body: a module-scoped copy of it
    proc = run_cli("run", "--ts-data", str(data), *TINY, "--workdir", str(root / "ws"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return only_run_dir(root / "ws")


# ---------------------------------------------------------------- hand cases

@pytest.mark.parametrize("mask, expected", [
    ([0, 1, 1, 0, 1], [(1, 3), (4, 5)]),
    ([1, 1, 1], [(0, 3)]),
    ([0, 0], []),
    ([], []),
    ([True, False, True, True], [(0, 1), (2, 4)]),
])
def test_segments_are_half_open_runs(mask, expected):
    assert results.segments(np.array(mask, dtype=bool)) == expected


def test_at_threshold_matches_hand_computation():
    scores = np.array([0.1, 0.9, 0.8, 0.2, 0.7, 0.3])
    labels = np.array([0, 1, 1, 0, 0, 1])
    got = results.at_threshold(scores, labels, 0.5)
    # flagged rows 1, 2, 4: TP 2 (rows 1, 2), FP 1 (row 4), FN 1 (row 5)
    assert (got["flagged"], got["share"]) == (3, 0.5)
    assert got["precision"] == pytest.approx(2 / 3) and got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3)
    # above 0.85 only row 1: precision 1, recall 1/3, F1 = 2 * 1 * (1/3) / (1 + 1/3) = 0.5
    assert results.at_threshold(scores, labels, 0.85)["f1"] == pytest.approx(0.5)
    for unusable in (None, np.zeros(6, int)):  # no F1 without both classes
        assert "f1" not in results.at_threshold(scores, unusable, 0.5)


def test_top_anomalies_ranks_by_peak_and_names_channels():
    scores = np.array([0, 0, 5, 6, 0, 0, 9, 0, 0, 0], dtype=float)
    errors = np.zeros((10, 2))
    errors[2:4] = [3.0, 1.0]  # segment rows 2-3: x 75 %, y 25 %
    errors[6] = [0.0, 4.0]  # segment row 6: y 100 %
    table = ts_results.top_anomalies(scores, errors, ["x", "y"], threshold=1.0)
    assert table["start"].tolist() == [6, 2] and table["end"].tolist() == [6, 3]
    assert table["length (rows)"].tolist() == [1, 2]
    assert table["peak score"].tolist() == [9.0, 6.0]
    assert table["top channels"].tolist() == ["y 100%", "x 75% · y 25%"]  # none at 0 %
    stamps = np.array([f"t{i}" for i in range(10)])
    assert ts_results.top_anomalies(scores, errors, ["x", "y"], 1.0, k=1,
                                 timestamps=stamps)["start"].tolist() == ["t6"]
    assert ts_results.top_anomalies(scores, errors, ["x", "y"], threshold=10.0).empty


def _contributions_of(errors: np.ndarray, normal: dict | None) -> np.ndarray:
    scores = pd.DataFrame({"index": range(len(errors)), "score": 0.0, "is_anomaly": 0})
    res = ts_results.TSResults("r", "patchtst", Path("r"), scores, errors, ["noisy", "quiet"],
                               1.0, 99.0, None, None, None, None, channel_normal=normal)
    return res.contributions


def test_top_channels_count_the_error_above_each_channels_normal_error():
    """A noisy channel that errs as much as it does on normal data adds nothing: the quiet one
    that rises is named first, however large the noisy one's error."""
    errors = np.tile([5.0, 1.0], (10, 1))  # (T, C): both at their normal error...
    errors[4:7, 1] = 3.0  # ...until the quiet one triples for three rows
    scores = np.where(np.arange(10) // 4 == 1, 5.0, 0.0)  # rows 4-7 flagged
    contributions = _contributions_of(errors, {"noisy": 5.0, "quiet": 1.0})
    assert contributions[:, 0].tolist() == [0.0] * 10
    assert contributions[4:7, 1].tolist() == [2.0] * 3
    table = ts_results.top_anomalies(scores, contributions, ["noisy", "quiet"], threshold=1.0)
    assert table["top channels"].tolist() == ["quiet 100%"]
    assert ts_results.top_channels(contributions, ["noisy", "quiet"], scores > 1.0) == [
        "quiet", "noisy"]
    # a run scored before channel_normal was recorded ranks the errors themselves
    assert (_contributions_of(errors, None) == errors).all()
    by_error = ts_results.top_anomalies(scores, errors, ["noisy", "quiet"], threshold=1.0)
    # 4 x 5 against 3 x 3 + 1
    assert by_error["top channels"].tolist() == ["noisy 67% · quiet 33%"]
    # flagged with no channel above its normal error (the PCA part or smoothing raised it)
    calm = _contributions_of(np.tile([5.0, 1.0], (10, 1)), {"noisy": 5.0, "quiet": 1.0})
    assert ts_results.top_anomalies(scores, calm, ["noisy", "quiet"], 1.0)[
        "top channels"].tolist() == [ts_results.NONE_ABOVE_NORMAL]


def test_the_contributions_heatmap_keeps_a_one_row_peak_on_a_long_series():
    contributions = np.zeros((100_000, 3))
    contributions[54_321, 2] = 7.0  # one row of channel c
    starts, peaks = bucket_max(contributions, max_points=1000)
    assert len(starts) == 1000 and peaks.shape == (1000, 3) and peaks[:, 2].max() == 7.0
    fig = contributions_figure(contributions, ["a", "b", "c"], ["c", "a"], max_points=1000)
    heat = fig.data[0]
    values = np.asarray(heat.customdata)  # the contributions; z is their log10, floored
    assert list(heat.y) == ["c", "a"] and values.shape == np.asarray(heat.z).shape == (2, 1000)
    assert values[0].max() == 7.0 and values[1].max() == 0.0
    assert np.asarray(heat.z)[0].max() == pytest.approx(np.log10(7.0))
    assert np.asarray(heat.z).min() == -1.0  # zero: the floor's palest colour
    assert heat.x[values[0].argmax()] == 54_300  # the bucket of rows 54,300-54,399
    short = contributions_figure(np.eye(3), ["a", "b", "c"], ["a"])  # fewer rows than points
    assert np.asarray(short.data[0].customdata).tolist() == [[1.0, 0.0, 0.0]]


def test_metrics_table_and_verdict():
    m = {"auroc": 0.9, "auprc": 0.6, "best_f1": 0.7, "f1": 0.5, "pa_f1": 0.8,
         "baselines": {"pca": {"auroc": 0.8, "auprc": 0.4, "best_f1": 0.5, "f1": 0.4,
                               "pa_f1": 0.7},
                       "random": {"auroc": 0.5, "auprc": None, "best_f1": 0.1, "f1": 0.0,
                                  "pa_f1": 0.6}}}
    table = ts_results.metrics_table(m)
    assert table.index.tolist() == ["model", "pca", "random"]
    assert "PA-F1 (point-adjusted)" in table.columns
    assert table.loc["pca", "AUPRC"] == 0.4 and np.isnan(table.loc["random", "AUPRC"])
    assert "beats the PCA baseline" in ts_results.baseline_verdict(m)
    m["auprc"] = 0.3
    assert "does not beat" in ts_results.baseline_verdict(m)


def test_threshold_grid_reaches_every_share_on_a_heavy_tailed_score():
    """Pareto scores (a few rows score 10^5 times the median): a slider over score values
    reaches three positions; the grid's positions flag every share from 0.1 % to 20 %."""
    scores = np.random.default_rng(0).pareto(0.7, 23_694)
    grid = results.threshold_grid(scores, threshold=float(np.quantile(scores, 0.99)))
    shares = np.array([results.flagged_share(scores, t) for t in grid])
    for wanted in (0.001, 0.01, 0.05, 0.2):
        assert np.abs(shares - wanted).min() < 0.1 * wanted, wanted
    assert np.all(np.diff(grid) > 0) and len(grid) > 100
    assert float(np.quantile(scores, 0.99)) in grid  # the run's threshold is a position
    assert results.nearest(grid, 1e9) == grid[-1]


def test_threshold_grid_with_ties_and_tiny_inputs():
    assert results.threshold_grid(np.ones(50), 1.0) == [1.0]  # one distinct score: one position
    grid = results.threshold_grid(np.array([0.0, 1.0, 2.0]), 5.0)
    assert grid[-1] == 5.0 and results.flagged_share(np.array([0.0, 1.0, 2.0]), grid[0]) > 0


def test_metrics_table_adds_point_wise_rows_and_the_caption_names_the_smoothing():
    row = {"auroc": 0.9, "auprc": 0.5, "best_f1": 0.6, "f1": 0.4, "pa_f1": 0.8}
    m = row | {"baselines": {"pca": row, "random": row}, "postprocess": {"smooth": 10},
               "pointwise": {"model": row, "pca": row, "random": row}}
    assert ts_results.metrics_table(m).index.tolist() == [
        "model", "pca", "random", "model · point-wise", "pca · point-wise", "random · point-wise"]
    assert "10-step moving mean" in ts_results.postprocess_caption(m)
    assert "fused with" not in ts_results.postprocess_caption(m)  # a run before two scales
    two = ts_results.postprocess_caption(m | {"postprocess": {"smooth": 10, "smooth_long": 50}})
    assert "10-step moving mean fused with a 50-step one" in two and "below" not in two
    floored = ts_results.postprocess_caption(m | {"postprocess": {
        "smooth": 10, "smooth_long": 50, "fuse_floor": 0.5}})
    assert "on normal validation data, none counting below +0.5)" in floored
    assert ts_results.postprocess_caption(row | {"postprocess": {"smooth": 1}}) is None


def test_human_duration():
    assert [runs_tables.human_duration(s) for s in (None, 19.4, 185, 7440)] == \
        ["", "19 s", "3 min 05 s", "2 h 04 min"]


def test_compare_configs_shows_only_differing_keys(tmp_path):
    cfgs = {"r1": {"patchtst": {"train": {"epochs": 3, "lr": 0.001}},
                   "swinmae": {"train": {"epochs": 9}},
                   "pipeline": {"seed": 0, "ts_data": "a", "img_data": None}},
            "r2": {"patchtst": {"train": {"epochs": 5, "lr": 0.001}},
                   "swinmae": {"train": {"epochs": 2}},
                   "pipeline": {"seed": 0, "name": "x", "ts_data": "a", "img_data": "i"}},
            "r3": {"patchtst": {"train": {"epochs": 3, "lr": 0.001}},
                   "swinmae": {"train": {"epochs": 2}},
                   "pipeline": {"seed": None, "ts_data": "a", "img_data": "i"}}}
    for name, cfg in cfgs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.yaml").write_text(yaml.safe_dump(cfg))
    diff = runs_tables.compare_configs([tmp_path / "r1", tmp_path / "r2"])
    # swinmae.train.epochs differs, but r1 trained no images: not a difference worth a row
    assert diff.index.tolist() == ["patchtst.train.epochs", "pipeline.img_data", "pipeline.name"]
    assert diff.loc["patchtst.train.epochs"].tolist() == ["3", "5"]
    assert diff.loc["pipeline.name"].tolist() == ["–", "x"]  # no key, no "None"
    assert diff.loc["pipeline.img_data"].tolist() == ["–", "i"]
    three = runs_tables.compare_configs([tmp_path / r for r in ("r1", "r2", "r3")])
    assert three.loc["pipeline.seed"].tolist() == ["0", "0", "–"]
    assert "swinmae.train.epochs" not in three.index  # r2 and r3, which trained it, agree
    assert runs_tables.compare_configs([tmp_path / "r1"]).empty


# ---------------------------------------------------------------- a real run

def test_load_ts_results(run_dir):
    res = ts_results.load_ts_results(run_dir)
    assert res.channels == ["a", "b", "c"] and res.errors.shape == (400, 3)
    assert res.signal is not None and res.signal.shape == (400, 3) and res.signal_note is None
    assert res.signal[201, 1] > 4  # the raw spike, in raw units
    assert res.labels is not None and res.labels.sum() == 3
    assert res.metrics["baselines"]["pca"] and res.checkpoint.name == "best.pt"
    assert res.timestamps[0] == "2026-01-02 00:00:00"
    assert [s.name for s in results.result_streams(run_dir)] == ["patchtst"]
    assert set(res.channel_scale) == {"a", "b", "c"}  # per-channel scaling is the default
    assert res.parts == ["reconstruction", "top_channels", "pca"]  # the default parts
    assert res.windows == (10, 15)  # the tiny preset's two time scales
    assert res.score_title == ts_results.SCORE_TITLES["fused"]
    assert res.score_meaning.startswith("Anomaly score: the mean of 6 log scores")
    assert "most-erring channels" in res.score_meaning and "PCA" in res.score_meaning
    assert "each over 10 and 15-step moving means" in res.score_meaning
    assert res.variance_head and res.variance_ceiling  # the default model's: its caption says
    assert res.score_meaning.endswith(ts_results.variance_words(True))  # what the errors are
    res.variance_ceiling = False  # `variance_ceiling: 0`: no word of a cap
    assert res.score_meaning.endswith(ts_results.variance_words(False))
    assert ts_results.CEILING_WORDS not in res.score_meaning
    assert list(ts_results.metrics_table(res.metrics).index[:5]) == [
        "model", "reconstruction", "top_channels", "pca", "random"]
    res.parts = ["reconstruction"]  # one part at two scales: still log scores
    assert res.score_title == ts_results.SCORE_TITLES["fused"]
    assert res.score_meaning.startswith("Anomaly score: the mean of 2 log scores")
    res.windows = (10,)  # one part at one scale: its own units
    assert res.score_title == ts_results.SCORE_TITLES["scaled"]
    assert "each channel's divided by its mean error" in res.score_meaning
    res.variance_head = False  # a run made before the variance head: no such sentence
    assert "predicted" not in res.score_meaning


def test_missing_scored_file_still_shows_scores(run_dir, tmp_path):
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    scoring = json.loads((copy / "patchtst" / "scoring.json").read_text())
    scoring["scored_file"] = str(tmp_path / "gone.csv")
    (copy / "patchtst" / "scoring.json").write_text(json.dumps(scoring))
    res = ts_results.load_ts_results(copy)
    assert res.signal is None and "gone" in res.signal_note
    assert len(res.score) == 400
    with pytest.raises(results.ResultsError, match="scores.csv"):
        ts_results.load_ts_results(tmp_path / "nothing-here")


def test_top_anomalies_finds_the_planted_spike(run_dir):
    res = ts_results.load_ts_results(run_dir)
    with np.load(run_dir / "patchtst" / "channel_scores.npz") as npz:  # scaled, like errors
        normal = npz["val_errors"].mean(axis=0)
    assert [res.channel_normal[c] for c in res.channels] == pytest.approx(normal.tolist())
    top = ts_results.top_anomalies(res.score, res.contributions, res.channels, res.threshold)
    first = top.iloc[0]
    assert first["start"] <= 202 and first["end"] >= 200, top
    assert first["top channels"].split(" ")[0] == "b", top
    assert ts_results.top_channels(res.contributions, res.channels,
                                   res.score > res.threshold)[0] == "b"


def test_runs_tables_and_finished_runs(run_dir):
    ws = run_dir.parent.parent
    entries = runs_tables.finished_runs(ws)
    assert [e["run_id"] for e in entries] == [run_dir.name]
    table = runs_tables.runs_table(entries)
    row = table.loc[run_dir.name]
    assert row["status"] == "done" and "preset=tiny" in row["params"]
    assert row["duration"].endswith("s") and 0 <= row["patchtst AUPRC"] <= 1
    assert np.isnan(row["swinmae image AUROC"])  # a time-series run: no image metrics
    metrics = runs_tables.compare_metrics(entries)
    assert metrics.loc["patchtst: AUPRC", run_dir.name] == pytest.approx(row["patchtst AUPRC"])
    curves = runs_tables.run_curves(ws, [run_dir.name])
    assert len(curves[run_dir.name]["patchtst"]["val_loss"]) >= 1
    assert runs_tables.job_summary(ws) is None


def test_finished_runs_skips_unfinished(run_dir, tmp_path):
    ws = tmp_path / "ws"
    copy = ws / "runs" / "20990101-000000-beef"
    shutil.copytree(run_dir, copy)
    progress = json.loads((copy / "progress.json").read_text())
    (copy / "progress.json").write_text(json.dumps(progress | {"status": "failed"}))
    RunIndex(ws).rebuild()
    assert runs_tables.finished_runs(ws) == []
    assert runs_tables.index_entries(ws)[0]["status"] == "failed"


def test_job_summary_of_a_running_job(run_dir, tmp_path):
    ws = tmp_path / "ws"
    live = ws / "runs" / "20990101-000000-cafe"
    shutil.copytree(run_dir, live)
    progress = json.loads((live / "progress.json").read_text())
    active = {"stage": "train_patchtst", "index": 2, "n": 9, "epoch": 2, "n_epochs": 3,
              "step": 40, "n_steps": 120, "eta_s": 12.0}
    (live / "progress.json").write_text(json.dumps(progress | {
        "status": "running", "pid": os.getpid(), "pid_start": process_start(os.getpid()),
        "heartbeat": time.time(), "active": active}))
    lock = jobs.JobLock(ws, live.name)  # held here, as the pipeline process holds it
    try:
        job = runs_tables.job_summary(ws)
    finally:
        lock.release()
    assert job == {"run_id": live.name, "status": "running",
                   "text": "train_patchtst (2/9), epoch 2/3, step 40/120, ETA 12 s"}
    assert runs_tables.job_summary(ws) is None


# ---------------------------------------------------------------- figures

def test_signal_score_figure_traces_and_shading(run_dir):
    res = ts_results.load_ts_results(run_dir)
    signal = {"b": res.signal[:, 1], "a": res.signal[:, 0]}
    fig = signal_score_figure(res.score, res.threshold, signal, res.labels, res.timestamps)
    names = [t.name for t in fig.data]
    assert names[:3] == ["b", "a", "anomaly score"] and names[3].startswith("threshold")
    n_flagged = len(results.segments(res.score > res.threshold))
    n_labelled = len(results.segments(res.labels == 1))
    assert len(fig.layout.shapes) == n_flagged + n_labelled
    legend = [s.name for s in fig.layout.shapes if s.showlegend]
    assert legend == ["flagged (score > threshold)", "true anomaly (label)"]
    assert fig.layout.yaxis.title.text == "value (raw units)"
    assert fig.layout.yaxis2.title.text == SCORE_AXIS
    titled = signal_score_figure(res.score, res.threshold, score_title=res.score_title)
    assert titled.layout.yaxis.title.text == ts_results.SCORE_TITLES["fused"]
    # short: a 70-character title overflowed the score panel into the signal's axis title
    assert all(len(title) <= 30 for title in ts_results.SCORE_TITLES.values())
    assert fig.layout.xaxis2.title.text == "time"
    assert ranges_differ([res.signal[:, 1], 1000 * res.signal[:, 0]])
    assert not ranges_differ([res.signal[:, 1], res.signal[:, 0]])
    z = signal_score_figure(res.score, res.threshold, signal, standardise=True, log_score=True)
    assert abs(float(np.mean(z.data[0].y))) < 0.5 and z.layout.yaxis2.type == "log"
    assert z.layout.yaxis.title.text == "value (z-score per channel)"
    scores_only = signal_score_figure(res.score, res.threshold)
    assert [t.name for t in scores_only.data][0] == "anomaly score"
    assert scores_only.layout.xaxis.title.text == "row"


def test_the_score_figure_is_downsampled_and_keeps_peaks():
    rng = np.random.default_rng(0)
    T = 50_000
    score = rng.random(T)
    score[31_337] = 40.0  # a one-row spike must survive
    fig = signal_score_figure(score, 0.999, {"x": score.copy()})
    assert all(len(t.x) <= 3000 for t in fig.data)
    assert max(fig.data[1].y) == 40.0
    merged = display_segments(score > 0.999)
    assert len(merged) <= len(results.segments(score > 0.999))
    assert len(fig.layout.shapes) == len(merged)
    many = display_segments(score > 0.9)  # ~4,500 segments: capped, closest ones merged
    assert len(results.segments(score > 0.9)) > MAX_BANDS >= len(many)
    assert many[0][0] == results.segments(score > 0.9)[0][0]


def test_display_segments_merges_closest_first():
    mask = np.array([1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1], dtype=bool)  # gaps 1, 2, 3
    assert display_segments(mask) == [(0, 1), (2, 3), (5, 7), (10, 11)]
    assert display_segments(mask, max_bands=3) == [(0, 3), (5, 7), (10, 11)]
    assert display_segments(mask, max_bands=2) == [(0, 7), (10, 11)]


def test_overlay_loss_figure(run_dir):
    curves = loss_curves(read_metrics(run_dir))
    fig = overlay_loss_figure({"r1": curves, "r2": curves}, log_y=True)
    assert [t.name for t in fig.data] == ["r1 · train", "r1 · val", "r2 · train", "r2 · val"]
    assert fig.data[0].line.color != fig.data[2].line.color
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.title.text == "epoch"


def test_overlay_loss_figure_has_a_subplot_per_stream_and_a_colour_per_run(run_dir):
    ts = loss_curves(read_metrics(run_dir))["patchtst"]
    fig = overlay_loss_figure({"both": {"patchtst": ts, "swinmae": ts}, "ts": {"patchtst": ts}})
    by_axis = {}
    for t in fig.data:
        by_axis.setdefault(t.yaxis, []).append((t.name, t.line.color, t.showlegend))
    # time series on the first axis (both runs), images on the second (one run)
    assert [n for n, _, _ in by_axis["y"]] == ["both · train", "both · val", "ts · train",
                                               "ts · val"]
    assert [n for n, _, _ in by_axis["y2"]] == ["both · train", "both · val"]
    colours = {}
    for name, colour, _ in by_axis["y"] + by_axis["y2"]:
        colours.setdefault(name.split(" · ")[0], set()).add(colour)
    assert len(colours["both"]) == len(colours["ts"]) == 1 and colours["both"] != colours["ts"]
    assert [s for _, _, s in by_axis["y2"]] == [False, False]  # one legend entry per run
    assert [a.text for a in fig.layout.annotations] == [STREAMS["patchtst"].title,
                                                         STREAMS["swinmae"].title]
