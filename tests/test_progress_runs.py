"""Tests of the file protocol: core/fileio.py (atomic writes, tolerant readers), core/progress.py
(progress.json stage transitions, metrics.jsonl), core/runs.py (workspace, run summaries, the
runs index and its rebuild) and the parts of core/jobs.py that need no subprocess pipeline (the
workspace job lock, lost-run detection)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from core import fileio, jobs
from core.config import load_config, save_config
from core.errors import JobError
from core.fileio import append_jsonl, read_json, read_jsonl, write_atomic, write_json
from core.progress import MetricsLog, ProgressWriter, initial_progress, read_metrics, read_progress
from core.run_files import RunFiles
from core.runs import INDEX_FILE, RunIndex, runs_dir, summarize_run, workspace, workspace_of

STAGES = ["prepare_data", "train_patchtst", "score_patchtst", "publish"]


@pytest.fixture
def ws(tmp_path):
    return workspace(tmp_path / "ws")


def make_run(ws, run_id: str, status: str = "done", name: str = "",
             ts_data: str | None = "d", metrics: dict | None = None, started: float = 1000.0,
             finished: float | None = 1090.04):
    """A run folder as the pipeline leaves it: run.yaml, progress.json, patchtst/metrics.json."""
    run_dir = runs_dir(ws) / run_id
    run_dir.mkdir(parents=True)
    overrides = {"pipeline.name": name, "patchtst.preset": "tiny", "pipeline.device": "cpu"}
    if ts_data:
        overrides["pipeline.ts_data"] = ts_data
    save_config(load_config(overrides), run_dir / "run.yaml")
    progress = initial_progress(run_id, STAGES, status, pid=None)
    progress.update(started=started, finished=finished)
    write_json(run_dir / RunFiles.progress, progress)
    if metrics is not None:
        (run_dir / "patchtst").mkdir()
        write_json(run_dir / "patchtst" / "metrics.json", metrics)
    return run_dir


def finished_pid() -> int:
    """The pid of a process that has finished and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- fileio


def test_write_json_is_atomic_and_readable(tmp_path):
    path = tmp_path / "progress.json"
    write_json(path, {"a": 1, "b": [1, 2]})
    write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert read_json(path) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]  # no temp files left


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "index.json"
    write_json(path, ["old"])
    with pytest.raises(ValueError):
        write_json(path, {"loss": float("nan")})  # NaN is refused
    assert read_json(path) == ["old"]

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(fileio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    assert read_json(path) == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]


def test_atomic_path_renames_on_success_and_cleans_on_failure(tmp_path):
    target = tmp_path / "scores.csv"
    with fileio.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("x\n")
        assert not target.exists()  # only visible after the block
    assert target.read_text() == "x\n"
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "x\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_read_json_default_on_missing_or_invalid(tmp_path):
    assert read_json(tmp_path / "missing.json") is None
    assert read_json(tmp_path / "missing.json", default={}) == {}
    bad = tmp_path / "bad.json"
    bad.write_text('{"status": "runn')  # a half-written file
    assert read_json(bad, default="d") == "d"
    bad.write_bytes(b"\xff\xfe\x00")
    assert read_json(bad, default=[]) == []


def test_read_jsonl_ignores_a_partial_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_jsonl(path) == []
    append_jsonl(path, {"step": 1})
    append_jsonl(path, {"step": 2})
    with open(path, "a") as f:
        f.write('{"step": 3, "lo')  # a writer caught mid-line
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    with open(path, "a") as f:
        f.write('ss": 0.5}\n')  # the writer finishes the line
    assert read_jsonl(path)[-1] == {"step": 3, "loss": 0.5}


# ---------------------------------------------------------------- progress


