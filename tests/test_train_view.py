"""core.train_view and core.figures.live: the Train page's live view, read from fabricated run folders,
its figures, and one real run started the way the page starts it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import jobs, train_view
from core.errors import ConfigError, DataError, JobError
from core.figures.live import LOSS_AXIS, STATE_COLOURS, STEP_AXIS, loss_figure, stage_graph
from core.fileio import write_json
from core.train_view import (StageView, format_eta, latest_run, live_view, preset_values,
                       preview_config, start_training, tail_lines, training_overrides)
from core.progress import initial_progress
from core.runs import RunIndex, workspace
from core.streams import STREAMS, stage_names

NOW = 1_800_000_000.0
STAGES = stage_names()


def fake_run(ws: Path, run_id: str, status: str = "running", states=None, active=None,
             pid: int | None = None, epochs: int = 4, **top) -> Path:
    """A run folder as the pipeline leaves it: run.yaml, progress.json (with this test process
    as the live pid by default), an empty metrics.jsonl; indexed."""
    run = ws / "runs" / run_id
    run.mkdir(parents=True)
    (run / "run.yaml").write_text(f"pipeline: {{ts_data: data}}\npatchtst: {{train: {{epochs: "
                                  f"{epochs}}}}}\n")
    progress = initial_progress(run_id, STAGES, status, pid or os.getpid())
    progress.update(started=NOW - 100, heartbeat=time.time(), active=active, **top)
    for stage, state in zip(progress["stages"], states or []):
        stage["status"] = state
        if state != "idle":
            stage["started"] = NOW - 60
            stage["ended"] = None if state == "running" else NOW - 50
    write_json(run / "progress.json", progress)
    RunIndex(ws).update(run)
    return run


def write_metrics(run: Path, n_steps: int, steps_per_epoch: int, stream: str = "patchtst"):
    with open(run / "metrics.jsonl", "a") as f:
        for step in range(1, n_steps + 1):
            f.write(json.dumps({"stream": stream, "kind": "step", "epoch": 1, "step": step,
                                "train_loss": 1.0 / step, "samples_per_s": 500.0 + step}) + "\n")
            if step % steps_per_epoch == 0:
                f.write(json.dumps({"stream": stream, "kind": "epoch",
                                    "epoch": step // steps_per_epoch, "train_loss": 0.5,
                                    "val_loss": 2.0 / step}) + "\n")


@pytest.fixture
def ws(tmp_path) -> Path:
    return workspace(tmp_path / "ws")


N = len(STAGES)
RUNNING = ["done", "running"] + ["idle"] * (N - 2)
# a time-series-only run: the image stream's stages are skipped
TS_ONLY = ["skipped" if name.endswith("swinmae") else "done" for name in STAGES]
ACTIVE = {"stage": "train_patchtst", "index": 2, "n": N, "epoch": 2, "step": 30, "n_steps": 120,
          "eta_s": 125.0, "samples_per_s": 812.4}


def test_live_view_of_a_running_run(ws):
    run = fake_run(ws, "r1", states=RUNNING, active=ACTIVE, device="cpu (2 threads)")
    write_metrics(run, 30, 10)
    (run / "pipeline.log").write_text("".join(f"line {i}\n" for i in range(100)))

    view = live_view(run, log_lines=5, now=NOW)

    assert (view.status, view.label, view.live, view.error) == ("running", "running", True, None)
    assert [s.status for s in view.stages] == RUNNING
    assert [s.name for s in view.stages] == STAGES
    assert view.stages[0].seconds == pytest.approx(10.0)
    assert view.stages[1].seconds == pytest.approx(60.0)  # running: up to now
    assert view.stages[2].seconds is None
    assert (view.active.name, view.active_index, view.n_stages) == ("train_patchtst", 2, N)
    assert view.stage_text == f"2/{N} train_patchtst" and view.stage_count == f"2/{N}"
    assert (view.epoch, view.n_epochs) == (2, 4)  # n_epochs from run.yaml before epoch 1 ends
    assert (view.step, view.n_steps, view.fraction) == (30, 120, 0.25)
    assert view.eta_text == "2 min 05 s"
    assert view.samples_per_s == 812.4 and view.device == "cpu (2 threads)"
    assert view.elapsed_s == pytest.approx(100.0)
    assert view.log_tail == [f"line {i}" for i in range(95, 100)]
    curve = view.curves["patchtst"]
    assert list(curve["step"]) == list(range(1, 31))
    assert list(curve["epoch"]) == [1, 2, 3]
    assert curve["val_step"] == [10.0, 20.0, 30.0]  # each epoch's point sits at its last step


def test_live_view_of_a_finished_run_and_gpu_memory(ws):
    run = fake_run(ws, "r1", status="done", states=TS_ONLY,
                   finished=NOW - 10, device="cuda:0 NVIDIA H200 (bf16)")
    write_metrics(run, 20, 10)
    view = live_view(run, now=NOW)
    assert (view.status, view.live, view.active, view.fraction) == ("done", False, None, 1.0)
    assert view.eta_text == "—" and view.samples_per_s == 520.0  # the last logged step's
    assert view.stage_text == f"{N}/{N} done" and (view.epoch, view.n_epochs) == (2, 4)
    assert view.elapsed_s == pytest.approx(90.0)
    assert view.log_tail == []  # no log file: nothing, not an error

    running = fake_run(ws, "r2", states=RUNNING, device="cuda:0 NVIDIA H200 (bf16)",
                       active=ACTIVE | {"gpu_mem_gb": 3.14159})
    assert live_view(running).device == "cuda:0 NVIDIA H200 (bf16) · 3.1 GB in use"
    ddp = fake_run(ws, "r3", states=RUNNING, device="cuda:0 NVIDIA H200, bf16",
                   active=ACTIVE | {"gpu_mem_gb": 2.0, "processes": 4})
    assert live_view(ddp).device == "cuda:0 NVIDIA H200, bf16 × 4 processes · 2.0 GB in use"


def test_live_view_marks_a_vanished_process_lost(ws):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = fake_run(ws, "r1", states=RUNNING, active=ACTIVE, pid=dead.pid)
    view = live_view(run)
    assert view.label == "failed (lost)" and not view.live
    assert view.stages[1].status == "failed"
    assert view.stage_text == f"2/{N} train_patchtst (failed)" and "lost" in view.error
    assert view.stage_count == f"2/{N}"


def test_live_view_falls_back_to_stdout_log(ws):
    run = fake_run(ws, "r1", states=RUNNING)
    (run / "stdout.log").write_text("Traceback (most recent call last):\nboom\n")
    assert live_view(run).log_tail == ["Traceback (most recent call last):", "boom"]


@pytest.mark.parametrize("seconds, text", [
    (None, "—"), (float("nan"), "—"), (0, "0 s"), (44.6, "45 s"), (60, "1 min 00 s"),
    (125, "2 min 05 s"), (3599, "59 min 59 s"), (3600, "1 h 00 min"), (7440, "2 h 04 min"),
])
def test_format_eta(seconds, text):
    assert format_eta(seconds) == text


def test_long_history_is_downsampled_and_read_incrementally(ws):
    run = fake_run(ws, "r1", states=RUNNING, active=ACTIVE)
    write_metrics(run, 10_000, 1_000)
    view = live_view(run, max_points=1500, smoothing=0.5)
    curve = view.curves["patchtst"]
    assert len(curve["step"]) == len(curve["train_loss"]) <= 1500
    assert curve["step"][0] < 10 and curve["step"][-1] > 9_990  # the whole range, in buckets
    assert len(curve["val_loss"]) == 10
    assert curve["val_step"] == [1000.0 * k for k in range(1, 11)]

    with open(run / "metrics.jsonl", "a") as f:  # the trainer appends; half a line so far
        f.write(json.dumps({"stream": "patchtst", "kind": "epoch", "epoch": 11,
                            "train_loss": 0.1, "val_loss": 0.1})[:20])
    assert len(live_view(run).curves["patchtst"]["val_loss"]) == 10
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"stream": "patchtst", "kind": "epoch", "epoch": 11,
                            "train_loss": 0.1, "val_loss": 0.1})[20:] + "\n")
    assert list(live_view(run).curves["patchtst"]["epoch"])[-1] == 11

    (run / "metrics.jsonl").write_text("")  # replaced by a new file (e.g. a rerun): start over
    assert live_view(run).curves == {}


def test_log_tail_reads_only_the_end_of_a_big_log(tmp_path, monkeypatch):
    path = tmp_path / "pipeline.log"
    path.write_text("".join(f"2026-01-01 00:00:00 INFO step {i}\n" for i in range(300_000)))
    assert path.stat().st_size > 8_000_000
    read = []

    class Spy:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

        def read(self, n=-1):
            data = self.f.read(n)
            read.append(len(data))
            return data

    monkeypatch.setattr(train_view, "open", lambda *a, **k: Spy(open(*a, **k)), raising=False)
    tail = tail_lines(path, 30)
    assert tail == [f"2026-01-01 00:00:00 INFO step {i}" for i in range(299_970, 300_000)]
    assert sum(read) < 20_000
    assert tail_lines(path, 0) == [] and tail_lines(tmp_path / "missing.log", 5) == []
    short = tmp_path / "short.log"
    short.write_text("a\nb\nc")  # no newline at the end: the last line still counts
    assert tail_lines(short, 2) == ["b", "c"] and tail_lines(short, 10) == ["a", "b", "c"]


def test_latest_run_prefers_the_running_job_over_the_newest_run(ws):
    assert latest_run(ws) is None
    older = fake_run(ws, "20260101-000000-aaaa", status="done")
    newer = fake_run(ws, "20260102-000000-bbbb", status="done")
    (ws / "runs" / "20260103-000000-cccc").mkdir()  # never started: nothing to show
    assert latest_run(ws) == newer
    lock = jobs.JobLock(ws, older.name)  # what the pipeline process holds while it runs
    try:
        assert latest_run(ws) == older
    finally:
        lock.release()
    assert latest_run(ws) == newer


def test_stage_graph_nodes_edges_and_legend():
    states = ["done", "running", "failed", "stopped", "skipped", "idle"]
    states += ["idle"] * (len(STAGES) - len(states))  # one of each state, then idle ones
    stages = [StageView(name, state, 12.0 if state != "idle" else None)
              for name, state in zip(STAGES, states)]
    fig = stage_graph(list(reversed(stages)))  # drawn in pipeline order whatever the input
    nodes = {}
    for trace in fig.data:
        for x, label in zip(trace.x, trace.text):
            if x is not None:
                nodes[x] = (label, trace.name, trace.marker.color)
    assert sorted(nodes) == list(range(len(STAGES)))  # one node per stage, left to right
    for x, (name, state) in enumerate(zip(STAGES, states)):
        label, trace_state, colour = nodes[x]
        assert label.replace("<br>", "").startswith(name)
        assert trace_state == state and colour == STATE_COLOURS[state]
    assert [t.name for t in fig.data] == list(STATE_COLOURS)  # a legend entry per state
    assert all(t.showlegend is not False for t in fig.data) and fig.layout.showlegend
    assert len(set(STATE_COLOURS.values())) == 6
    arrows = [a for a in fig.layout.annotations if a.showarrow]
    assert len(arrows) == len(STAGES) - 1
    assert sorted((a.ax, a.x) for a in arrows) == [pytest.approx((i + 0.17, i + 0.83))
                                                   for i in range(len(STAGES) - 1)]  # i → i + 1
    assert not fig.layout.xaxis.visible and not fig.layout.yaxis.visible


def test_loss_figure_traces_axes_and_log_scale(ws):
    run = fake_run(ws, "r1", states=RUNNING, active=ACTIVE)
    write_metrics(run, 30, 10)
    curves = live_view(run).curves
    fig = loss_figure(curves, log_y=False)
    train, val = fig.data
    assert (train.name, val.name) == ("patchtst train", "patchtst validation")
    assert list(train.x) == list(range(1, 31)) and list(val.x) == [10, 20, 30]
    assert fig.layout.xaxis.title.text == STEP_AXIS == "optimizer step"
    assert fig.layout.yaxis.title.text == LOSS_AXIS == "loss (normalised units)"
    assert fig.layout.yaxis.type == "linear"
    assert loss_figure(curves, log_y=True).layout.yaxis.type == "log"
    empty = loss_figure({}, log_y=False)
    assert not empty.data and "no loss" in empty.layout.annotations[0].text


def test_a_lone_loss_point_is_drawn_and_zoom_survives_new_points(ws):
    run = fake_run(ws, "r1", states=RUNNING, active=ACTIVE)
    write_metrics(run, 1, 10)
    lone = loss_figure(live_view(run).curves, revision="r1")
    assert "markers" in lone.data[0].mode and list(lone.data[0].x) == [1]
    write_metrics(run, 40, 10)  # a longer curve: a line only
    longer = loss_figure(live_view(run).curves, revision="r1")
    assert longer.data[0].mode == "lines"
    # the same run and scale keep plotly's UI state (zoom) across redraws; a new scale resets it
    assert lone.layout.uirevision == longer.layout.uirevision
    assert loss_figure({}, log_y=True, revision="r1").layout.uirevision != lone.layout.uirevision
    assert loss_figure({}, revision="r2").layout.uirevision != lone.layout.uirevision


def test_eta_is_estimating_until_two_steps_are_reported(ws):
    first = fake_run(ws, "r1", states=RUNNING, active=ACTIVE | {"eta_s": None})
    assert live_view(first).eta_text == "estimating…"
    assert live_view(fake_run(ws, "r2", states=RUNNING, active=ACTIVE)).eta_text == "2 min 05 s"


def test_train_reporter_has_no_eta_from_one_step(monkeypatch):
    """The first report is a single point: no rate, so no ETA (it used to say '0 s')."""
    from types import SimpleNamespace
    from core import runner
    active = []
    ctx = SimpleNamespace(metrics=SimpleNamespace(log=lambda **kw: None),
                          progress=SimpleNamespace(update_active=lambda **kw: active.append(kw)))
    clock = iter([100.0, 101.0, 110.0])
    monkeypatch.setattr(runner.time, "time", lambda: next(clock))
    reporter = runner.TrainReporter(ctx, "train_patchtst", "patchtst")
    step = dict(epoch=1, n_epochs=2, n_steps=100, loss=1.0, lr=1e-3, samples_per_s=10.0,
                gpu_mem_gb=None)
    reporter.step(step=1, **step)
    reporter.step(step=10, **step)  # 9 steps in 9 s: 90 steps left take 90 s
    assert [a["eta_s"] for a in active] == [None, 90.0]


def test_form_values_overrides_and_preview():
    stream = STREAMS["patchtst"]
    tiny = preset_values(stream, "tiny")
    assert tiny == {"train.epochs": 3, "train.batch_size": 32, "train.lr": 0.001,
                    "train.patience": 3, "data.window": 40, "model.patch_len": 8,
                    "model.mask_ratio": 0.4}
    overrides = training_overrides({"patchtst": Path("/data/x")}, {"patchtst": "tiny"},
                                   {"patchtst": tiny | {"train.epochs": 7}},
                                   {"device": "cpu", "precision": "bf16", "nproc": 2})
    assert overrides["pipeline.ts_data"] == "/data/x" and overrides["pipeline.device"] == "cpu"
    assert overrides["pipeline.precision"] == "bf16" and overrides["pipeline.nproc"] == 2
    assert overrides["patchtst.train.epochs"] == 7 and overrides["patchtst.preset"] == "tiny"
    text = preview_config(overrides)
    assert "epochs: 7" in text and "window: 40" in text and "ts_data: /data/x" in text
    assert "precision: bf16" in text and "nproc: 2" in text
    assert training_overrides({"patchtst": None}, {}, {}, {})["pipeline.ts_data"] is None
    with pytest.raises(ConfigError, match="must be a multiple of patchtst.model.patch_len"):
        preview_config(overrides | {"patchtst.data.window": 42})


def test_start_training_refuses_no_or_missing_data(ws):
    with pytest.raises(DataError, match="choose a dataset for at least one stream"):
        start_training(ws, {"pipeline.ts_data": None})
    with pytest.raises(DataError, match="nope: expected a CSV file or a dataset folder"):
        start_training(ws, {"pipeline.ts_data": str(ws / "nope")})  # the dry run's check
    assert not [p for p in (ws / "runs").iterdir() if p.is_dir()]


@pytest.mark.slow
def test_start_training_runs_the_pipeline_to_done(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("ATC_WORKDIR", str(tmp_path / "ws"))
    ws = workspace()
    overrides = training_overrides({"patchtst": tiny_dataset}, {"patchtst": "tiny"},
                                   {"patchtst": {"train.epochs": 2}}, {"device": "cpu"})
    run = start_training(ws, overrides)
    try:
        assert run.parent == ws / "runs" and latest_run(ws) == run
        assert "epochs: 2" in (run / "run.yaml").read_text()
        with pytest.raises(JobError, match="already running"):  # even before the lock is held
            start_training(ws, overrides)
        end = time.time() + 120
        while jobs.run_status(run)["status"] in jobs.LIVE_STATES and time.time() < end:
            time.sleep(0.5)
        view = live_view(run)
        assert view.status == "done", view.log_tail
        assert [s.status for s in view.stages] == TS_ONLY
        assert view.fraction == 1.0 and len(view.curves["patchtst"]["val_loss"]) == 2
        assert view.device.startswith("cpu") and \
            any(f"[{N}/{N}] publish" in x for x in view.log_tail)
    finally:
        if jobs.run_status(run)["status"] in jobs.LIVE_STATES:
            jobs.stop(run, grace_s=5)
