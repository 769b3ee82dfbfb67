"""The runner that walks a run's stages (`core.streams.plan`), and the stage context.

Each stage is a function `stage(ctx) -> None` named by "module:function" and imported only when
it runs, so readers of the stage list (the console's stage graph, `core.jobs`) never load torch.
A stage bound to a stream is `skipped` when the run has no data for that stream; a stage may
also skip itself by raising `Skip` (e.g. evaluation without labels)."""
from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import RunConfig, run_settings
from core.curves import shift_warning
from core.errors import StopRequested
from core.fileio import write_json
from core.progress import MetricsLog, ProgressWriter
from core.run_files import StreamFiles
from core.streams import STREAMS, Stage, plan, resolve


def is_scoring_run(run_dir: Path) -> bool:
    """Whether the run folder's run.yaml names a `pipeline.from_run` (False when unreadable:
    the run then fails on its config, with the reason)."""
    pipe = run_settings(run_dir).get("pipeline")
    return bool(isinstance(pipe, dict) and pipe.get("from_run"))


def streams_with_data(cfg: RunConfig) -> list[str]:
    return [name for name, s in STREAMS.items() if getattr(cfg.pipeline, s.data_key)]


def stream_runtime(cfg: RunConfig, stream: str):
    """The device and precision `stream`'s model trains with (`precision: auto` on a CPU with
    bf16 units: bf16 only for streams that gain from it, `Stream.cpu_bf16`)."""
    from core.devices import Runtime  # torch: only when a run or a check needs it
    return Runtime.of(cfg.pipeline, STREAMS[stream].cpu_bf16)


def run_runtime(cfg: RunConfig):
    """The run's device and precision as its device line and provenance give them: bf16 when a
    stream with data trains in it (each stream's training logs its own)."""
    from core.devices import Runtime
    streams = streams_with_data(cfg)
    return Runtime.of(cfg.pipeline, not streams or any(STREAMS[s].cpu_bf16 for s in streams))


class Skip(Exception):
    """Raised by a stage that has nothing to do; its message is shown on the stage."""


@dataclass
class Context:
    """What every stage gets: the run folder, its config and the run's channels to the world."""
    run_dir: Path
    cfg: RunConfig
    progress: ProgressWriter
    metrics: MetricsLog
    log: logging.Logger
    resume: bool = False
    stop_event: threading.Event = field(default_factory=threading.Event)
    state: dict[str, Any] = field(default_factory=dict)  # handed from stage to stage in-process
    group: Any = None  # a core.distributed.Group when this process is one rank of several

    @property
    def is_main(self) -> bool:
        """Whether this process writes the stage's files (always, unless a rank other than 0)."""
        return self.group is None or self.group.is_main

    def stream_dir(self, stream: str) -> Path:
        path = self.run_dir / stream
        path.mkdir(exist_ok=True)
        return path

    def should_stop(self) -> bool:
        return self.stop_event.is_set()


def run_stages(ctx: Context) -> None:
    """Run every stage in order; a stage's exception marks it failed/stopped and propagates."""
    with_data = streams_with_data(ctx.cfg)
    stages = plan(bool(ctx.cfg.pipeline.from_run))
    for i, stage in enumerate(stages, 1):
        ctx.log.info("[%d/%d] %s", i, len(stages), stage.name)
        if ctx.should_stop():
            ctx.progress.stage_ended(stage.name, "stopped", "stop requested")
            raise StopRequested(f"stopped before {stage.name}")
        if stage.stream and stage.stream not in with_data:
            ctx.progress.stage_ended(stage.name, "skipped", f"no {stage.stream} data")
            ctx.log.info("    skipped: no data for the %s stream", stage.stream)
            continue
        _run_one(ctx, stage)


def _run_one(ctx: Context, stage: Stage) -> None:
    ctx.progress.stage_started(stage.name)
    t0 = time.time()
    try:
        _run_target(ctx, stage)
    except Skip as e:
        ctx.progress.stage_ended(stage.name, "skipped", str(e))
        ctx.log.info("    skipped: %s", e)
        return
    except StopRequested as e:
        ctx.progress.stage_ended(stage.name, "stopped", str(e))
        raise
    except BaseException as e:
        ctx.progress.stage_ended(stage.name, "failed", str(e) or type(e).__name__)
        raise
    ctx.progress.stage_ended(stage.name, "done")
    ctx.log.info("    done in %.1f s", time.time() - t0)


def _run_target(ctx: Context, stage: Stage) -> None:
    """The stage's function, here, or on several processes under torchrun when configured."""
    if stage.distributed:
        from core.distributed import launch, planned_world  # imports torch
        world = planned_world(ctx.cfg.pipeline)
        if world > 1:
            launch(ctx, stage, world)
            return
    resolve(stage.target)(ctx)


def stream_module(stream: str):
    return importlib.import_module(STREAMS[stream].module)