def test_progress_writer_stage_transitions(tmp_path):
    writer = ProgressWriter(tmp_path, "run-1", STAGES)
    p = read_progress(tmp_path)
    assert p["run_id"] == "run-1" and p["status"] == "running"
    assert p["pid"] == os.getpid() and p["pgid"] == os.getpgrp()
    assert [s["name"] for s in p["stages"]] == STAGES
    assert {s["status"] for s in p["stages"]} == {"idle"} and p["active"] is None

    writer.set(device="cpu (1 thread)")
    writer.stage_started("prepare_data")
    p = read_progress(tmp_path)
    assert p["device"] == "cpu (1 thread)"
    assert p["stages"][0]["status"] == "running" and p["stages"][0]["started"] is not None
    assert p["active"] == {"stage": "prepare_data", "index": 1, "n": 4}

    writer.stage_ended("prepare_data", "done")
    writer.stage_started("train_patchtst")
    writer.update_active(epoch=2, n_epochs=5, step=30, n_steps=75, eta_s=12.5)
    p = read_progress(tmp_path)
    assert p["stages"][0]["status"] == "done"
    assert p["stages"][0]["ended"] >= p["stages"][0]["started"]
    assert p["active"]["stage"] == "train_patchtst" and p["active"]["index"] == 2
    assert p["active"]["step"] == 30 and p["active"]["n_steps"] == 75

    writer.stage_ended("train_patchtst", "failed", "non-finite loss")
    writer.stage_ended("score_patchtst", "skipped", "no data")
    writer.update_active(epoch=9)  # nothing active: a no-op
    p = read_progress(tmp_path)
    train, score = p["stages"][1], p["stages"][2]
    assert train["status"] == "failed" and train["message"] == "non-finite loss"
    assert score["status"] == "skipped" and score["message"] == "no data"
    assert score["started"] == score["ended"] is not None  # a skip gets a time, too
    assert p["active"] is None and p["stages"][3]["status"] == "idle"

    writer.finish("failed", error="TrainingError: non-finite loss")
    p = read_progress(tmp_path)
    assert p["status"] == "failed" and p["error"] == "TrainingError: non-finite loss"
    assert p["finished"] >= p["started"] and p["active"] is None
    assert [f.name for f in tmp_path.iterdir()] == [RunFiles.progress]


def test_progress_finish_done(tmp_path):
    writer = ProgressWriter(tmp_path, "r", ["a"])
    writer.stage_started("a")
    writer.stage_ended("a", "done")
    writer.finish("done")
    p = read_progress(tmp_path)
    assert p["status"] == "done" and p["error"] is None and p["finished"] is not None


def test_heartbeat_refreshes_until_finish(tmp_path):
    writer = ProgressWriter(tmp_path, "r", ["a"])
    first = read_progress(tmp_path)["heartbeat"]
    writer.start_heartbeat(interval=0.02)
    deadline = time.time() + 5
    while read_progress(tmp_path)["heartbeat"] == first and time.time() < deadline:
        time.sleep(0.01)
    assert read_progress(tmp_path)["heartbeat"] > first
    writer.finish("done")
    time.sleep(0.05)
    after = read_progress(tmp_path)["heartbeat"]
    time.sleep(0.1)
    assert read_progress(tmp_path)["heartbeat"] == after  # the thread has stopped


def test_metrics_log_lines(tmp_path):
    log = MetricsLog(tmp_path)
    log.log(stage="train_patchtst", kind="step", epoch=1, step=5, train_loss=0.5)
    log.log(stage="train_patchtst", kind="epoch", epoch=1, train_loss=0.4, val_loss=0.45)
    lines = (tmp_path / RunFiles.metrics_log).read_text().splitlines()
    assert len(lines) == 2
    rows = read_metrics(tmp_path)
    assert [r["kind"] for r in rows] == ["step", "epoch"]
    assert rows[0]["step"] == 5 and rows[1]["val_loss"] == 0.45
    assert all(abs(r["time"] - time.time()) < 60 for r in rows)


# ---------------------------------------------------------------- runs


def test_workspace_argument_env_and_creation(tmp_path, monkeypatch):
    monkeypatch.setenv("ATC_WORKDIR", str(tmp_path / "from_env"))
    ws = workspace()
    assert ws == (tmp_path / "from_env").resolve() and (ws / "runs").is_dir()
    ws2 = workspace(tmp_path / "from_arg")  # the argument wins over the variable
    assert ws2 == (tmp_path / "from_arg").resolve() and (ws2 / "runs").is_dir()
    assert workspace(str(tmp_path / "from_arg")) == ws2


