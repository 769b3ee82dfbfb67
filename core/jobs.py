"""Job control: start a run as a detached process group, stop it, tell its live status.

One training job runs at a time per workspace: the pipeline process holds an exclusive `flock`
on `<workspace>/job.lock` for its whole life. The kernel drops the lock when the process dies,
however it dies, so a killed trainer never leaves a stale lock behind.

Stop sends SIGTERM to the run's process group; the trainer finishes its step, saves a checkpoint
and marks the run `stopped`. A run whose process is gone while progress.json says running is
shown `failed (lost)` by `run_status`, which only reads. Acting on that is `watchdog`'s job,
called deliberately by whoever watches a run (a waiting `stop`, the Train page's poll, the
CLI): it sends SIGKILL to a run still alive after the stop's grace period and records the end
state of a run whose process is gone."""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from core.errors import JobError
from core.fileio import read_json, write_json
from core.progress import initial_progress, process_start, read_progress
from core import runs
from core.run_files import RunFiles
from core.runs import PROJECT_ROOT, RunIndex, runs_dir, workspace_of
from core.runner import is_scoring_run
from core.streams import stage_names

LOCK_FILE = "job.lock"
START_LOCK_FILE = ".start.lock"
STARTING_FILE = "starting.json"  # the child just spawned, before it holds the job lock
GRACE_S = 30.0
HEARTBEAT_STALE_S = 120.0  # a heartbeat this old means the writer is gone (pid reuse guard)
SPAWN_GRACE_S = 10.0
LIVE_STATES = ("starting", "running")


_HELD: list = []  # the job lock files this process holds (closed in forked children)


def _close_held_in_child() -> None:
    """In a forked child (a DataLoader worker): close the inherited lock file without unlocking,
    so the lock goes with the parent and a killed trainer frees the workspace at once, not when
    its last worker exits."""
    for f in _HELD:
        f.close()
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class JobLock:
    """Held by the pipeline process while it runs; released by the kernel when it exits (its
    forked children do not keep it: see `_close_held_in_child`)."""

    def __init__(self, ws: Path, run_id: str):
        self.path = Path(ws) / LOCK_FILE
        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            other = active_run_id(ws) or "another run"
            raise JobError(f"a training job is already running in {ws} ({other}); "
                           "stop it or wait for it to finish") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(run_id)
        self._file.flush()
        _HELD.append(self._file)

    def release(self) -> None:
        _HELD.remove(self._file)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


