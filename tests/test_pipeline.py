"""The real pipeline as a subprocess, on tiny data: the CLI, the run folder it leaves, stop and
resume, a killed run shown as lost, and the one-job-per-workspace lock."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, make_series, only_run_dir, run_cli, wait_for
from core import jobs
from core.config import load_config
from core.errors import JobError
from core.fileio import read_json, read_jsonl
from core.runs import create_run, workspace
from core.streams import stage_names

pytestmark = pytest.mark.slow
STAGES = stage_names()
N = len(STAGES)
TS_ONLY = ["skipped" if name.endswith("swinmae") else "done" for name in STAGES]


def test_run_ends_done_with_every_output(tiny_dataset, tmp_path):
    ws = tmp_path / "ws"
    res = run_cli("run", "--ts-data", str(tiny_dataset), "--workdir", str(ws), *TINY,
                  "--set", "patchtst.train.epochs=4")
    assert res.returncode == 0, res.stdout + res.stderr
    run = only_run_dir(ws)
    assert f"done: {run}" in res.stdout
    for i, name in enumerate(STAGES, 1):
        assert f"[{i}/{N}] {name}" in (run / "pipeline.log").read_text()

    progress = read_json(run / "progress.json")
    assert progress["status"] == "done"
    assert [s["status"] for s in progress["stages"]] == TS_ONLY

    lines = read_jsonl(run / "metrics.jsonl")
    epochs = [line for line in lines if line["kind"] == "epoch"]
    assert len(epochs) == 4 and all("val_loss" in e for e in epochs)
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert all({"train_loss", "lr", "samples_per_s", "step"} <= set(line)
               for line in lines if line["kind"] == "step")

    scores = pd.read_csv(run / "patchtst" / "scores.csv")
    assert list(scores.columns) == ["timestamp", "score", "is_anomaly", "label"]
    assert len(scores) == 400 and scores["score"].notna().all()
    assert scores["timestamp"].iloc[0] == "2026-01-02 00:00:00"
    assert 195 <= scores["score"].idxmax() <= 207  # the planted spike (rows 200-202)

    metrics = read_json(run / "patchtst" / "metrics.json")
    assert metrics["auroc"] > 0.9
    assert {"auroc", "auprc", "best_f1", "f1", "pa_f1"} <= set(metrics)
    assert {"pca", "random"} == set(metrics["baselines"])
    assert read_json(run / "validation.json")["ok"] is True
    assert "model" in torch.load(run / "patchtst" / "best.pt", weights_only=True)
    with np.load(run / "patchtst" / "channel_scores.npz") as z:
        assert z["errors"].shape == (400, 3) and list(z["channels"]) == ["a", "b", "c"]
        assert z["errors"][200:203].argmax() % 3 == 1  # channel b carries the spike

    (entry,) = read_json(ws / "runs" / "index.json")
    assert entry["run_id"] == run.name and entry["status"] == "done"
    assert entry["metrics"]["patchtst"]["auroc"] == metrics["auroc"]


def test_dry_run_writes_config_and_trains_nothing(tiny_dataset, tmp_path):
    ws = tmp_path / "ws"
    res = run_cli("run", "--ts-data", str(tiny_dataset), "--workdir", str(ws), "--dry-run",
                  "--set", "patchtst.train.epochs=7")
    assert res.returncode == 0, res.stderr
    assert [line.split()[1] for line in res.stdout.splitlines() if line.startswith("[")] == STAGES
    assert "3 channels, 800 train rows" in res.stdout
    assert "device: cpu" in res.stdout or "device: cuda" in res.stdout  # the device is checked
    run = only_run_dir(ws)
    assert "epochs: 7" in (run / "run.yaml").read_text()
    assert read_json(run / "progress.json")["status"] == "planned"
    assert not (run / "patchtst" / "scores.csv").exists()
    assert not list(run.rglob("*.pt"))


def test_bad_test_columns_fail_with_a_clear_message(tiny_dataset, tmp_path):
    test = pd.read_csv(tiny_dataset / "test.csv").rename(columns={"c": "z"})
    test.to_csv(tiny_dataset / "test.csv", index=False)
    dry = run_cli("run", "--ts-data", str(tiny_dataset), "--workdir", str(tmp_path / "a"),
                  "--dry-run")
    assert dry.returncode == 2 and "test.csv" in dry.stderr and "'z'" in dry.stderr

    res = run_cli("run", "--ts-data", str(tiny_dataset), "--workdir", str(tmp_path / "b"), *TINY)
    assert res.returncode == 1
    progress = read_json(only_run_dir(tmp_path / "b") / "progress.json")
    assert progress["status"] == "failed" and "'z'" in progress["error"]
    assert progress["stages"][0]["status"] == "failed"
    assert {s["status"] for s in progress["stages"][1:]} == {"idle"}


def test_unknown_override_is_refused_before_a_run_exists(tiny_dataset, tmp_path):
    res = run_cli("run", "--ts-data", str(tiny_dataset), "--workdir", str(tmp_path),
                  "--set", "patchtst.train.epoch=3")
    assert res.returncode == 2
    assert "patchtst.train.epoch: unknown key" in res.stderr and "epochs" in res.stderr
    assert not (tmp_path / "runs").exists()


def test_a_single_csv_without_test_data_scores_the_training_rows(tmp_path):
    path = tmp_path / "only.csv"
    make_series(700, 3).to_csv(path, index=False)
    res = run_cli("run", "--ts-data", str(path), "--workdir", str(tmp_path / "ws"), *TINY)
    assert res.returncode == 0, res.stdout + res.stderr
    run = only_run_dir(tmp_path / "ws")
    assert len(pd.read_csv(run / "patchtst" / "scores.csv")) == 700
    stages = {s["name"]: s for s in read_json(run / "progress.json")["stages"]}
    assert stages["evaluate_patchtst"]["status"] == "skipped"
    assert "no labels" in stages["evaluate_patchtst"]["message"]


def _start_long_run(tiny_dataset: Path, ws: Path, epochs: int) -> Path:
    cfg = load_config(["patchtst.preset=tiny", f"patchtst.train.epochs={epochs}",
                       "patchtst.train.patience=0", f"pipeline.ts_data={tiny_dataset}"])
    run = create_run(workspace(ws), cfg)
    jobs.start(run)
    return run


def _training_step(run: Path) -> int:
    active = (read_json(run / "progress.json") or {}).get("active") or {}
    return active.get("step", 0) if active.get("stage") == "train_patchtst" else 0


def test_stop_mid_training_then_resume(tiny_dataset, tmp_path):
    # ~2,400 steps, so an idle machine is still training when the stop lands
    run = _start_long_run(tiny_dataset, tmp_path / "ws", epochs=60)
    wait_for(lambda: _training_step(run) >= 10, "training steps")
    progress = jobs.stop(run, grace_s=30)
    assert progress["status"] == "stopped", progress
    stages = {s["name"]: s["status"] for s in progress["stages"]}
    assert stages["train_patchtst"] == "stopped" and stages["score_patchtst"] == "idle"
    last = torch.load(run / "patchtst" / "last.pt", weights_only=True)
    stopped_at = last["state"]["step"]
    assert 0 < stopped_at < 60 * 40 and "optimizer" in last

    res = run_cli("resume", str(run))
    assert res.returncode == 0, res.stdout + res.stderr
    assert read_json(run / "progress.json")["status"] == "done"
    assert read_json(run / "patchtst" / "training.json")["epochs_done"] == 60
    steps = [line["step"] for line in read_jsonl(run / "metrics.jsonl") if line["kind"] == "step"]
    resumed = steps[steps.index(max(s for s in steps if s <= stopped_at)) + 1:]
    assert resumed and min(resumed) > stopped_at  # continued, not restarted from step 1


def test_killed_run_is_shown_lost_and_frees_the_workspace(tiny_dataset, tmp_path):
    ws = tmp_path / "ws"
    run = _start_long_run(tiny_dataset, ws, epochs=500)
    wait_for(lambda: _training_step(run) >= 1, "training to start")
    assert jobs.active_run_id(workspace(ws)) == run.name
    with pytest.raises(JobError, match="already running"):
        jobs.start(create_run(workspace(ws), load_config([f"pipeline.ts_data={tiny_dataset}"])))

    os.killpg(read_json(run / "progress.json")["pgid"], signal.SIGKILL)
    status = wait_for(lambda: (s := jobs.run_status(run))["status"] != "running" and s,
                       what="the run to be seen lost")
    assert status["label"] == "failed (lost)"
    res = run_cli("status", str(run))  # the CLI's status watches: it records the loss
    assert "failed (lost)" in res.stdout
    assert read_json(run / "progress.json")["status"] == "failed"  # persisted for every reader
    assert jobs.active_run_id(workspace(ws)) is None
    entry = next(e for e in read_json(ws / "runs" / "index.json") if e["run_id"] == run.name)
    assert entry["status"] == "failed"


def test_too_few_rows_for_a_window_is_named_before_training(tiny_dataset, tmp_path):
    res = run_cli("run", "--ts-data", str(tiny_dataset), "--workdir", str(tmp_path), "--dry-run",
                  "--set", "patchtst.data.window=500", "--set", "patchtst.score.stride=10")
    assert res.returncode == 2
    assert "train.csv: 800 rows are too few for window 500" in res.stderr
    assert "expected at least 2500 rows" in res.stderr