def test_summarize_run_fields(ws):
    run_dir = make_run(ws, "20240102-030405-abcd", name="first",
                       metrics={"auroc": 0.9, "auprc": 0.5, "best_f1": 0.6, "f1": 0.55,
                                "pa_f1": 0.8, "threshold": 1.2})
    (run_dir / "patchtst" / "best.pt").write_bytes(b"")
    s = summarize_run(run_dir)
    assert s["run_id"] == "20240102-030405-abcd" and s["name"] == "first"
    assert s["status"] == "done" and s["error"] is None
    assert s["started"] == 1000.0 and s["finished"] == 1090.04 and s["duration_s"] == 90.0
    assert s["streams"] == ["patchtst"] and s["data"] == {"timeseries": "d"}
    assert s["metrics"] == {"patchtst": {"auroc": 0.9, "auprc": 0.5, "best_f1": 0.6,
                                         "f1": 0.55, "pa_f1": 0.8}}
    assert s["params"] == {"device": "cpu", "patchtst.preset": "tiny", "patchtst.epochs": 3,
                           "patchtst.batch_size": 32, "patchtst.lr": 0.001, "patchtst.window": 40,
                           "patchtst.patch_len": 8, "patchtst.mask_ratio": 0.4,
                           "patchtst.mode": "masked"}
    json.dumps(s, allow_nan=False)  # an index entry must be plain JSON


def test_summarize_run_tolerates_missing_files(ws):
    run_dir = runs_dir(ws) / "20240101-000000-0000"
    run_dir.mkdir()
    s = summarize_run(run_dir)
    assert s["status"] == "unknown" and s["streams"] == [] and s["metrics"] == {}
    assert s["duration_s"] is None and s["params"] == {}
    running = make_run(ws, "20240101-000001-0000", status="running", finished=None,
                       ts_data=None)
    s = summarize_run(running)
    assert s["status"] == "running" and s["duration_s"] is None and s["streams"] == []


def test_run_index_update_and_entries(ws):
    index = RunIndex(ws)
    a = make_run(ws, "20240101-000000-aaaa", name="a")
    b = make_run(ws, "20240102-000000-bbbb", name="b", status="running", finished=None)
    index.update(a)
    index.update(b)
    entries = index.entries()
    assert [e["run_id"] for e in entries] == [b.name, a.name]  # newest first
    assert entries[0]["status"] == "running"
    # the run finishes: its entry is replaced, not duplicated
    progress = read_progress(b)
    progress.update(status="done", finished=progress["started"] + 5)
    write_json(b / RunFiles.progress, progress)
    index.update(b)
    entries = index.entries()
    assert [e["run_id"] for e in entries] == [b.name, a.name]
    assert entries[0]["status"] == "done" and entries[0]["duration_s"] == 5.0
    index.remove(a.name)
    assert [e["run_id"] for e in index.entries()] == [b.name]


def test_run_index_rebuilds_when_missing(ws):
    index = RunIndex(ws)
    runs = [make_run(ws, f"2024010{i}-000000-000{i}", name=str(i)) for i in range(1, 4)]
    index.update(runs[0])
    (runs_dir(ws) / "not-a-run").mkdir()  # no run.yaml: not listed
    (runs_dir(ws) / INDEX_FILE).unlink()
    entries = index.entries()
    assert [e["run_id"] for e in entries] == [r.name for r in reversed(runs)]
    assert [e["name"] for e in entries] == ["3", "2", "1"]
    assert read_json(runs_dir(ws) / INDEX_FILE) == entries  # written back


@pytest.mark.parametrize("content", ['[{"run_id": "x"', "{}", "null", ""])
def test_run_index_rebuilds_when_corrupt(ws, content):
    run = make_run(ws, "20240101-000000-0001")
    (runs_dir(ws) / INDEX_FILE).write_text(content)
    entries = RunIndex(ws).entries()
    assert [e["run_id"] for e in entries] == [run.name]
    assert isinstance(read_json(runs_dir(ws) / INDEX_FILE), list)


@pytest.mark.parametrize("content", [None, "not json"])
def test_run_index_update_after_the_index_was_lost_keeps_other_runs(ws, content):
    """The index must stay derivable from the run folders: when index.json is missing or
    unreadable, the next `update` (e.g. a new run starting) must not drop the earlier runs."""
    old = [make_run(ws, f"2024010{i}-000000-000{i}") for i in (1, 2)]
    index = RunIndex(ws)
    for run in old:
        index.update(run)
    if content is None:
        (runs_dir(ws) / INDEX_FILE).unlink()
    else:
        (runs_dir(ws) / INDEX_FILE).write_text(content)
    new = make_run(ws, "20240109-000000-0009")
    index.update(new)
    assert [e["run_id"] for e in index.entries()] == [new.name, old[1].name, old[0].name]


