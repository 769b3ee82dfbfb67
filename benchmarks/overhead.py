"""What the run's progress files cost a training run: the reporter per logged step, the heartbeat
thread, and the console's live-panel refresh, against one real training step.

In a temporary run folder (under `artifacts/` by default: fsync cost depends on the file system,
and that is where runs live) the real pipeline objects are built: `core.progress.ProgressWriter`
and `MetricsLog`, a `core.runner.Context`, and a `core.runner.TrainReporter` for
`train_patchtst`. Then, interleaved for `--rounds` rounds (the CPU is shared, so the figures are
medians with the 10–90 % spread over rounds):

- one training step: PatchTST at the default config (`load_config().patchtst`), 38 channels,
  batch `train.batch_size` (64) of random windows; a plain AdamW step on `model.loss(x)` with
  gradient clipping, as `core.training.fit` takes it (zero_grad, backward, clip, step, `.item()`);
- one `TrainReporter.step(...)` call with the arguments `fit` passes: a metrics.jsonl line and an
  atomic, fsync'd progress.json rewrite, plus the `should_stop()` that `fit` asks every step;
- one heartbeat: the `ProgressWriter` write the heartbeat thread does every `HEARTBEAT_S`
  seconds under its lock (timed directly: the thread's effect on a step is below the noise).

Overhead, in % of training time: the reporter at `log_every` (what `fit` does: one call every
`train.log_every` = 10 steps), the reporter on every step (worst case), and the heartbeat's
cost per `HEARTBEAT_S` of wall time. Target: under 1 %.

Last, the live panel's server-side refresh for a run with a 10,000-point loss history, by the
existing `benchmarks/live_panel.py` (its `fake_run` and `refresh`, imported, not copied). That
runs in the console's server process, not the training process, so it is no training overhead;
it is the cost of one `run_every` tick.

    python benchmarks/overhead.py [--rounds 15] [--workdir DIR] [--quick]

`--quick`: 5 rounds, fewer calls per round. ~1 minute on a 2-core CPU. Ends with
`overhead_pct=… live_refresh_ms=…` (overhead_pct: reporter at log_every plus heartbeat).
"""
from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from cli import ROOT

import live_panel
from core.config import load_config
from core.progress import HEARTBEAT_S, MetricsLog, ProgressWriter
from core.runner import Context, TrainReporter
from core.streams import stage_names
from core.timeseries.patchtst import PatchTST

CHANNELS = 38


# ---------------------------------------------------------------- what is timed

def train_step_fn(cfg, seed: int = 0):
    """A closure doing one AdamW step of PatchTST on a fixed random batch (B, L, C)."""
    torch.manual_seed(seed)
    model = PatchTST(cfg.model, CHANNELS, cfg.data.window).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr,
                            weight_decay=cfg.train.weight_decay)
    x = torch.randn(cfg.train.batch_size, cfg.data.window, CHANNELS)  # (B, L, C)

    def step() -> float:
        loss = model.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        return loss.item()
    return step


def reporter_fn(run_dir: Path, cfg):
    """(reporter call as fit makes it, heartbeat write, the ProgressWriter) in `run_dir`."""
    progress = ProgressWriter(run_dir, run_dir.name, stage_names())
    ctx = Context(run_dir=run_dir, cfg=cfg, progress=progress, metrics=MetricsLog(run_dir),
                  log=logging.getLogger("overhead"))
    progress.stage_started("train_patchtst")
    reporter = TrainReporter(ctx, "train_patchtst", "patchtst")
    n = [0]

    def report() -> None:
        n[0] += 1
        reporter.step(epoch=1, n_epochs=10, step=n[0], n_steps=100_000, loss=0.123456789,
                      lr=1e-3, samples_per_s=1234.5, gpu_mem_gb=None)
        reporter.should_stop()

    def heartbeat() -> None:  # the body of ProgressWriter.start_heartbeat's loop
        with progress._lock:
            progress._write()
    return report, heartbeat, progress


def per_call_s(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


# ---------------------------------------------------------------- report

def stats(xs: list[float]) -> tuple[float, float, float]:
    """(median, p10, p90)."""
    return float(np.median(xs)), float(np.percentile(xs, 10)), float(np.percentile(xs, 90))


def row(name: str, xs: list[float], unit: str, scale: float = 1.0) -> str:
    med, lo, hi = stats([x * scale for x in xs])
    return f"{name:<44} {med:>10.3f} {lo:>10.3f} {hi:>10.3f}  {unit}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--workdir", type=Path, help="where the temporary run folder goes "
                   "(default: artifacts/)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    rounds, steps, calls = (5, 3, 20) if args.quick else (args.rounds, 5, 50)
    run_cfg = load_config()
    cfg = run_cfg.patchtst
    log_every = cfg.train.log_every
    parent = args.workdir or ROOT / "artifacts"
    parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="overhead-", dir=parent))
    try:
        train = train_step_fn(cfg)
        report, heartbeat, progress = reporter_fn(run_dir, run_cfg)
        train(), report(), heartbeat()  # warm-up
        step_s, report_s, beat_s = [], [], []
        for _ in range(rounds):  # interleaved: each round sees the same machine load
            step_s.append(per_call_s(train, steps))
            report_s.append(per_call_s(report, calls))
            beat_s.append(per_call_s(heartbeat, calls))
        progress.finish("done")
        with tempfile.TemporaryDirectory() as tmp:
            live_run = live_panel.fake_run(Path(tmp), 10_000)
            repeats = 5 if args.quick else 20
            live_ms = live_panel.time_ms(lambda: live_panel.refresh(live_run), repeats)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

    at_log_every = [r / log_every / s * 100 for r, s in zip(report_s, step_s)]
    every_step = [r / s * 100 for r, s in zip(report_s, step_s)]
    beat = [b / HEARTBEAT_S * 100 for b in beat_s]
    total = [a + b for a, b in zip(at_log_every, beat)]
    print(f"\nPatchTST {cfg.model}, batch {cfg.train.batch_size}, {CHANNELS} channels, "
          f"window {cfg.data.window}; log_every {log_every}, heartbeat every {HEARTBEAT_S} s; "
          f"{rounds} interleaved rounds; run folder on {parent}")
    print(f"{'':<44} {'median':>10} {'p10':>10} {'p90':>10}")
    print(row("training step", step_s, "ms", 1000))
    print(row("TrainReporter.step + should_stop", report_s, "ms", 1000))
    print(row("heartbeat write (progress.json)", beat_s, "ms", 1000))
    print(row(f"overhead: reporter every {log_every} steps", at_log_every, "% of step"))
    print(row("overhead: reporter every step (worst case)", every_step, "% of step"))
    print(row(f"overhead: heartbeat every {HEARTBEAT_S:g} s", beat, "% of wall"))
    print(row("overhead: log_every reporter + heartbeat", total, "%"))
    print(f"{'live panel refresh, 10,000-point history':<44} {live_ms:>10.1f} "
          f"{'':>21}  ms (median of {repeats}, console server)")
    print(f"overhead_pct={stats(total)[0]:.3f} worst_case_pct={stats(every_step)[0]:.3f} "
          f"live_refresh_ms={live_ms:.1f}")


if __name__ == "__main__":
    main()
