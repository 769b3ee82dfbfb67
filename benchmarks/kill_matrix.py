"""Randomized SIGKILLs against real pipeline runs, then a check that nothing was lost.

Each round starts a tiny run in the background (time series, images from a zip, or both; or
resumes the last killed run), waits a random moment, and SIGKILLs it: the whole process group,
or only the trainer (its DataLoader workers live on a moment). Afterwards:

- the job lock is free at once and `run_status` says `failed (lost)` for the killed run;
- every JSON, JSONL, NPZ and PT file in the workspace loads (checkpoints through the project's
  own `load_checkpoint`), every JSONL line included;
- the runs index matches the run folders, entry by entry;
- a new run starts and finishes `done`.

    .venv/bin/python benchmarks/kill_matrix.py [--kills 50] [--seed S] [--max-wait 25]

Ends with `kills=… problems=… seconds=…`. tests/safety/test_kill.py runs the same with a few
kills."""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models; the children inherit it

import numpy as np  # noqa: E402

from core import jobs  # noqa: E402
from core.errors import JobError  # noqa: E402
from core.config import load_config  # noqa: E402
from core.fileio import read_json  # noqa: E402
from core.runs import create_run, runs_dir, summarize_run, workspace  # noqa: E402

SAMPLES = REPO / "data" / "samples"
TINY_TS = {"patchtst.preset": "tiny"}
TINY_IMG = {"swinmae.preset": "tiny", "swinmae.data.num_workers": 2, "swinmae.train.epochs": 3}


def image_zip(folder: Path) -> Path:
    """The bundled image sample as a zip (so runs also extract an archive)."""
    path = folder / "images.zip"
    with zipfile.ZipFile(path, "w") as z:
        for f in sorted((SAMPLES / "images").rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(SAMPLES / "images").as_posix())
    return path


def new_run(ws: Path, kind: str, images: Path) -> Path:
    overrides = {}
    if kind in ("ts", "both"):
        overrides |= TINY_TS | {"pipeline.ts_data": str(SAMPLES / "timeseries")}
    if kind in ("img", "both"):
        overrides |= TINY_IMG | {"pipeline.img_data": str(images)}
    return create_run(ws, load_config(overrides))