def check_data(cfg: RunConfig, stream: str) -> list[str]:
    """A stream's data, loaded and checked as a run would (DataError if unusable), in lines."""
    module = stream_module(stream)
    return module.describe(*module.load(cfg))


def preflight(cfg: RunConfig) -> list[str]:
    """Everything a run checks before it trains, without training: the device, precision and
    process count can be had here, and every stream's data loads and fits the config (window
    vs rows, image count...). Raises ConfigError or DataError naming the problem; returns what
    it found, in lines. `--dry-run` and the console's Train and Check buttons run this."""
    from core.distributed import planned_world  # torch: only when a check is asked for
    runtime, world = run_runtime(cfg), planned_world(cfg.pipeline)
    lines = [f"device: {runtime.describe()}" + (f" × {world} processes" if world > 1 else "")]
    for stream in streams_with_data(cfg):
        lines += [f"{stream}: {line}" for line in check_data(cfg, stream)]
    return lines


def prepare_data(ctx: Context) -> None:
    """Load and check every stream's data before any training starts; the prepared data goes to
    `ctx.state[stream]` for the later stages, its summary to `<stream>/data_summary.json`."""
    for stream in streams_with_data(ctx.cfg):
        module = stream_module(stream)
        data, dataset = module.load(ctx.cfg)
        ctx.state[stream] = data
        write_json(StreamFiles(ctx.stream_dir(stream)).summary, module.summary(data, dataset))
        for line in module.describe(data, dataset):
            ctx.log.info("    %s", line)


class TrainReporter:
    """The training loop's reporter: metrics.jsonl lines, progress counts and ETA, log lines."""

    def __init__(self, ctx: Context, stage: str, stream: str, curve: str | None = None,
                 out_dir: Path | None = None):
        """`curve`: the loss curves' name when a stream trains more than one network (default:
        the stream's); `out_dir`: where training.json goes (default: the stream's folder)."""
        self.ctx, self.stage, self.stream = ctx, stage, stream
        self.curve, self.out_dir = curve, out_dir
        self.t0, self.first_step = time.time(), None
        self.shift_warned = False  # the validation-shift warning is logged once per stage

    def step(self, *, epoch, n_epochs, step, n_steps, loss, lr, samples_per_s,
             gpu_mem_gb) -> None:
        now = time.time()
        if self.first_step is None:  # the first report is one point: a rate needs two
            self.first_step, self.t0 = step, now  # (a resumed run starts mid-way)
        done = step - self.first_step
        eta = (now - self.t0) / done * (n_steps - step) if done else None
        self.ctx.metrics.log(stage=self.stage, stream=self.stream, kind="step", epoch=epoch,
                             step=step, train_loss=loss, lr=lr,
                             samples_per_s=round(samples_per_s, 1), **self._curve())
        self.ctx.progress.update_active(epoch=epoch, n_epochs=n_epochs, step=step,
                                        n_steps=n_steps, gpu_mem_gb=gpu_mem_gb,
                                        eta_s=round(eta, 1) if eta is not None else None,
                                        samples_per_s=round(samples_per_s, 1))

    def epoch(self, *, epoch, n_epochs, train_loss, val_loss, best) -> None:
        self.ctx.metrics.log(stage=self.stage, stream=self.stream, kind="epoch", epoch=epoch,
                             train_loss=train_loss, val_loss=val_loss, best=best, **self._curve())
        self.ctx.progress.update_active(epoch=epoch, n_epochs=n_epochs)
        self.ctx.log.info("    epoch %d/%d  train %.4f  val %.4f%s", epoch, n_epochs, train_loss,
                          val_loss, "  (best)" if best else "")
        shift = shift_warning(train_loss, val_loss)
        if shift and not self.shift_warned:
            self.shift_warned = True
            self.ctx.log.warning("    %s", shift)

    def _curve(self) -> dict:
        return {"curve": self.curve} if self.curve else {}

    def should_stop(self) -> bool:
        return self.ctx.should_stop()

    def resumed(self, *, step: int, epoch: int) -> None:
        """Training resumes after `step` steps and `epoch` epochs: metrics.jsonl forgets this
        stage's later lines (a killed run logged them, and they are about to be trained again)."""
        self.ctx.metrics.rewind(self.stage, step, epoch)

    def warn(self, message: str) -> None:
        self.ctx.log.warning("    %s", message)

    def finished(self, result) -> None:
        """After `fit`: the stream's training.json (rank 0 writes it) and the log's last word."""
        if self.ctx.is_main:
            write_json(StreamFiles(self.out_dir or self.ctx.stream_dir(self.stream)).training,
                       vars(result))
        self.ctx.log.info("    best validation loss %.4f at epoch %d%s", result.best_val_loss,
                          result.best_epoch, " (early stop)" if result.early_stopped else "")
