"""One rank of a multi-process training stage: the module `torchrun` runs
(`python -m core.rank RUN_DIR STAGE [--resume]`, launched by `core.distributed.launch`).

The rank joins the process group, loads its stream's data, runs the stage's function with a
Context whose progress and metrics are event lines on stdout (rank 0) or nothing (other ranks),
and writes its outcome to `<run>/distributed/`. See `core.distributed` for the whole protocol."""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import torch
import torch.distributed as dist

from core.config import read_config
from core.devices import resolve_device
from core.distributed import EVENT, STOPPED_EXIT, Group, outcome_dir
from core.errors import StopRequested
from core.fileio import write_json
from core.run_files import RunFiles
from core.runner import Context, stream_module
from core.streams import plan, resolve


class EventSink:
    """Stands in for ProgressWriter and MetricsLog on rank 0: each call becomes an event line."""

    def log(self, **fields) -> None:
        _emit("metrics", fields)

    def rewind(self, stage: str, step: int, epoch: int) -> None:
        _emit("rewind", {"stage": stage, "step": step, "epoch": epoch})

    def update_active(self, **fields) -> None:
        _emit("progress", fields)


def _emit(to: str, fields: dict) -> None:
    """One event line in one write: the ranks and torchrun share the pipe, and a pipe keeps a
    write under 4 KiB whole, where print's separate newline could be cut off by another
    process's output."""
    sys.stdout.write(f"{EVENT}{json.dumps({'to': to, 'fields': fields})}\n")
    sys.stdout.flush()


class NullSink:
    """Ranks other than 0 report nothing."""

    def log(self, **fields) -> None:
        pass

    def rewind(self, stage: str, step: int, epoch: int) -> None:
        pass

    def update_active(self, **fields) -> None:
        pass


def _watch_for_stop(stop_event: threading.Event, stop_file: Path, parent: int) -> None:
    """Set `stop_event` when the pipeline's stop file appears or this rank's parent (torchrun)
    is gone: a SIGKILLed torchrun cannot forward a stop, and its ranks must not run on."""
    while not stop_event.wait(0.5):
        if stop_file.exists() or os.getppid() != parent:
            stop_event.set()


def _rank_logger(is_main: bool) -> logging.Logger:
    log = logging.getLogger("atc.rank")
    log.setLevel(logging.INFO if is_main else logging.WARNING)
    log.propagate = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    return log


def _write_outcome(folder: Path, stage: str, rank: int, status: str,
                   error: BaseException | None = None) -> None:
    outcome = {"status": status}
    if error is not None:
        outcome |= {"error": str(error) or type(error).__name__, "type": type(error).__name__}
    write_json(folder / f"{stage}.rank{rank}.json", outcome)


def worker(run_dir: Path, stage_name: str, resume: bool) -> int:
    """One rank: join the group, load the stream's data, run the stage's function."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    folder = outcome_dir(run_dir)
    stop_event = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_event.set())
    threading.Thread(target=_watch_for_stop, daemon=True,
                     args=(stop_event, folder / f"{stage_name}.stop", os.getppid())).start()
    try:
        cfg = read_config(RunFiles(run_dir).config)
        device = resolve_device(cfg.pipeline.device)
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        stage = next(s for s in plan() if s.name == stage_name)
        sink = EventSink() if rank == 0 else NullSink()
        ctx = Context(run_dir, cfg, sink, sink, _rank_logger(rank == 0), resume=resume,
                      stop_event=stop_event, group=Group(rank, world, device))
        ctx.state[stage.stream] = stream_module(stage.stream).load(cfg)[0]
        resolve(stage.target)(ctx)
        _write_outcome(folder, stage_name, rank, "done")
        return 0
    except StopRequested:
        _write_outcome(folder, stage_name, rank, "stopped")
        return STOPPED_EXIT
    except BaseException as e:
        _write_outcome(folder, stage_name, rank, "failed", e)
        logging.getLogger("atc.rank").exception("rank %d failed", rank)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(worker(Path(sys.argv[1]), sys.argv[2], "--resume" in sys.argv[3:]))
