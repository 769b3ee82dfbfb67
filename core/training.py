"""The training loop, shared by both streams: AdamW, linear warm-up then cosine decay, gradient
clipping, validation each epoch, early stopping on validation loss, best and last checkpoints,
resume from last, stop on a non-finite loss, and a clean stop at a step boundary on request.

A model trains if it has `loss(batch) -> scalar tensor`. Batches come from two callables so the
loop does not care what a sample is: `train_batches(epoch)` and `val_batches()`, each yielding
tensors on the CPU; the loop moves them to the device. The same loop runs as one rank of a
torchrun job (`group`): DDP averages gradients, ranks agree on each step's loss and on a stop,
and only rank 0 writes checkpoints."""
from __future__ import annotations

import itertools
import math
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol

import torch
from torch import nn

from core.config import TrainConfig
from core.devices import Runtime, compiled
from core.distributed import SOLO, Solo
from core.errors import StopRequested, TrainingError
from core.fileio import atomic_path
from core.run_files import StreamFiles



class Reporter(Protocol):
    """What the loop tells the pipeline (progress.json, metrics.jsonl) and asks it."""

    def step(self, *, epoch: int, n_epochs: int, step: int, n_steps: int, loss: float, lr: float,
             samples_per_s: float, gpu_mem_gb: float | None) -> None: ...

    def epoch(self, *, epoch: int, n_epochs: int, train_loss: float, val_loss: float,
              best: bool) -> None: ...

    def should_stop(self) -> bool: ...

    def warn(self, message: str) -> None: ...

    def resumed(self, *, step: int, epoch: int) -> None: ...


@dataclass
class FitResult:
    epochs_done: int
    best_val_loss: float
    best_epoch: int
    early_stopped: bool


def lr_at(step: int, total: int, base_lr: float, warmup_frac: float, min_lr_frac: float) -> float:
    """Linear warm-up over `warmup_frac` of `total` steps, then cosine down to
    `min_lr_frac * base_lr` at the last step."""
    warmup = int(warmup_frac * total)
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup - 1)
    floor = min_lr_frac * base_lr
    return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def save_checkpoint(path: Path, payload: dict) -> None:
    """torch.save to a temp file, then rename: a kill mid-write never corrupts a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """A checkpoint's dict, loaded with `weights_only=True` (tensors and plain values only).
    TrainingError naming the file when it is truncated, not a checkpoint, or holds other
    Python objects (refused; torch's advice to load it unsafely is never passed on)."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise TrainingError(f"{path}: holds Python objects other than tensors and plain values; "
                            "refused for safety (expected a checkpoint written by this "
                            "project)") from None
    except Exception as e:  # garbage makes torch raise RuntimeError, EOFError, KeyError, ...
        text = str(e).split(". ")[0][:200]
        reason = text if text and "weights_only" not in str(e) else type(e).__name__
        raise TrainingError(f"{path}: cannot be read as a checkpoint ({reason}); expected a "
                            "complete checkpoint written by this project") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise TrainingError(f"{path}: expected a checkpoint written by this project (a dict "
                            "with 'model'), found something else")
    return ckpt


@dataclass
class _State:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    finished: bool = False  # training ended (all epochs or early stop): resume skips it
    epoch_loss_sum: float = 0.0  # training loss of the current epoch so far, kept across a
    epoch_loss_steps: int = 0  # stop and resume, so a resumed epoch reports all its steps


