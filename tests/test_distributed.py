"""Training on several processes: two CPU ranks under torchrun (gloo), through the real CLI.
The run matches a one-process run's outputs, each rank trains on its half of every epoch, a stop
reaches every rank and resumes, and a failing or killed rank fails the run with its error."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import REPO, TINY, only_run_dir, run_cli, wait_for
from core import jobs
from core.config import read_config
from core.fileio import read_json, read_jsonl

pytestmark = pytest.mark.slow
TWO_RANKS = ["--set", "pipeline.distributed=true", "--set", "pipeline.nproc=2",
             "--set", "pipeline.device=cpu"]
IMAGES = REPO / "data" / "samples" / "images"
IMG_TINY = ["--set", "swinmae.preset=tiny", "--set", "swinmae.train.epochs=2",
            "--set", "swinmae.train.max_steps_per_epoch=3"]


def _run(ws: Path, *args: str) -> Path:
    res = run_cli("run", "--workdir", str(ws), *args, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return only_run_dir(ws)


def _epochs(run: Path, stream: str) -> list[dict]:
    return [m for m in read_jsonl(run / "metrics.jsonl")
            if m["kind"] == "epoch" and m["stream"] == stream]


def test_two_cpu_ranks_train_both_streams_like_one_process(tiny_dataset, tmp_path):
    args = ["--ts-data", str(tiny_dataset), "--img-data", str(IMAGES), *TINY,
            "--set", "patchtst.train.epochs=4", *IMG_TINY]
    solo = _run(tmp_path / "solo", *args)
    pair = _run(tmp_path / "pair", *args, *TWO_RANKS)

    assert "training on 2 processes" in (pair / "pipeline.log").read_text()
    assert "training on" not in (solo / "pipeline.log").read_text()
    assert read_json(pair / "progress.json")["status"] == "done"
    for rank in (0, 1):
        for stage in ("train_patchtst", "train_swinmae"):
            assert read_json(pair / "distributed" / f"{stage}.rank{rank}.json")["status"] == "done"
    # rank 0's reports reached the pipeline: every epoch of both streams, and the loss fell
    for stream, n_epochs in (("patchtst", 4), ("swinmae", 2)):
        epochs = _epochs(pair, stream)
        assert [e["epoch"] for e in epochs] == list(range(1, n_epochs + 1))
        assert len(_epochs(solo, stream)) == n_epochs
    ts, ts_solo = _epochs(pair, "patchtst"), _epochs(solo, "patchtst")
    assert ts[-1]["train_loss"] < ts[0]["train_loss"] and ts[-1]["val_loss"] < ts[0]["val_loss"]
    assert ts[-1]["val_loss"] < 1.05 * ts_solo[-1]["val_loss"]  # learnt as much as one process
    # each rank took half of every epoch's windows: fewer optimizer steps than one process
    windows = int(re.search(r"(\d+) training windows", (pair / "pipeline.log").read_text())[1])
    batch = read_config(pair / "run.yaml").patchtst.train.batch_size
    steps = {name: torch.load(run / "patchtst" / "last.pt", weights_only=True)["state"]["step"]
             for name, run in (("solo", solo), ("pair", pair))}
    assert steps == {"solo": 4 * -(-windows // batch), "pair": 4 * -(-(windows // 2) // batch)}
    # the same outputs, of the same shapes, as one process
    for stream, columns in (("patchtst", ["timestamp", "score", "is_anomaly", "label"]),
                            ("swinmae", ["file", "defect_type", "score", "is_anomaly", "label"])):
        one, two = (pd.read_csv(run / stream / "scores.csv") for run in (solo, pair))
        assert list(two.columns) == columns and len(two) == len(one)
        assert two["score"].notna().all()
        a, b = (torch.load(run / stream / "best.pt", weights_only=True)["model"]
                for run in (solo, pair))
        assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert read_json(pair / "patchtst" / "metrics.json")["auroc"] > 0.9  # the planted spike
    assert read_json(pair / "validation.json")["ok"] is True


def _rank_pids(run: Path) -> dict[int, int]:
    """Rank → pid of this run's live torchrun workers."""
    ranks = {}
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"core.rank" in cmdline and str(run).encode() in cmdline:
                env = dict(kv.split(b"=", 1) for kv in (proc / "environ").read_bytes().split(b"\0")
                           if b"=" in kv)
                ranks[int(env[b"RANK"])] = int(proc.name)
        except (OSError, ValueError, KeyError):
            continue
    return ranks


def _start(ws: Path, tiny_dataset: Path, *extra: str) -> Path:
    res = run_cli("run", "--workdir", str(ws), "--ts-data", str(tiny_dataset), *TINY,
                  "--set", "patchtst.train.epochs=400", "--set", "patchtst.train.patience=0",
                  *TWO_RANKS, *extra, "--detach")
    assert res.returncode == 0, res.stdout + res.stderr
    return only_run_dir(ws)


def _logged_steps(run: Path) -> int:
    path = run / "metrics.jsonl"
    return sum(1 for m in read_jsonl(path) if m["kind"] == "step") if path.exists() else 0


def test_stop_reaches_every_rank_and_the_run_resumes(tiny_dataset, tmp_path):
    run = _start(tmp_path / "ws", tiny_dataset)
    wait_for(lambda: _logged_steps(run) >= 3 and len(_rank_pids(run)) == 2, "training steps",
             120)
    progress = jobs.stop(run, grace_s=60)
    assert progress["status"] == "stopped", progress
    assert {s["name"]: s["status"] for s in progress["stages"]}["train_patchtst"] == "stopped"
    for rank in (0, 1):
        assert read_json(run / "distributed" / f"train_patchtst.rank{rank}.json") == \
            {"status": "stopped"}
    assert _rank_pids(run) == {}  # no rank left behind
    last = torch.load(run / "patchtst" / "last.pt", weights_only=True)
    stopped_at = last["state"]["step"]
    assert stopped_at > 0 and not last["state"]["finished"]

    config = (run / "run.yaml").read_text().replace("epochs: 400", "epochs: 2", 1)
    (run / "run.yaml").write_text(config)  # finish soon: the stop came after epoch 2 or not
    res = run_cli("resume", str(run), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert read_json(run / "progress.json")["status"] == "done"
    resumed = torch.load(run / "patchtst" / "last.pt", weights_only=True)["state"]
    assert resumed["finished"] and resumed["step"] >= stopped_at


def test_a_failing_rank_fails_the_run_with_its_own_error(tiny_dataset, tmp_path):
    res = run_cli("run", "--workdir", str(tmp_path), "--ts-data", str(tiny_dataset), *TINY,
                  "--set", "patchtst.train.lr=1e30", *TWO_RANKS, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    progress = read_json(only_run_dir(tmp_path) / "progress.json")
    assert progress["status"] == "failed"
    assert progress["error"].startswith("rank 0: non-finite training loss")
    assert "lower learning rate" in progress["error"]


def test_a_killed_rank_fails_the_run_and_no_rank_is_left(tiny_dataset, tmp_path):
    run = _start(tmp_path / "ws", tiny_dataset)
    ranks = wait_for(lambda: _logged_steps(run) >= 1 and len(r := _rank_pids(run)) == 2 and r,
                     "both ranks training", 120)
    os.kill(ranks[1], 9)
    progress = wait_for(lambda: (p := read_json(run / "progress.json"))["status"] not in
                        jobs.LIVE_STATES and p, "the run to end", 120)
    assert progress["status"] == "failed"
    assert "rank 1 of 2 died without reporting" in progress["error"]
    wait_for(lambda: _rank_pids(run) == {}, "rank 0 to exit")
