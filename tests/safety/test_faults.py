"""Races and faults (issue 13, items 1, 2, 5, 6): every start path goes through one protocol, a
full disk never makes a reader raise and keeps its cause, stale states are put right, and a run's
temporary files stay in its folder."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY, run_cli
from core import jobs, pipeline, progress as progress_mod, runs as runs_mod, uploads
from core.config import load_config
from core.errors import DataError, JobError
from core.fileio import read_jsonl, write_json
from core.progress import (RESERVE_FILE, MetricsLog, ProgressWriter, initial_progress,
                           read_progress)
from core.run_files import RunFiles
from core.runs import RunIndex, create_run, runs_dir, workspace
from core.timeseries import uploads as ts_uploads

STAGES = ["prepare_data", "train_patchtst", "score_patchtst", "publish"]


@pytest.fixture
def ws(tmp_path):
    return workspace(tmp_path / "ws")


def new_run(ws: Path, data: str = "d") -> Path:
    return create_run(ws, load_config({"pipeline.ts_data": data, "patchtst.preset": "tiny"}))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_running(run_dir: Path, pid: int) -> None:
    progress = initial_progress(run_dir.name, STAGES, "running", pid)
    progress["stages"][1].update(status="running", started=time.time())
    write_json(run_dir / RunFiles.progress, progress)


def no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# ---------------------------------------------------------------- 1. one start protocol

def test_a_foreground_run_is_refused_while_the_console_spawns_another(ws):
    """The console's start wrote starting.json for run A (its child still importing); a
    foreground CLI run B must not take the workspace from under it."""
    a, b = new_run(ws), new_run(ws)
    write_json(ws / jobs.STARTING_FILE, {"run_id": a.name, "pid": os.getpid(),
                                         "time": time.time()})
    with pytest.raises(JobError, match=a.name):
        jobs.acquire(b)
    assert jobs.active_run_id(ws) is None  # B took nothing
    lock = jobs.acquire(a)  # the child spawned for A itself is let in
    try:
        assert jobs.active_run_id(ws) == a.name
        with pytest.raises(JobError, match="already running"):
            jobs.start(b)
    finally:
        lock.release()


def test_the_cli_foreground_run_uses_the_start_protocol(ws, tiny_dataset):
    other = new_run(ws)
    write_json(ws / jobs.STARTING_FILE, {"run_id": other.name, "pid": os.getpid(),
                                         "time": time.time()})
    res = run_cli("run", "--ts-data", str(tiny_dataset), "--workdir", str(ws), *TINY)
    assert res.returncode == 2 and "already running" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    # 5. the refused run left no folder holding only run.yaml
    assert sorted(p.name for p in runs_dir(ws).iterdir() if p.is_dir()) == [other.name]


def test_a_spawned_run_that_is_refused_says_so_instead_of_lost(ws):
    """A child whose start is refused marks its own `starting` progress failed with the reason
    (before, it was left `starting` and became `failed (lost)`)."""
    holder, run = new_run(ws), new_run(ws)
    write_json(run / RunFiles.progress, initial_progress(run.name, STAGES, "starting"))
    lock = jobs.JobLock(ws, holder.name)
    try:
        with pytest.raises(JobError):
            pipeline.execute(run)
    finally:
        lock.release()
    stored = read_progress(run)
    assert stored["status"] == "failed" and stored["error"].startswith("refused:")
    assert holder.name in stored["error"]
    assert jobs.run_status(run)["label"] == "failed"  # not lost


def test_a_reused_pid_does_not_keep_a_dead_start_or_run_alive(ws):
    """pids wrap (32768 here): a later process given a recorded pid is not the run's."""
    run = new_run(ws)
    me, born = os.getpid(), progress_mod.process_start(os.getpid())
    write_json(ws / jobs.STARTING_FILE, {"run_id": run.name, "pid": me, "pid_start": born,
                                         "time": time.time()})
    assert jobs.running_run_id(ws) == run.name
    write_json(ws / jobs.STARTING_FILE, {"run_id": run.name, "pid": me, "pid_start": "1",
                                         "time": time.time()})
    assert jobs.running_run_id(ws) is None
    write_running(run, me)
    assert jobs.run_status(run)["status"] == "running"  # pid_start recorded: it is us
    progress = read_progress(run) | {"pid_start": "1"}
    write_json(run / RunFiles.progress, progress)
    assert jobs.run_status(run)["label"] == "failed (lost)"


# ---------------------------------------------------------------- 2. a full disk

