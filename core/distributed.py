"""Training on several processes: DistributedDataParallel under `torchrun`.

With `pipeline.distributed` on, a training stage does not run in the pipeline process. The
pipeline launches `torchrun --standalone --nproc_per_node=N -m core.rank RUN_DIR STAGE`
and waits. Each rank loads the stream's data, trains its shard of every epoch (a
DistributedSampler) on a DDP-wrapped model, and rank 0 alone writes checkpoints. The pipeline
stays the only writer of progress.json and metrics.jsonl: rank 0 sends what the training loop
reports as event lines on stdout, which the pipeline applies (and logs every other line).

Stop reaches every rank three ways: SIGTERM forwarded by torchrun, a stop file the pipeline
writes when it is asked to stop, and the death of the rank's parent (a SIGKILLed torchrun).
Ranks agree on it with an all-reduce at each step, so they stop at the same step and rank 0
saves `last.pt`. Each rank writes its outcome (done, stopped, or its error) to
`<run>/distributed/`, so a failed run carries the failing rank's own error.

This module is the pipeline's side and the process group the training loop sees; a rank's
side, the module torchrun runs, is `core.rank` (it needs the stage list and Context of
`core.runner`, which imports this module: keeping the two apart keeps imports one-way)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from core import errors
from core.errors import ConfigError, StopRequested, TrainingError

EVENT = "@atc-event "  # prefix of rank 0's stdout lines that carry progress/metrics updates
STOPPED_EXIT = 3


# --- the process group seen from the training loop ------------------------------------------

class Solo:
    """One process trains alone: every collective is the identity."""
    rank, world, is_main = 0, 1, True

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        return module

    def agree(self, loss: float, stop: bool) -> tuple[float, bool]:
        return loss, stop

    def mean(self, value: float) -> float:
        return value


class Group(Solo):
    """A rank of a torchrun job: DDP for gradients, an all-reduce for what ranks must agree on."""

    def __init__(self, rank: int, world: int, device: torch.device):
        self.rank, self.world, self.is_main, self.device = rank, world, rank == 0, device

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        ids = [torch.cuda.current_device()] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def agree(self, loss: float, stop: bool) -> tuple[float, bool]:
        """The mean of the ranks' step losses, and whether any rank asked to stop."""
        t = torch.tensor([loss, float(stop)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)  # (2,) sums
        return t[0].item() / self.world, t[1].item() > 0

    def mean(self, value: float) -> float:
        return self.agree(value, False)[0]


SOLO = Solo()


def group_of(ctx) -> Solo:
    """The context's process group: its torchrun Group on a rank, else SOLO."""
    return ctx.group or SOLO


def planned_world(pipeline) -> int:
    """How many processes train: 1 unless `distributed` is on (or auto with >1 GPU visible).
    On GPUs each process takes one, so there cannot be more processes than GPUs."""
    gpus = torch.cuda.device_count() if pipeline.device != "cpu" else 0
    if pipeline.distributed == "false" or (pipeline.distributed == "auto" and gpus < 2):
        return 1
    if gpus and pipeline.nproc > gpus:
        raise ConfigError(f"pipeline.nproc: {pipeline.nproc} processes asked for, but only "
                          f"{gpus} GPU(s) are visible; use at most {gpus}, or 0 for one per GPU")
    return pipeline.nproc or gpus or 2


# --- the pipeline's side: launch torchrun, relay events, collect outcomes --------------------

def outcome_dir(run_dir: Path) -> Path:
    return run_dir / "distributed"


def launch(ctx, stage, world: int) -> None:
    """Run a training stage on `world` processes and wait; raise as the ranks ended."""
    folder = outcome_dir(ctx.run_dir)
    folder.mkdir(exist_ok=True)
    for old in folder.glob(f"{stage.name}.*"):
        old.unlink()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={world}", "-m", "core.rank", str(ctx.run_dir), stage.name]
    if ctx.resume:
        cmd.append("--resume")
    ctx.progress.update_active(processes=world)
    ctx.log.info("    training on %d processes: torchrun, DistributedDataParallel (%s)", world,
                 "nccl" if torch.cuda.is_available() and ctx.cfg.pipeline.device != "cpu"
                 else "gloo")
    env = os.environ.copy()  # torchrun would set 1 thread per rank, and say so at length
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // world)))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, cwd=Path(__file__).resolve().parent.parent, env=env)
    threading.Thread(target=_forward_stop, args=(ctx, folder / f"{stage.name}.stop", proc),
                     daemon=True).start()
    for line in proc.stdout:
        _relay(ctx, line.rstrip("\n"))
    code = proc.wait()
    _raise_for_outcomes(folder, stage.name, world, code, ctx.should_stop())


def _forward_stop(ctx, stop_file: Path, proc: subprocess.Popen) -> None:
    """When the pipeline is asked to stop, tell the ranks through the stop file."""
    while proc.poll() is None:
        if ctx.stop_event.wait(0.5):
            stop_file.touch()
            return


def _relay(ctx, line: str) -> None:
    """Apply an event line from the ranks' shared stdout; log any other text. The ranks and
    torchrun write to one pipe, so another process's output can run into an event's line: what
    follows the event is logged, and a line that does not parse is logged as text, never
    fatal (a full suite once failed a run on such a line)."""
    event, rest = _parse_event(line)
    if event is not None:
        if event["to"] == "metrics":
            ctx.metrics.log(**event["fields"])
        elif event["to"] == "rewind":
            ctx.metrics.rewind(**event["fields"])
        else:
            ctx.progress.update_active(**event["fields"])
    if rest.strip():
        ctx.log.info("%s", rest)


def _parse_event(line: str) -> tuple[dict | None, str]:
    """(the event a line starts with, or None; the text after it, or the whole line)."""
    if not line.startswith(EVENT):
        return None, line
    try:
        event, end = json.JSONDecoder().raw_decode(line, len(EVENT))
    except json.JSONDecodeError:
        return None, line
    if not isinstance(event, dict) or not isinstance(event.get("fields"), dict) \
            or "to" not in event:
        return None, line
    return event, line[end:]


def _raise_for_outcomes(folder: Path, stage: str, world: int, code: int, stopping: bool) -> None:
    """Done when every rank reported done; else the first failure (a rank that died without a
    word first: the others' errors are its consequence), else stopped."""
    outcomes = {}
    for rank in range(world):
        path = folder / f"{stage}.rank{rank}.json"
        outcomes[rank] = json.loads(path.read_text()) if path.exists() else None
    silent = [r for r, o in outcomes.items() if o is None]
    failed = [(r, o) for r, o in outcomes.items() if o and o["status"] == "failed"]
    if silent and not (stopping and not failed):
        raise TrainingError(f"{stage}: rank {silent[0]} of {world} died without reporting "
                            f"(killed, or crashed outside Python; torchrun exit code {code}); "
                            "see pipeline.log")
    if failed:
        rank, o = failed[0]
        cls = getattr(errors, o["type"], None)  # the rank's own AtcError class, if it was one
        if not (isinstance(cls, type) and issubclass(cls, errors.AtcError)):
            cls = TrainingError
        raise cls(f"rank {rank}: {o['error']}")
    if silent or any(o["status"] == "stopped" for o in outcomes.values()):
        raise StopRequested(f"stopped during {stage} (all {world} processes)")
    if code != 0:
        raise TrainingError(f"{stage}: torchrun exited with code {code}; see pipeline.log")
