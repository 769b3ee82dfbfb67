"""The progress protocol: what a running pipeline tells the world, through files only.

- `progress.json` (atomic rewrite): run status, pid/pgid, heartbeat time, one entry per stage
  with its state and times, the active stage with epoch/step counts and ETA.
- `metrics.jsonl` (append-only): one JSON object per logged training step and per epoch.

Stage states: idle, running, done, failed, stopped, skipped. Run states: planned (dry run),
starting (spawned, not yet running), running, done, failed, stopped. A reader that finds
`running` while the process is gone reports `failed (lost)` (see `core.jobs.run_status`)."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from core.fileio import append_jsonl, read_json, read_jsonl, write_atomic, write_json
from core.run_files import RunFiles

STAGE_STATES = ("idle", "running", "done", "failed", "stopped", "skipped")
FINAL_STATES = ("done", "failed", "stopped")
HEARTBEAT_S = 2.0
RESERVE_FILE = ".progress.reserve"  # space kept so the final status can be written on a full disk
RESERVE_BYTES = 256 * 1024


def process_start(pid: int | None) -> str | None:
    """When process `pid` started (/proc/<pid>/stat field 22, clock ticks since boot), which
    tells it from a later process given the same pid; None when unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def initial_progress(run_id: str, stages: list[str], status: str, pid: int | None = None) -> dict:
    """A progress record with every stage idle (also what `core.jobs.start` writes at spawn)."""
    now = time.time()
    return {"run_id": run_id, "status": status, "pid": pid, "pgid": pid,
            "pid_start": process_start(pid) if pid else None, "started": now,
            "heartbeat": now, "finished": None, "error": None, "device": None, "active": None,
            "stages": [{"name": s, "status": "idle", "started": None, "ended": None,
                        "message": None} for s in stages]}


class ProgressWriter:
    """Owned by the pipeline process: every change rewrites progress.json atomically, and a
    daemon thread refreshes the heartbeat so readers can tell a live run from a lost one."""

    def __init__(self, run_dir: Path, run_id: str, stages: list[str]):
        self.path = RunFiles(run_dir).progress
        self._lock = threading.Lock()
        self.state = initial_progress(run_id, stages, "running", os.getpid())
        self.state["pgid"] = os.getpgrp()
        self._beat = threading.Event()
        self._write()
        self._reserve = self.path.with_name(RESERVE_FILE)
        try:
            with open(self._reserve, "wb") as f:  # real blocks (not a sparse file)
                f.write(b"\0" * RESERVE_BYTES)
                f.flush()
                os.fsync(f.fileno())
        except OSError:  # already (nearly) full: run without a reserve
            self._reserve.unlink(missing_ok=True)

    def _write(self) -> None:
        self.state["heartbeat"] = time.time()
        write_json(self.path, self.state)

    def _stage(self, name: str) -> dict:
        return next(s for s in self.state["stages"] if s["name"] == name)

    def set(self, **fields) -> None:
        """Top-level fields, e.g. device='cuda:0 (NVIDIA H200)'."""
        with self._lock:
            self.state.update(fields)
            self._write()

    def stage_started(self, name: str) -> None:
        with self._lock:
            stage = self._stage(name)
            stage.update(status="running", started=time.time())
            index = self.state["stages"].index(stage) + 1
            self.state["active"] = {"stage": name, "index": index, "n": len(self.state["stages"])}
            self._write()

    def stage_ended(self, name: str, status: str, message: str | None = None) -> None:
        assert status in STAGE_STATES, status
        with self._lock:
            stage = self._stage(name)
            stage.update(status=status, ended=time.time(), message=message)
            if status == "skipped":
                stage["started"] = stage["started"] or stage["ended"]
            self.state["active"] = None
            self._write()

    def update_active(self, **fields) -> None:
        """Epoch/step counts, ETA and throughput of the active stage."""
        with self._lock:
            if self.state["active"] is not None:
                self.state["active"].update(fields)
                self._write()

    def finish(self, status: str, error: str | None = None) -> None:
        assert status in FINAL_STATES, status
        with self._lock:
            self.state.update(status=status, error=error, finished=time.time(), active=None)
            try:
                self._write()
            except OSError:  # the disk is full: free the space kept for this write, try again
                self._reserve.unlink(missing_ok=True)
                self._write()
        self._beat.set()
        self._reserve.unlink(missing_ok=True)

    def start_heartbeat(self, interval: float = HEARTBEAT_S) -> None:
        def beat():
            while not self._beat.wait(interval):
                with self._lock:
                    try:
                        self._write()
                    except OSError:
                        pass  # a full disk: the run's own error says so; keep beating
        threading.Thread(target=beat, name="heartbeat", daemon=True).start()


class MetricsLog:
    """Appends one JSON object per logged step or epoch to metrics.jsonl."""

    def __init__(self, run_dir: Path):
        self.path = RunFiles(run_dir).metrics_log

    def log(self, **fields) -> None:
        append_jsonl(self.path, {"time": round(time.time(), 3), **fields})

    def rewind(self, stage: str, step: int, epoch: int) -> None:
        """Drop `stage`'s step lines after `step` and epoch lines after `epoch`, and a partial
        last line (a kill mid-write), so appends go on cleanly; rewritten atomically, and only
        when something goes."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        lines = read_jsonl(self.path)

        def later(line: dict) -> bool:
            if line.get("stage") != stage:
                return False
            if line.get("kind") == "epoch":
                return (line.get("epoch") or 0) > epoch
            return (line.get("step") or 0) > step

        kept = [line for line in lines if not later(line)]
        if len(kept) < len(lines) or text and not text.endswith("\n"):
            write_atomic(self.path, "".join(json.dumps(line) + "\n" for line in kept))


def read_progress(run_dir: Path) -> dict | None:
    return read_json(RunFiles(run_dir).progress)


def read_metrics(run_dir: Path) -> list[dict]:
    return read_jsonl(RunFiles(run_dir).metrics_log)