def test_status_of_a_lost_run_on_a_full_disk_answers_without_raising(ws, monkeypatch):
    run = new_run(ws)
    write_running(run, dead_pid())
    monkeypatch.setattr(jobs, "write_json", no_space)
    assert jobs.run_status(run)["label"] == "failed (lost)"
    status = jobs.watchdog(run)
    assert status["label"] == "failed (lost)" and "could not be saved" in status["unsaved"]
    assert read_progress(run)["status"] == "running"  # nothing could be written
    monkeypatch.undo()  # space freed: the next watchdog call persists it
    assert jobs.watchdog(run)["label"] == "failed (lost)"
    assert read_progress(run)["status"] == "failed"


def test_a_lost_run_keeps_the_last_logged_error(ws):
    run = new_run(ws)
    write_running(run, dead_pid())
    (run / "pipeline.log").write_text(
        "2026-01-01 00:00:00 INFO    [2/4] train_patchtst\n"
        "2026-01-01 00:00:01 ERROR   failed: no space left on the device holding /x\n")
    assert "no space left on the device holding /x" in jobs.run_status(run)["error"]
    jobs.watchdog(run)
    assert "no space left" in read_progress(run)["error"]  # kept for every later reader


def test_the_final_status_is_written_from_the_reserve_on_a_full_disk(tmp_path, monkeypatch):
    writer = ProgressWriter(tmp_path, "r", STAGES)
    reserve = tmp_path / RESERVE_FILE
    assert reserve.stat().st_size == progress_mod.RESERVE_BYTES
    real = progress_mod.write_json

    def full_until_reserve_freed(path, obj):  # the reserve's blocks are all the space left
        if reserve.exists():
            no_space()
        real(path, obj)

    monkeypatch.setattr(progress_mod, "write_json", full_until_reserve_freed)
    writer.finish("failed", "no space left")
    assert read_progress(tmp_path)["status"] == "failed" and not reserve.exists()


def test_a_run_that_fills_the_disk_ends_failed_with_the_cause(ws, monkeypatch):
    """In-process pipeline whose stage hits ENOSPC while progress writes fail too until the
    reserve is freed: progress.json ends `failed` naming the cause, the log has it first."""
    run = new_run(ws)
    full = {"on": False}
    real = progress_mod.write_json

    def write(path, obj):
        if full["on"] and (run / RESERVE_FILE).exists():
            no_space()
        real(path, obj)

    def fill_the_disk(ctx):
        full["on"] = True
        raise OSError(errno.ENOSPC, "No space left on device", str(run / "patchtst" / "x.pt"))

    monkeypatch.setattr(progress_mod, "write_json", write)
    monkeypatch.setattr(pipeline, "run_stages", fill_the_disk)
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # keep pytest's handlers
    monkeypatch.setattr(runs_mod, "write_json", write)  # the index is on the same disk
    assert pipeline.execute(run) == "failed"
    stored = read_progress(run)
    assert stored["status"] == "failed" and "no space left" in stored["error"]
    assert str(run / "patchtst" / "x.pt") in stored["error"]
    assert "no space left" in (run / "pipeline.log").read_text()
    assert jobs.active_run_id(ws) is None


def test_an_upload_onto_a_full_disk_is_a_data_error_and_leaves_nothing(ws, monkeypatch):
    monkeypatch.setattr(ts_uploads, "write_upload", no_space)  # how it writes each file
    with pytest.raises(DataError, match="(?i)no space left"):
        ts_uploads.save_timeseries_dataset(ws, "d", ("train.csv", b"a\n1\n"))
    root = uploads.uploads_dir(ws, "timeseries")
    assert list(root.iterdir()) == []  # no staging folder left behind


# ---------------------------------------------------------------- 5. stale state

def test_cli_index_shows_a_killed_run_lost_without_a_status_call(ws):
    run = new_run(ws)
    write_running(run, dead_pid())
    RunIndex(ws).update(run)
    res = run_cli("index", "--workdir", str(ws))
    assert res.returncode == 0, res.stderr
    assert "failed (lost)" in res.stdout and "running" not in res.stdout
    assert RunIndex(ws).entries()[0]["status"] == "failed"  # persisted too


def test_resume_of_a_done_run_is_refused_and_leaves_it_done(ws):
    run = new_run(ws)
    done = initial_progress(run.name, STAGES, "done") | {"finished": time.time()}
    write_json(run / RunFiles.progress, done)
    res = run_cli("resume", str(run))
    assert res.returncode == 2 and "is done; nothing to resume" in res.stderr, res.stderr
    assert read_progress(run) == done
    with pytest.raises(JobError, match="nothing to resume"):
        jobs.start(run, resume=True)
    assert read_progress(run) == done