def test_run_index_remove_after_the_index_was_lost_keeps_other_runs(ws):
    runs = [make_run(ws, f"2024010{i}-000000-000{i}") for i in (1, 2, 3)]
    (runs_dir(ws) / INDEX_FILE).unlink(missing_ok=True)
    RunIndex(ws).remove(runs[0].name)
    assert [e["run_id"] for e in RunIndex(ws).entries()] == [runs[2].name, runs[1].name]


def test_run_index_survives_one_unreadable_run_yaml(ws):
    """One hand-edited, broken run.yaml must not take the whole runs list down."""
    good = make_run(ws, "20240101-000000-0001")
    bad = make_run(ws, "20240102-000000-0002")
    (bad / "run.yaml").write_text("pipeline: {name: [unclosed\n")
    entries = RunIndex(ws).entries()
    assert good.name in [e["run_id"] for e in entries]


def test_workspace_of_a_run_dir(ws):
    run = make_run(ws, "20240101-000000-0001")
    assert workspace_of(run) == ws


# ---------------------------------------------------------------- jobs


def test_job_lock_and_active_run_id(ws):
    assert jobs.active_run_id(ws) is None  # no lock file at all
    lock = jobs.JobLock(ws, "20240101-000000-0001")
    try:
        assert jobs.active_run_id(ws) == "20240101-000000-0001"
        with pytest.raises(JobError) as e:
            jobs.JobLock(ws, "20240101-000000-0002")
        assert "20240101-000000-0001" in str(e.value) and "already running" in str(e.value)
        assert jobs.active_run_id(ws) == "20240101-000000-0001"  # the failed try changed nothing
    finally:
        lock.release()
    assert jobs.active_run_id(ws) is None  # lock file still there, but unlocked
    second = jobs.JobLock(ws, "20240101-000000-0002")
    try:
        assert jobs.active_run_id(ws) == "20240101-000000-0002"
    finally:
        second.release()


def test_job_locks_are_per_workspace(tmp_path):
    a, b = workspace(tmp_path / "a"), workspace(tmp_path / "b")
    lock_a = jobs.JobLock(a, "run-a")
    lock_b = jobs.JobLock(b, "run-b")
    try:
        assert jobs.active_run_id(a) == "run-a" and jobs.active_run_id(b) == "run-b"
    finally:
        lock_a.release()
        lock_b.release()


def write_running(run_dir, pid: int, heartbeat_age: float = 0.0) -> None:
    progress = initial_progress(run_dir.name, STAGES, "running", pid)
    progress["stages"][0]["status"] = "done"
    progress["stages"][1].update(status="running", started=time.time())
    progress["active"] = {"stage": STAGES[1], "index": 2, "n": len(STAGES)}
    progress["heartbeat"] = time.time() - heartbeat_age
    write_json(run_dir / RunFiles.progress, progress)


def test_run_status_shows_a_dead_running_run_failed_lost_and_watchdog_records_it(ws):
    run = make_run(ws, "20240101-000000-0001", status="running", finished=None)
    pid = finished_pid()
    write_running(run, pid)
    status = jobs.run_status(run)
    assert status["status"] == "failed" and status["label"] == "failed (lost)"
    assert status["lost"] is True and str(pid) in status["error"]
    assert read_progress(run)["status"] == "running"  # a reader only reads
    assert jobs.watchdog(run)["label"] == "failed (lost)"
    stored = read_progress(run)  # persisted
    assert stored["status"] == "failed" and stored["error"].startswith("lost:")
    assert stored["finished"] is not None and stored["active"] is None
    assert [s["status"] for s in stored["stages"]] == ["done", "failed", "idle", "idle"]
    assert jobs.run_status(run)["label"] == "failed (lost)"  # and stays so
    entry = next(e for e in RunIndex(ws).entries() if e["run_id"] == run.name)
    assert entry["status"] == "failed"


def test_run_status_live_run_stays_running(ws):
    run = make_run(ws, "20240101-000000-0001", status="running", finished=None)
    write_running(run, os.getpid())
    status = jobs.run_status(run)
    assert status["status"] == "running" and status["label"] == "running"
    assert status["lost"] is False
    assert read_progress(run)["status"] == "running"


