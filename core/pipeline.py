"""The pipeline's command line: `python -m core.pipeline COMMAND ...`.

  run      [RUN_DIR] [--ts-data PATH [--ts-test PATH]] [--img-data PATH] [--set key=value ...]
           [--dry-run] [--detach]
  score    RUN_DIR [--ts-data PATH] [--img-data PATH] [--name TEXT] [--detach]
                                  the finished run's models score new data, as a run of its own
  export   RUN_DIR [--out DIR]    the run's models as ONNX + model.json + predict.py per stream
  resume   RUN_DIR [--detach]     continue a stopped or failed run from its last checkpoint
  stop     RUN_DIR [--grace S]    SIGTERM, then SIGKILL after the grace period
  status   RUN_DIR [--json]
  index    [--rebuild]            print (or rebuild) the runs index

`run` with data options creates a new run folder under `<workspace>/runs/`; `run RUN_DIR` runs a
folder that already holds run.yaml (what `core.jobs.start` spawns). Exit status: 0 done,
1 failed, 2 bad usage or input, 3 stopped."""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from core import jobs, provenance
from core.config import read_config
from core.errors import AtcError, JobError, StopRequested
from core.progress import MetricsLog, ProgressWriter, initial_progress, read_progress
from core.fileio import write_json
from core.run_files import RunFiles
from core.runs import RunIndex, delete_run, new_run, workspace, workspace_of
from core.runner import Context, is_scoring_run, preflight, run_runtime, run_stages, \
    streams_with_data
from core.streams import STREAMS, plan, stage_names

SCRATCH = ".tmp"  # a run's temporary files (see run_scratch)
EXIT = {"done": 0, "failed": 1, "usage": 2, "stopped": 3}


def _logger(run_dir: Path) -> logging.Logger:
    log = logging.getLogger(f"atc.{run_dir.name}")
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")
    for handler in (logging.FileHandler(RunFiles(run_dir).log, encoding="utf-8"),
                    logging.StreamHandler(sys.stdout)):
        handler.setFormatter(fmt)
        log.addHandler(handler)
    return log


def execute(run_dir: Path, resume: bool = False) -> str:
    """Run every stage of a prepared run folder in this process; returns the final status."""
    run_dir = Path(run_dir).resolve()
    try:
        lock = jobs.acquire(run_dir)
    except JobError as e:
        _refused(run_dir, e)
        raise
    try:
        try:
            progress = ProgressWriter(run_dir, run_dir.name,
                                      stage_names(is_scoring_run(run_dir)))
        except OSError as e:
            raise AtcError(f"{run_dir}: cannot write progress.json ({e.strerror or e}); "
                           "the run did not start") from None
        log = _logger(run_dir)
        log.info("%s run %s", "resuming" if resume else "starting", run_dir.name)
        ctx = Context(run_dir, None, progress, MetricsLog(run_dir), log, resume=resume)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: (ctx.stop_event.set(),
                                           log.warning("stop requested: finishing the step")))
        progress.start_heartbeat()
        status, error = _run(ctx)
        progress.finish(status, error)
        try:
            RunIndex(workspace_of(run_dir)).update(run_dir)
        except OSError as e:  # progress.json holds the outcome; the index can be rebuilt
            log.error("runs index not updated (%s); `index --rebuild` restores it", e)
        log.info("run %s: %s", status, run_dir)
        return status
    finally:
        lock.release()


@contextlib.contextmanager
def run_scratch(run_dir: Path):
    """Temporary files made while the block runs (a zip of images extracted, in this process,
    its DataLoader workers and torchrun ranks) go to `RUN_DIR/.tmp/`, removed at the end: after a
    kill they stay in the run folder, visible and deleted with it, and the next start clears
    them; nothing is left in the system's temp folder."""
    scratch = Path(run_dir) / SCRATCH
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = str(scratch)
    try:
        yield scratch
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[1]
        shutil.rmtree(scratch, ignore_errors=True)


def _refused(run_dir: Path, error: JobError) -> None:
    """A run that `core.jobs.start` spawned for us (progress.json `starting`, our pid or none
    yet) and that cannot run: say so in its progress.json, so it is not shown lost."""
    progress = read_progress(run_dir)
    if progress and progress.get("status") == "starting" \
            and progress.get("pid") in (None, os.getpid()):
        write_json(RunFiles(run_dir).progress, progress | {
            "status": "failed", "error": f"refused: {error}", "finished": time.time()})
        RunIndex(workspace_of(run_dir)).update(run_dir)