class LossModule(nn.Module):
    """`forward(x) = model.loss(x)`: DDP synchronises gradients only through `forward`, and
    torch.compile compiles `forward`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.loss(x)


def _evaluate(model: nn.Module, batches: Iterable[torch.Tensor], rt: Runtime) -> float:
    """Mean validation loss. The random masks are seeded the same way every epoch, so epochs
    are compared on the same task (early stopping, best.pt), whatever the training RNG did."""
    model.eval()
    total, n = 0.0, 0
    cuda = [rt.device] if rt.device.type == "cuda" else []
    with torch.no_grad(), rt.autocast(), torch.random.fork_rng(devices=cuda):
        torch.manual_seed(0)
        for x in batches:
            total += model.loss(x.to(rt.device, non_blocking=True)).float().item() * len(x)
            n += len(x)
    model.train()
    return total / max(n, 1)


def fit(model: nn.Module, train_batches: Callable[[int], Iterable[torch.Tensor]],
        n_batches: int, val_batches: Callable[[], Iterable[torch.Tensor]], cfg: TrainConfig,
        rt: Runtime, out_dir: Path, extra: dict, reporter: Reporter, resume: bool = False,
        group: Solo = SOLO) -> FitResult:
    """Train `model` for `cfg.epochs` epochs of `n_batches` steps; checkpoints go to `out_dir`
    (`best.pt`: lowest validation loss, `last.pt`: latest state, for resume). `extra` (config,
    normalisation statistics...) is saved in both so a checkpoint is self-contained. On a
    torchrun rank, `n_batches` and the batches are this rank's shard."""
    device = rt.device
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = _Stepper(model, opt, cfg.grad_clip, rt, group, reporter)
    state, files = _State(), StreamFiles(out_dir)
    if resume and files.last.exists():
        state = _restore(files.last, model, opt, step.scaler, device)
    if resume:  # steps logged after the checkpoint (a killed run) are trained again: drop them
        reporter.resumed(step=state.step, epoch=state.epoch)
    total_steps = cfg.epochs * n_batches
    first_step = state.step + 1  # reported at once, so the console shows progress from the start

    def checkpoint(path: Path) -> None:
        if not group.is_main:
            return
        payload = {"model": model.state_dict(), "extra": extra, "epoch": state.epoch,
                   "val_loss": state.best_val}
        if path == files.last:
            payload |= {"optimizer": opt.state_dict(), "scaler": step.scaler.state_dict(),
                        "state": vars(state).copy()}
        save_checkpoint(path, payload)

    while state.epoch < cfg.epochs and not state.finished:
        left = n_batches * (state.epoch + 1) - state.step  # < n_batches when resumed mid-epoch
        for i, x in enumerate(itertools.islice(train_batches(state.epoch), left), 1):
            t0 = time.perf_counter()
            lr = lr_at(state.step, total_steps, cfg.lr, cfg.warmup_frac, cfg.min_lr_frac)
            for param_group in opt.param_groups:
                param_group["lr"] = lr
            loss = step(x.to(device, non_blocking=True))
            loss, stop = group.agree(loss, reporter.should_stop())
            if not math.isfinite(loss):
                raise TrainingError(f"non-finite training loss ({loss}) at epoch "
                                    f"{state.epoch + 1}, step {state.step + 1}; try a lower "
                                    f"learning rate (now {cfg.lr})")
            state.step += 1
            state.epoch_loss_sum += loss
            state.epoch_loss_steps += 1
            if state.step % cfg.log_every == 0 or i == left or state.step == first_step:
                reporter.step(epoch=state.epoch + 1, n_epochs=cfg.epochs, step=state.step,
                              n_steps=total_steps, loss=loss, lr=lr,
                              samples_per_s=len(x) * group.world / (time.perf_counter() - t0),
                              gpu_mem_gb=_gpu_memory_gb(device))
            if stop:
                checkpoint(files.last)
                raise StopRequested(f"stopped at epoch {state.epoch + 1}, step {state.step}; "
                                    f"checkpoint saved to {files.last}")
        # a stop on an epoch's last step resumes with nothing left of it: straight to validation
        state.epoch += 1
        train_loss = state.epoch_loss_sum / max(state.epoch_loss_steps, 1)
        state.epoch_loss_sum, state.epoch_loss_steps = 0.0, 0
        val_loss = group.mean(_evaluate(model, val_batches(), rt))  # ranks decide alike
        if not math.isfinite(val_loss):
            raise TrainingError(f"non-finite validation loss ({val_loss}) after epoch "
                                f"{state.epoch}; try a lower learning rate (now {cfg.lr})")
        improved = val_loss < state.best_val
        if improved:
            state.best_val, state.best_epoch, state.bad_epochs = val_loss, state.epoch, 0
            checkpoint(files.checkpoint)
        else:
            state.bad_epochs += 1
        checkpoint(files.last)
        reporter.epoch(epoch=state.epoch, n_epochs=cfg.epochs, train_loss=train_loss,
                       val_loss=val_loss, best=improved)
        if cfg.patience and state.bad_epochs >= cfg.patience:
            break
    early_stopped = state.epoch < cfg.epochs
    state.finished = True
    checkpoint(files.last)
    return FitResult(state.epoch, state.best_val, state.best_epoch, early_stopped)


def _gpu_memory_gb(device: torch.device) -> float | None:
    """Peak GPU memory this process allocated, for the console's device panel."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


class _Stepper:
    """One optimizer step on a batch: the model wrapped for DDP and compiled when asked, under
    autocast, with loss scaling for fp16 and gradient clipping."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, grad_clip: float,
                 rt: Runtime, group: Solo, reporter: Reporter):
        self.params, self.opt, self.grad_clip, self.rt = list(model.parameters()), opt, grad_clip, rt
        self.eager = group.wrap(LossModule(model), rt.device)
        self.net = compiled(self.eager, reporter.warn) if rt.compile else self.eager
        self.scaler = rt.grad_scaler()
        self.reporter, self.steps = reporter, 0

    def __call__(self, x: torch.Tensor) -> float:
        try:
            loss = self._step(self.net, x)
        except Exception as e:  # compilation is lazy: it fails, if at all, on the first step
            if self.net is self.eager or self.steps:
                raise
            self.reporter.warn(f"torch.compile failed ({type(e).__name__}: {e}); "
                               "training uncompiled")
            self.net = self.eager
            loss = self._step(self.net, x)
        self.steps += 1
        return loss

    def _step(self, net: nn.Module, x: torch.Tensor) -> float:
        with self.rt.autocast():
            loss = net(x)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss.float().item()


def _restore(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, device) -> _State:
    ckpt = load_checkpoint(path, device)
    try:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        return _State(**ckpt["state"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line),
                      str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
        raise TrainingError(f"{path} does not fit the model run.yaml describes ({detail}); "
                            "resume needs the model config the run was trained with: undo "
                            "the edit, or start a new run") from None