@contextlib.contextmanager
def _start_lock(ws: Path):
    """Serialises every start in a workspace (console, detached and foreground CLI): the check
    that no job runs and the claim of the workspace happen as one step."""
    with open(Path(ws) / START_LOCK_FILE, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _refuse_if_busy(ws: Path, run_id: str | None = None) -> None:
    """JobError when a job other than `run_id` runs or is being spawned in `ws`."""
    other = running_run_id(ws)
    if other and other != run_id:
        raise JobError(f"a training job is already running in {ws} ({other}); "
                       "stop it or wait for it to finish")


def acquire(run_dir: Path) -> JobLock:
    """The job lock for a pipeline process about to run `run_dir`, taken through the same start
    protocol as `start`: refused while another run holds the lock or was spawned a moment ago
    (its `starting.json`); the child that `start` spawned for this very run is let in."""
    ws = workspace_of(run_dir)
    with _start_lock(ws):
        _refuse_if_busy(ws, Path(run_dir).name)
        return JobLock(ws, Path(run_dir).name)


def check_resumable(run_dir: Path) -> None:
    """JobError when `run_dir` has nothing to resume: it finished (done)."""
    progress = read_progress(run_dir)
    if progress and progress.get("status") == "done":
        raise JobError(f"run {Path(run_dir).name} is done; nothing to resume "
                       "(start a new run to train again)")


def active_run_id(ws: Path) -> str | None:
    """The run id holding the workspace's job lock, or None when no job runs."""
    path = Path(ws) / LOCK_FILE
    if not path.exists():
        return None
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read().strip() or "unknown"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def running_run_id(ws: Path) -> str | None:
    """The run that holds the job lock, or one spawned so recently that it does not hold it
    yet (its child is still importing torch); None when the workspace is free."""
    active = active_run_id(ws)
    if active:
        return active
    starting = read_json(Path(ws) / STARTING_FILE)
    if starting and _pid_alive(starting["pid"], starting.get("pid_start")) \
            and time.time() - starting["time"] < 120:
        return starting["run_id"]
    return None


def start_new(ws: Path, make_run: Callable[[], Path]) -> Path:
    """Create a run with `make_run` (which checks its config and data first) and start its job;
    returns its folder. JobError when a job is already running; a failed start leaves no run
    behind."""
    running = running_run_id(ws)
    if running:
        raise JobError(f"a job is already running ({running}); stop it or wait")
    run_dir = make_run()
    try:
        start(run_dir)
    except BaseException:
        runs.delete_run(ws, run_dir.name)
        raise
    return run_dir


def start(run_dir: Path, resume: bool = False) -> int:
    """Spawn `python -m core.pipeline run RUN_DIR` in its own session; returns its pid.

    The run folder must hold run.yaml. progress.json is written at once (status `starting`) so
    every reader sees the run before the child has imported torch. Two starts at the same
    moment (two tabs) are serialised by a start lock; the second is refused."""
    run_dir, ws, files = Path(run_dir), workspace_of(run_dir), RunFiles(run_dir)
    if not files.config.exists():
        raise JobError(f"{run_dir}: no run.yaml; prepare the run folder first")
    if resume:
        check_resumable(run_dir)
    with _start_lock(ws):
        _refuse_if_busy(ws)
        files.stop_request.unlink(missing_ok=True)
        progress = initial_progress(run_dir.name, stage_names(is_scoring_run(run_dir)),
                                    "starting")
        write_json(files.progress, progress)  # before the child can write its own
        try:
            proc = _spawn(run_dir, resume)
        except OSError as e:
            write_json(files.progress, progress | {
                "status": "failed", "finished": time.time(),
                "error": f"the pipeline process could not be started: {e}"})
            raise JobError(f"run {run_dir.name}: the pipeline process could not be started "
                           f"({e})") from None
        born = process_start(proc.pid)
        write_json(ws / STARTING_FILE, {"run_id": run_dir.name, "pid": proc.pid,
                                        "pid_start": born, "time": time.time()})
    if read_progress(run_dir)["pid"] is None:  # the child (seconds to import) has not written
        write_json(files.progress, progress | {"pid": proc.pid, "pgid": proc.pid,
                                               "pid_start": born})
    RunIndex(ws).update(run_dir)
    return proc.pid


def _spawn(run_dir: Path, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "core.pipeline", "resume" if resume else "run", str(run_dir)]
    with open(RunFiles(run_dir).stdout, "ab") as out:
        return subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _pid_alive(pid: int | None, started: str | None = None) -> bool:
    """True while `pid` runs; reaps it first if it is our exited child (no zombie counts). With
    `started` (`process_start` when it was recorded), a later process given the same pid does
    not count."""
    if not pid:
        return False
    if started is not None and process_start(pid) not in (None, started):
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of another parent still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _signal(progress: dict, sig: int) -> None:
    pid, pgid = progress.get("pid"), progress.get("pgid")
    try:
        if pgid and pgid == pid:  # started detached: the whole group (DataLoader workers too)
            os.killpg(pgid, sig)
        elif pid:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _ended(progress: dict, status: str, error: str) -> dict:
    """A copy of a live `progress` ended as `status` on behalf of a pipeline process that can no
    longer end it itself: its running stage stopped (or failed), no active stage."""
    now = time.time()
    stages = [stage | {"status": "failed" if status == "failed" else "stopped", "ended": now}
              if stage["status"] == "running" else stage for stage in progress["stages"]]
    return progress | {"stages": stages, "status": status, "error": error, "finished": now,
                       "active": None}


def _persist(run_dir: Path, progress: dict) -> dict:
    """Write an ended `progress` (progress.json, then the index); on a full disk say so in
    `unsaved` and carry on: the next watchdog call tries again."""
    try:
        write_json(RunFiles(run_dir).progress, progress)
        RunIndex(workspace_of(run_dir)).update(run_dir)
    except OSError as e:
        progress = progress | {"unsaved": f"could not be saved ({e.strerror or e})"}
    return progress


def _writer_alive(progress: dict) -> bool:
    """Is the process behind a live progress.json still there? (A pid not yet recorded counts
    as alive for a few seconds: `start` writes it right after spawning.)"""
    if progress.get("pid") is None:
        return time.time() - progress["started"] < SPAWN_GRACE_S
    return _pid_alive(progress["pid"], progress.get("pid_start")) and \
        time.time() - progress.get("heartbeat", 0) < HEARTBEAT_STALE_S


def _last_logged_error(run_dir: Path, tail_bytes: int = 16384) -> str | None:
    """The last ERROR line of the run's log (or of stdout.log, where the pipeline's stderr
    goes), without its time stamp; None when there is none or no log can be read."""
    files = RunFiles(run_dir)
    for path in (files.log, files.stdout):
        try:
            with open(path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            continue
        errors = [line.split(" ERROR ", 1)[1].strip() for line in lines if " ERROR " in line]
        if errors:
            return errors[-1][:500]
    return None


def _seen(run_dir: Path) -> tuple[dict, str | None]:
    """progress.json as a reader should see it, and what a watchdog has to do about it: None,
    "kill" (a stop past its grace period while the process still runs) or "record" (the
    process is gone, and the end state returned is not in progress.json yet)."""
    progress = read_progress(run_dir)
    if progress is None:
        raise JobError(f"{run_dir}: no progress.json; is this a run folder?")
    if progress["status"] not in LIVE_STATES:
        return progress, None
    stop = read_json(RunFiles(run_dir).stop_request)
    if _writer_alive(progress):
        overdue = stop and time.time() - stop["time"] > stop["grace_s"]
        return progress, "kill" if overdue else None
    latest = read_progress(run_dir)  # it may have ended itself since the first read
    if latest["status"] not in LIVE_STATES:
        return latest, None
    if stop:  # stopped before the pipeline installed its SIGTERM handler (while importing)
        return _ended(progress, "stopped", "stopped before training began"), "record"
    last = _last_logged_error(run_dir)
    return _ended(progress, "failed",
                  f"lost: the pipeline process (pid {progress.get('pid')}) ended without "
                  "finishing the run" + (f"; its last logged error: {last}" if last else
                                         "; see pipeline.log and stdout.log")), "record"


def _labelled(progress: dict) -> dict:
    lost = (progress.get("error") or "").startswith("lost:")
    return progress | {"lost": lost, "label": "failed (lost)" if lost else progress["status"]}


def run_status(run_dir: Path) -> dict:
    """progress.json as a reader should see it, with `lost` and `label` for display. A live
    status whose process is gone reads `failed` with `lost: true` (label `failed (lost)`), or
    `stopped` when a stop was asked for. Only reads: no file is written and no signal sent
    (`watchdog` records what this shows, and finishes an overdue stop)."""
    return _labelled(_seen(Path(run_dir))[0])


def watchdog(run_dir: Path) -> dict:
    """Finish what a run's process left undone, then return its `run_status`: a stop whose
    grace period has passed gets SIGKILL and the run is recorded `stopped`; a run whose process
    is gone gets the end state `run_status` shows written to progress.json and the index.
    Called deliberately by whoever watches a run: `stop`, the Train page's poll, the CLI's
    `status` and `index`."""
    run_dir = Path(run_dir)
    progress, todo = _seen(run_dir)
    if todo == "kill":
        stop = read_json(RunFiles(run_dir).stop_request)
        _signal(progress, signal.SIGKILL)
        progress = _ended(progress, "stopped",
                          f"killed: no clean stop within {stop['grace_s']:.0f} s")
    if todo is not None:
        progress = _persist(run_dir, progress)
    return _labelled(progress)


def watch_workspace(ws: Path) -> None:
    """`watchdog` for every run the workspace's index lists as live (`starting`, `running`)."""
    for entry in RunIndex(ws).entries():
        run_dir = runs_dir(ws) / entry["run_id"]
        if entry.get("status") in LIVE_STATES and RunFiles(run_dir).progress.exists():
            watchdog(run_dir)


def stop(run_dir: Path, grace_s: float = GRACE_S, wait: bool = True) -> dict:
    """Ask a run to stop (SIGTERM). With `wait`, block until it ends, escalating to SIGKILL
    after `grace_s`; without, return at once (later `watchdog` calls escalate)."""
    run_dir = Path(run_dir)
    progress = watchdog(run_dir)
    if progress["status"] not in LIVE_STATES:
        return progress
    write_json(RunFiles(run_dir).stop_request, {"time": time.time(), "grace_s": grace_s})
    _signal(progress, signal.SIGTERM)
    while wait:
        progress = watchdog(run_dir)
        if progress["status"] not in LIVE_STATES:
            break
        time.sleep(0.2)
    return progress


def delete_run(ws: Path, run_id: str) -> None:
    """Delete a run that is not running (JobError otherwise)."""
    run_dir = Path(ws) / "runs" / run_id
    if active_run_id(ws) == run_id or \
            RunFiles(run_dir).progress.exists() and run_status(run_dir)["status"] in LIVE_STATES:
        raise JobError(f"run {run_id} is running; stop it before deleting it")
    runs.delete_run(ws, run_id)