def _run(ctx: Context) -> tuple[str, str | None]:
    """Config, device, stages; any failure becomes (status, error) for progress.json."""
    try:
        ctx.cfg = read_config(RunFiles(ctx.run_dir).config)
        runtime = run_runtime(ctx.cfg)
        ctx.progress.set(device=runtime.describe())
        provenance.record(ctx.run_dir, ctx.cfg, streams_with_data(ctx.cfg), runtime.describe(),
                          runtime.precision, ctx.resume)
        RunIndex(workspace_of(ctx.run_dir)).update(ctx.run_dir)
        with run_scratch(ctx.run_dir):
            run_stages(ctx)
        return "done", None
    except StopRequested as e:
        ctx.log.warning("stopped: %s", e)
        return "stopped", str(e)
    except AtcError as e:
        ctx.log.error("failed: %s", e)
        return "failed", str(e)
    except Exception as e:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            message = (f"no space left on the device holding {e.filename or ctx.run_dir}; "
                       "free some space, then resume the run")
            ctx.log.error("failed: %s", message)  # first, while the log may take a line
            return "failed", message
        # an unexpected crash: keep the traceback in the log
        ctx.log.exception("failed with an unexpected error")
        return "failed", f"{type(e).__name__}: {e}"


def dry_run(run_dir: Path) -> None:
    """Print the stage plan and check the device and the data; nothing is trained or scored."""
    cfg = read_config(RunFiles(run_dir).config)
    with_data = streams_with_data(cfg)
    print(f"dry run: {run_dir}")
    stages = plan()
    for i, stage in enumerate(stages, 1):
        skip = stage.stream and stage.stream not in with_data
        print(f"[{i}/{len(stages)}] {stage.name}{'  (skipped: no data)' if skip else ''}")
    with run_scratch(run_dir):
        for line in preflight(cfg):
            print(f"  {line}")
    progress = initial_progress(run_dir.name, stage_names(), "planned")
    for stage in progress["stages"]:
        if any(s.name == stage["name"] and s.stream and s.stream not in with_data for s in stages):
            stage["status"] = "skipped"
    write_json(RunFiles(run_dir).progress, progress)
    RunIndex(workspace_of(run_dir)).update(run_dir)
    print(f"runtime config written to {RunFiles(run_dir).config}; nothing was trained")


def _data_options(scoring: bool = False):
    """Every stream's data options (`--ts-data`...), those `score` takes when `scoring`."""
    return [o for s in STREAMS.values() for o in s.data if not scoring or o.score_help]


def _given_data(args) -> dict[str, str]:
    """{pipeline data key: path} of the data options given on the command line."""
    return {o.key: getattr(args, o.key) for o in _data_options() if getattr(args, o.key, None)}


def _new_run(args) -> Path:
    given = _given_data(args) | ({"name": args.name} if args.name else {})
    return new_run(args.workdir, [*args.set, *(f"pipeline.{k}={v}" for k, v in given.items())])


def cmd_run(args) -> int:
    if args.run_dir:
        run_dir = Path(args.run_dir).resolve()
        if _given_data(args) or args.set:
            raise AtcError("give either RUN_DIR (a prepared run folder) or data options, not both")
        if not RunFiles(run_dir).config.exists():
            flags = " or ".join(s.data[0].flag for s in STREAMS.values())
            raise AtcError(f"{run_dir}: no run.yaml; to start a new run pass {flags} instead")
        workspace_of(run_dir)  # a run folder must sit in a workspace's runs/
    else:
        run_dir = _new_run(args)
        if not args.dry_run:
            return _launch_new(run_dir, args.detach)
    if args.dry_run:
        dry_run(run_dir)
        return 0
    return _launch(run_dir, args.detach, resume=False)


def _launch_new(run_dir: Path, detach: bool) -> int:
    """Launch a run folder this command just created; when the start is refused (another job
    runs), remove it again rather than leave a folder holding only run.yaml."""
    try:
        return _launch(run_dir, detach, resume=False)
    except JobError:
        if not RunFiles(run_dir).progress.exists():
            delete_run(workspace_of(run_dir), run_dir.name)
        raise


def _launch(run_dir: Path, detach: bool, resume: bool) -> int:
    if detach:
        pid = jobs.start(run_dir, resume=resume)
        print(f"started run {run_dir.name} (pid {pid}); follow it with: "
              f"python -m core.pipeline status {run_dir}")
        return 0
    status = execute(run_dir, resume=resume)
    print(f"{status}: {run_dir}")
    return EXIT[status]


def cmd_score(args) -> int:
    from core.scoring_runs import new_scoring_run
    data = {name: getattr(args, s.data_key, None) for name, s in STREAMS.items()}
    run_dir = new_scoring_run(Path(args.run_dir), data, args.workdir, args.name or "")
    print(f"scoring run {run_dir.name}: the models of {Path(args.run_dir).resolve().name} score "
          "the new data")
    return _launch_new(run_dir, args.detach)