def test_run_status_stale_heartbeat_counts_as_lost(ws):
    """A live pid with a heartbeat older than HEARTBEAT_STALE_S is a reused pid."""
    run = make_run(ws, "20240101-000000-0001", status="running", finished=None)
    write_running(run, os.getpid(), heartbeat_age=jobs.HEARTBEAT_STALE_S + 10)
    assert jobs.run_status(run)["label"] == "failed (lost)"
    assert jobs.watchdog(run)["label"] == "failed (lost)"
    assert read_progress(run)["status"] == "failed"


def files_of(ws) -> dict:
    """Every file under the workspace: path → (modification time, content)."""
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(ws.rglob("*"))
            if p.is_file()}


def sigterm_ignoring_process() -> subprocess.Popen:
    """A process in its own session (a detached trainer) that ignores SIGTERM, as a trainer
    stuck in a long step does; ready once it prints."""
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout.readline() == b"ready\n"
    return proc


def write_overdue_stop(run) -> None:
    write_json(run / RunFiles.stop_request, {"time": time.time() - 10, "grace_s": 1.0})


def test_run_status_writes_nothing_and_sends_no_signal(ws, monkeypatch):
    """For a lost run, a run stopped while starting and a stop past its grace period (the
    cases a watchdog acts on), run_status leaves every file as it was and kills nothing."""
    lost = make_run(ws, "20240101-000000-0001", status="running", finished=None)
    write_running(lost, finished_pid())
    early = make_run(ws, "20240101-000000-0002", status="running", finished=None)
    write_running(early, finished_pid())
    write_json(early / RunFiles.stop_request, {"time": time.time(), "grace_s": 30.0})
    overdue = make_run(ws, "20240101-000000-0003", status="running", finished=None)
    proc = sigterm_ignoring_process()
    try:
        write_running(overdue, proc.pid)  # its pgid too: it leads its own process group
        write_overdue_stop(overdue)
        for run in (lost, early, overdue):
            RunIndex(ws).update(run)
        before = files_of(ws)
        time.sleep(0.01)  # a write now would show in the modification times
        sent = []
        monkeypatch.setattr(os, "kill", lambda *a: sent.append(a))
        monkeypatch.setattr(os, "killpg", lambda *a: sent.append(a))
        seen = {run.name[-1]: jobs.run_status(run)["label"] for run in (lost, early, overdue)}
        monkeypatch.undo()
        assert seen == {"1": "failed (lost)", "2": "stopped", "3": "running"}
        assert files_of(ws) == before
        assert [a for a in sent if a[1] != 0] == []  # kill(pid, 0) only asks whether it lives
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_watchdog_kills_a_run_past_its_stop_grace_period_and_records_it(ws):
    run = make_run(ws, "20240101-000000-0001", status="running", finished=None)
    proc = sigterm_ignoring_process()
    try:
        write_running(run, proc.pid)
        write_json(run / RunFiles.stop_request, {"time": time.time(), "grace_s": 30.0})
        assert jobs.watchdog(run)["status"] == "running"  # within the grace period: left alone
        assert proc.poll() is None
        write_overdue_stop(run)
        status = jobs.watchdog(run)
        assert status["status"] == "stopped" and "no clean stop within 1 s" in status["error"]
        assert proc.wait(timeout=10) == -9  # SIGKILL
        stored = read_progress(run)
        assert stored["status"] == "stopped" and stored["active"] is None
        assert [s["status"] for s in stored["stages"]] == ["done", "stopped", "idle", "idle"]
        assert RunIndex(ws).entries()[0]["status"] == "stopped"
    finally:
        proc.kill()
        proc.wait()


def test_run_status_finished_run_is_left_alone(ws):
    run = make_run(ws, "20240101-000000-0001", status="done")
    before = read_progress(run)
    status = jobs.run_status(run)
    assert status["label"] == "done" and status["lost"] is False
    assert read_progress(run) == before


def test_run_status_without_progress_is_a_job_error(ws):
    run = runs_dir(ws) / "20240101-000000-0001"
    run.mkdir()
    with pytest.raises(JobError, match="no progress.json"):
        jobs.run_status(run)