def test_metrics_rewind_drops_steps_logged_after_the_checkpoint(tmp_path):
    log = MetricsLog(tmp_path)
    for step in range(1, 9):
        log.log(stage="train_patchtst", kind="step", epoch=1 + (step > 4), step=step)
        if step == 4:
            log.log(stage="train_patchtst", kind="epoch", epoch=1)
    log.log(stage="train_swinmae", kind="step", epoch=1, step=50)  # another stage: kept
    with open(log.path, "a") as f:
        f.write('{"stage": "train_patchtst", "ki')  # killed mid-line
    log.rewind("train_patchtst", step=4, epoch=1)
    lines = read_jsonl(log.path)
    ts = [(line["kind"], line.get("step")) for line in lines if line["stage"] == "train_patchtst"]
    assert ts == [("step", 1), ("step", 2), ("step", 3), ("step", 4), ("epoch", None)]
    assert any(line["stage"] == "train_swinmae" for line in lines)
    assert log.path.read_text().endswith("\n")  # the next append starts a fresh line


def test_a_rewind_on_rank_0_of_several_reaches_the_pipelines_metrics_log(tmp_path):
    """Under torchrun rank 0 sends events; the pipeline process owns metrics.jsonl."""
    import contextlib
    import io
    import json as json_mod
    from types import SimpleNamespace

    from core.distributed import _relay
    from core.rank import EventSink
    log = MetricsLog(tmp_path)
    for step in (1, 2, 3):
        log.log(stage="train_patchtst", kind="step", epoch=1, step=step)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        EventSink().rewind("train_patchtst", 1, 0)
    _relay(SimpleNamespace(metrics=log), out.getvalue().strip())
    assert [line["step"] for line in read_jsonl(log.path)] == [1]
    assert json_mod.loads(out.getvalue().split(" ", 1)[1])["to"] == "rewind"


LOCK_HOLDER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from core import jobs
    lock = jobs.JobLock(Path(sys.argv[1]), "r1")
    if os.fork() == 0:  # a DataLoader worker: lives on a while after its parent
        os.write(1, b"worker\\n")  # it runs: its after-fork handlers are done (one write:
        # the parent's line cannot land inside it)
        time.sleep(20)
        os._exit(0)
    os.write(1, b"locked\\n")
    time.sleep(60)
""")


def test_a_forked_worker_does_not_keep_the_job_lock_after_its_parent_dies(ws):
    proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(ws)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert {proc.stdout.readline().strip() for _ in range(2)} == {"locked", "worker"}
        assert jobs.active_run_id(ws) == "r1"
        proc.kill()  # the parent only; its forked child sleeps on
        proc.wait()
        assert jobs.active_run_id(ws) is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------- 6. where a run writes

def test_a_zip_of_images_is_extracted_inside_the_run_folder(ws, tmp_path):
    import zipfile

    from core.images.data import load_image_dataset
    samples = REPO / "data" / "samples" / "images"
    archive = tmp_path / "parts.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(samples.rglob("*.png")):
            z.write(path, path.relative_to(samples).as_posix())
    run = new_run(ws)
    with pipeline.run_scratch(run) as scratch:
        ds = load_image_dataset(archive)
        assert ds.root.is_relative_to(scratch) and scratch.parent == run
    assert not scratch.exists()


def test_a_run_folder_outside_a_runs_folder_is_refused(tmp_path):
    stray = tmp_path / "elsewhere" / "myrun"
    stray.mkdir(parents=True)
    save = load_config({"pipeline.ts_data": "d"})
    from core.config import save_config
    save_config(save, stray / "run.yaml")
    for args in (("run", str(stray)), ("resume", str(stray))):
        res = run_cli(*args)
        assert res.returncode == 2 and "runs/" in res.stderr, res.stderr
    assert not (tmp_path / jobs.LOCK_FILE).exists()
    assert not (tmp_path / "elsewhere" / jobs.LOCK_FILE).exists()


# ---------------------------------------------------------------- 12. one-line errors

def test_a_workdir_that_is_a_file_is_a_one_line_error(tmp_path, tiny_dataset):
    (tmp_path / "afile").write_text("x")
    for args in (("index",), ("run", "--ts-data", str(tiny_dataset), "--dry-run")):
        res = run_cli(*args, "--workdir", str(tmp_path / "afile"))
        assert res.returncode == 2, res.stderr
        assert "expected a folder" in res.stderr and "found a file" in res.stderr
        assert "Traceback" not in res.stderr


def test_cpu_out_of_memory_names_the_setting_to_lower():
    from core.devices import explain_oom
    from core.errors import TrainingError
    with pytest.raises(TrainingError, match=r"the CPU ran out of memory training PatchTST; "
                                            r"lower patchtst.train.batch_size \(now 64\)"):
        with explain_oom("training PatchTST", "lower patchtst.train.batch_size (now 64)"):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                               "can't allocate memory: you tried to allocate 9999999999 bytes.")
    with pytest.raises(RuntimeError, match="something else"):  # other errors pass through
        with explain_oom("training PatchTST", "lower it"):
            raise RuntimeError("something else")