def cmd_export(args) -> int:
    from core.export import export_run
    for folder in export_run(Path(args.run_dir), Path(args.out) if args.out else None):
        print(f"exported {folder.name}: {folder}  (python {folder / 'predict.py'} DATA "
              "--out scores.csv)")
    return 0


def cmd_resume(args) -> int:
    run_dir = Path(args.run_dir).resolve()
    if not RunFiles(run_dir).config.exists():
        raise AtcError(f"{run_dir}: not a run folder (no run.yaml)")
    workspace_of(run_dir)
    jobs.check_resumable(run_dir)
    read_config(RunFiles(run_dir).config)  # an unreadable config: refused, the run left as it is
    return _launch(run_dir, args.detach, resume=True)


def cmd_stop(args) -> int:
    progress = jobs.stop(Path(args.run_dir), grace_s=args.grace)
    print(progress["label"] + (f": {progress['error']}" if progress.get("error") else ""))
    return 0


def cmd_status(args) -> int:
    progress = jobs.watchdog(Path(args.run_dir))  # a lost run is recorded, an overdue stop ended
    if args.json:
        print(json.dumps(progress, indent=2))
        return 0
    print(f"{progress['run_id']}: {progress['label']}"
          + (f" ({progress['error']})" if progress.get("error") else ""))
    for stage in progress["stages"]:
        took = f"{stage['ended'] - stage['started']:.1f} s" if stage["ended"] and stage["started"] \
            else ""
        print(f"  {stage['status']:<8} {stage['name']:<20} {took}")
    if progress.get("active"):
        print("  active:", json.dumps(progress["active"]))
    if progress["status"] in jobs.LIVE_STATES:
        print(f"  heartbeat {time.time() - progress['heartbeat']:.0f} s ago")
    return 0


def cmd_index(args) -> int:
    from core.runs_tables import index_entries  # live runs re-checked, so a killed one shows lost
    ws = workspace(args.workdir)
    if args.rebuild:
        RunIndex(ws).rebuild()
    entries = index_entries(ws)
    jobs.watch_workspace(ws)  # a killed run is recorded failed (lost) in its folder and the index
    for e in entries:
        print(f"{e['run_id']}  {e['status']:<8} {','.join(e['streams']):<10} "
              f"{json.dumps(e['metrics'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.pipeline", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start a run (new, or a prepared RUN_DIR)")
    run.add_argument("run_dir", nargs="?")
    for option in _data_options():
        run.add_argument(option.flag, help=option.help)
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. patchtst.train.epochs=3 (repeatable)")
    run.add_argument("--name", help="a name for the runs index")
    run.add_argument("--dry-run", action="store_true", help="print the plan, check the data, "
                     "write run.yaml; train nothing")
    run.add_argument("--workdir", help="workspace folder (default $ATC_WORKDIR or artifacts/)")
    score = sub.add_parser("score", help="score new data with a finished run's models (a new "
                           "run whose run.yaml names from_run)")
    score.add_argument("run_dir", help="the finished run whose models score the data")
    for option in _data_options(scoring=True):
        score.add_argument(option.flag, help=option.score_help)
    score.add_argument("--name", help="a name for the runs index")
    score.add_argument("--workdir", help="workspace folder (default: the model run's)")
    export = sub.add_parser("export", help="write the run's models to run without this project "
                            "(ONNX, model.json and predict.py per stream)")
    export.add_argument("run_dir")
    export.add_argument("--out", help="the export folder (default RUN_DIR/export)")
    resume = sub.add_parser("resume", help="continue a stopped or failed run from last.pt")
    resume.add_argument("run_dir")
    for parser in (run, score, resume):
        parser.add_argument("--detach", action="store_true",
                            help="start in the background and return at once")
    stop = sub.add_parser("stop", help="stop a running run")
    stop.add_argument("run_dir")
    stop.add_argument("--grace", type=float, default=jobs.GRACE_S,
                      help="seconds to wait for a clean stop before SIGKILL")
    status = sub.add_parser("status", help="show a run's status")
    status.add_argument("run_dir")
    status.add_argument("--json", action="store_true")
    index = sub.add_parser("index", help="list the runs index")
    index.add_argument("--rebuild", action="store_true", help="rebuild it from the run folders")
    index.add_argument("--workdir")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"run": cmd_run, "score": cmd_score, "export": cmd_export,
               "resume": cmd_resume, "stop": cmd_stop, "status": cmd_status,
               "index": cmd_index}[args.command]
    try:
        return command(args)
    except AtcError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT["usage"]


if __name__ == "__main__":
    sys.exit(main())