def _wait(predicate, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


DYING_S: list[float] = []  # per kill: seconds from SIGKILL until the trainer was gone


def _reap(pid: int, timeout: float) -> float:
    """Seconds until our child `pid` has exited (reaped here); `timeout` if it has not."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        except ChildProcessError:
            break  # reaped already
        time.sleep(0.01)
    return time.time() - t0


def kill_round(ws: Path, rng: random.Random, images: Path, last: Path | None,
               max_wait: float) -> tuple[Path, list[str]]:
    """Start (or resume) a run, SIGKILL it at a random moment; returns it and any problems with
    the state right after the kill."""
    resume = last is not None and rng.random() < 0.3 and \
        (read_json(last / "progress.json") or {}).get("status") != "done"
    run = last if resume else new_run(ws, rng.choice(["ts", "img", "both"]), images)
    what = f"{run.name} ({'resume' if resume else 'new'})"
    try:
        pid = jobs.start(run, resume=resume)
    except JobError as e:  # the last round's state was not honest: note it, let it clear
        starting = read_json(ws / jobs.STARTING_FILE) or {}
        holder = Path(f"/proc/{starting.get('pid')}/cmdline")
        why = (f"lock held by {jobs.active_run_id(ws)}; starting.json {starting}; that pid runs "
               f"{holder.read_bytes()[:80] if holder.exists() else 'nothing'}")
        _wait(lambda: jobs.running_run_id(ws) is None, 120)
        return run, [f"{what}: refused to start: {e} ({why})"]
    time.sleep(rng.uniform(0.2, max_wait))
    whole_group = rng.random() < 0.7
    try:
        os.killpg(pid, signal.SIGKILL) if whole_group else os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it had finished already
    what += f", killed {'its group' if whole_group else 'the trainer only'}"
    problems = []
    dying = _reap(pid, 60.0)  # a process in uninterruptible I/O (fsync) dies when that ends
    DYING_S.append(dying)
    if not _wait(lambda: jobs.active_run_id(ws) is None, 2.0):
        problems.append(f"{what}: the job lock was still held 2 s after the trainer died")
    status = jobs.run_status(run)
    if status["status"] in jobs.LIVE_STATES or status["status"] not in ("done", "failed") or \
            status["status"] == "failed" and not status["lost"]:
        problems.append(f"{what}: status {status['label']!r} after the kill "
                        f"({status.get('error')})")
    if not whole_group:
        try:
            os.killpg(pid, signal.SIGKILL)  # the orphaned workers, before the next round
        except ProcessLookupError:
            pass
    return run, problems


def check_files(ws: Path) -> list[str]:
    """Every JSON, JSONL, NPZ and PT file under `ws` that does not load, with the reason."""
    from core.training import load_checkpoint
    problems = []
    for path in sorted(ws.rglob("*")):
        if not path.is_file() or path.name.endswith(".tmp"):
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".jsonl":
                for line in path.read_text(encoding="utf-8").splitlines():
                    json.loads(line)
            elif path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    [z[k] for k in z.files]
            elif path.suffix == ".pt":
                load_checkpoint(path)
        except Exception as e:
            problems.append(f"{path.relative_to(ws)}: {type(e).__name__}: {e}")
    return problems


def check_index(ws: Path) -> list[str]:
    """The index against the folders: the same runs, each entry what its folder says."""
    stored = read_json(runs_dir(ws) / "index.json")
    if not isinstance(stored, list):
        return ["runs/index.json: missing or not a list"]
    folders = {p.name for p in runs_dir(ws).iterdir() if (p / "run.yaml").exists()}
    problems = [f"index lacks run {r}" for r in sorted(folders - {e["run_id"] for e in stored})]
    problems += [f"index lists run {e['run_id']} with no folder" for e in stored
                 if e["run_id"] not in folders]
    for entry in stored:
        if entry["run_id"] in folders:
            truth = summarize_run(runs_dir(ws) / entry["run_id"])
            if entry["status"] != truth["status"]:
                problems.append(f"index says {entry['run_id']} is {entry['status']}, its folder "
                                f"says {truth['status']}")
    return problems


def check_new_run(ws: Path, timeout: float = 300) -> list[str]:
    run = create_run(ws, load_config(TINY_TS | {"pipeline.ts_data": str(SAMPLES / "timeseries")}))
    try:
        jobs.start(run)
    except Exception as e:
        return [f"a new run did not start: {e}"]
    if not _wait(lambda: jobs.run_status(run)["status"] not in jobs.LIVE_STATES, timeout):
        return [f"the new run {run.name} did not finish within {timeout:.0f} s"]
    status = jobs.run_status(run)
    return [] if status["status"] == "done" else [f"the new run ended {status['label']}: "
                                                  f"{status.get('error')}"]


def kill_matrix(ws: Path, kills: int, seed: int, max_wait: float) -> list[str]:
    """`kills` rounds in workspace `ws`, then every check; the problems found."""
    rng = random.Random(seed)
    images = image_zip(ws.parent)
    problems, last = [], None
    for _ in range(kills):
        last, found = kill_round(ws, rng, images, last, max_wait)
        problems += found
    for run in runs_dir(ws).iterdir():  # record the final state (lost runs marked), as a
        if (run / "progress.json").exists():  # watching page or the CLI's status would
            jobs.watchdog(run)
    return problems + check_files(ws) + check_index(ws) + check_new_run(ws)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-wait", type=float, default=25.0,
                    help="longest wait before a kill, in seconds (tiny runs take ~10-60 s)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    root = Path(tempfile.mkdtemp(prefix="kill-matrix-"))
    t0 = time.time()
    try:
        problems = kill_matrix(workspace(root / "ws"), args.kills, seed, args.max_wait)
        n_runs = len([p for p in runs_dir(root / "ws").iterdir() if p.is_dir()])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for p in problems:
        print("PROBLEM", p)
    print(f"seed {seed}: {args.kills} kills over {n_runs} run folders, {len(problems)} problems; "
          f"SIGKILL to exit: median {np.median(DYING_S):.2f} s, max {max(DYING_S):.2f} s")
    print(f"kills={args.kills} problems={len(problems)} seconds={time.time() - t0:.0f}")


if __name__ == "__main__":
    main()
