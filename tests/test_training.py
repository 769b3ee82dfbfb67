"""Tests of core/training.py: the LR schedule, and `fit` on tiny models: the loss falls, best and
last checkpoints load with weights_only, early stopping, a non-finite loss, a requested stop
with its checkpoint, and resuming (mid-run and after the end)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from core.config import TrainConfig, defaults
from core.errors import StopRequested, TrainingError
from core.run_files import StreamFiles
from core.timeseries.patchtst import PatchTST
from core.devices import Runtime, explain_oom
from core.timeseries.windows import epoch_order, window_batches, window_starts
from core.training import FitResult, fit, load_checkpoint, lr_at

CPU = Runtime(torch.device("cpu"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Recorder:
    """A Reporter that records every call; `stop_after` steps it asks the loop to stop."""

    def __init__(self, stop_after: int | None = None):
        self.steps: list[dict] = []
        self.epochs: list[dict] = []
        self.stop_after = stop_after
        self.n_calls = 0
        self.warnings: list[str] = []

    def step(self, **kw) -> None:
        self.steps.append(kw)

    def epoch(self, **kw) -> None:
        self.epochs.append(kw)

    def should_stop(self) -> bool:
        self.n_calls += 1
        return self.stop_after is not None and self.n_calls >= self.stop_after

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def resumed(self, **kw) -> None:
        self.resumed_at = kw


class LinearAE(nn.Module):
    """Smallest trainable model with the loop's interface: a linear map learning identity."""

    def __init__(self, dim: int = 4, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(dim, dim)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return (self.lin(x) - x).pow(2).mean()


def fixed_batches(n: int, dim: int = 4, size: int = 8, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(size, dim, generator=g) for _ in range(n)]


def train_cfg(**changes) -> TrainConfig:
    base = dict(epochs=4, batch_size=8, lr=0.05, weight_decay=0.0, warmup_frac=0.0,
                min_lr_frac=0.1, grad_clip=1.0, patience=0, log_every=1)
    return defaults("patchtst.train", **{**base, **changes})


def fit_linear(out_dir, reporter, model=None, resume=False, n_batches=5, rt=CPU, **cfg):
    train = fixed_batches(n_batches)
    val = fixed_batches(2, seed=99)
    return fit(model or LinearAE(), lambda epoch: iter(train), n_batches, lambda: iter(val),
               train_cfg(**cfg), rt, out_dir, {"note": "extra"}, reporter, resume=resume)


def params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


# ---------------------------------------------------------------- lr_at


def test_lr_warmup_rises_linearly_to_the_base_lr():
    total, base = 100, 1e-3
    warm = [lr_at(s, total, base, 0.1, 0.01) for s in range(10)]  # 10 warm-up steps
    np.testing.assert_allclose(warm, [base * (s + 1) / 10 for s in range(10)], rtol=1e-12)
    assert warm[0] > 0
    assert lr_at(10, total, base, 0.1, 0.01) == pytest.approx(base)  # the peak
    assert max(lr_at(s, total, base, 0.1, 0.01) for s in range(total)) == pytest.approx(base)


def test_lr_decays_monotonically_after_warmup():
    total, base = 100, 1e-3
    lrs = [lr_at(s, total, base, 0.1, 0.01) for s in range(10, total)]
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] < 0.05 * base
    # half-way through the cosine (steps 10..100 of 101) the lr is half-way between peak and floor
    assert lr_at(55, 101, base, 0.1, 0.01) == pytest.approx((base + 0.01 * base) / 2)


def test_lr_without_warmup_starts_at_base():
    assert lr_at(0, 50, 2e-3, 0.0, 0.1) == pytest.approx(2e-3)


@pytest.mark.parametrize("total, warmup_frac", [(100, 0.1), (20, 0.0)])
def test_lr_reaches_the_floor_at_the_last_step(total, warmup_frac):
    """Docstring: 'cosine down to min_lr_frac * base_lr at the last step'. fit calls lr_at with
    steps 0 .. total-1, so the last step is total - 1."""
    base, frac = 1e-3, 0.05
    assert lr_at(total - 1, total, base, warmup_frac, frac) == pytest.approx(frac * base,
                                                                             rel=1e-6)


def test_lr_stays_at_the_floor_past_the_end():
    assert lr_at(150, 100, 1e-3, 0.1, 0.05) == pytest.approx(0.05 * 1e-3)


# ---------------------------------------------------------------- fit: a real tiny model


def test_fit_patchtst_loss_falls_and_checkpoints_load(tmp_path):
    torch.manual_seed(0)
    window, n_channels = 32, 2
    mcfg = defaults("patchtst.model", patch_len=4, d_model=16, n_heads=2, n_layers=1,
                    d_ff=32, mask_ratio=0.4, decoder_dim=16, decoder_heads=2,
                    variance_head=False)  # the loss is the MSE, whose fall is asserted below
    model = PatchTST(mcfg, n_channels, window)
    t = np.arange(1200)[:, None]
    series = torch.from_numpy(np.sin(2 * np.pi * t / np.array([8.0, 12.0])).astype(np.float32))
    fit_part, val_part = series[:1000], series[1000:]
    fit_starts = window_starts(len(fit_part), window, 4)
    val_starts = window_starts(len(val_part), window, 8)
    cfg = train_cfg(epochs=6, batch_size=16, lr=2e-2, warmup_frac=0.1, min_lr_frac=0.1,
                    max_steps_per_epoch=15, log_every=5, weight_decay=0.01)
    rec = Recorder()
    result = fit(model,
                 lambda epoch: window_batches(fit_part, fit_starts[epoch_order(len(fit_starts),
                                                                              epoch, 0)],
                                              window, 16, 15),
                 15, lambda: window_batches(val_part, val_starts, window, 64), cfg, CPU,
                 tmp_path, {"n_channels": n_channels, "channels": ["a", "b"]}, rec)

    assert isinstance(result, FitResult)
    assert result.epochs_done == 6 and not result.early_stopped
    assert [e["epoch"] for e in rec.epochs] == [1, 2, 3, 4, 5, 6]
    # against the untrained model's loss (the first step's): the visible-only encoder learns
    # much of the task within the first epoch, so that epoch's mean is no fixed reference
    first, last = rec.steps[0]["loss"], rec.epochs[-1]["train_loss"]
    assert last < 0.5 * first, (first, last)
    assert rec.epochs[-1]["val_loss"] < 0.6 * rec.epochs[0]["val_loss"]
    assert all(math.isfinite(e["val_loss"]) for e in rec.epochs)
    # step reports: the first step, then every log_every steps (15 per epoch: 5, 10, 15 ...),
    # numbered globally
    assert [s["step"] for s in rec.steps] == [1, *range(5, 91, 5)]
    assert all(s["n_steps"] == 90 and s["lr"] > 0 for s in rec.steps)
    # best.pt: the best epoch's weights and the extra; loads with weights_only
    best = load_checkpoint(tmp_path / StreamFiles.checkpoint)
    assert best["epoch"] == result.best_epoch
    assert best["val_loss"] == pytest.approx(result.best_val_loss)
    assert result.best_val_loss == pytest.approx(min(e["val_loss"] for e in rec.epochs))
    assert best["extra"] == {"n_channels": 2, "channels": ["a", "b"]}
    again = PatchTST(mcfg, n_channels, window)
    again.load_state_dict(best["model"])
    last_ckpt = torch.load(tmp_path / StreamFiles.last, weights_only=True)
    assert last_ckpt["state"]["finished"] is True and last_ckpt["state"]["step"] == 90
    assert "optimizer" in last_ckpt and last_ckpt["epoch"] == 6
    for k, v in model.state_dict().items():
        assert torch.equal(last_ckpt["model"][k], v), k
    # no temp files
    assert sorted(p.name for p in tmp_path.iterdir()) == [StreamFiles.checkpoint, StreamFiles.last]


# ---------------------------------------------------------------- fit: stubs


class ValNeverImproves(nn.Module):
    """Trains fine, but its validation loss is a constant."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return (self.w - x.mean()).pow(2)
        return torch.tensor(1.0)


def test_early_stopping_after_patience_epochs(tmp_path):
    rec = Recorder()
    result = fit_linear(tmp_path, rec, model=ValNeverImproves(), epochs=10, patience=2)
    assert result.early_stopped is True
    assert result.epochs_done == 3  # epoch 1 sets the best, 2 and 3 do not improve
    assert result.best_epoch == 1 and result.best_val_loss == 1.0
    assert [e["best"] for e in rec.epochs] == [True, False, False]
    assert load_checkpoint(tmp_path / StreamFiles.last)["state"]["finished"] is True


def test_patience_zero_never_stops_early(tmp_path):
    result = fit_linear(tmp_path, Recorder(), model=ValNeverImproves(), epochs=5, patience=0)
    assert result.early_stopped is False and result.epochs_done == 5


class BadLossAtStep(nn.Module):
    """Its `bad_step`-th training loss (1-based, validation calls not counted) is `bad`."""

    def __init__(self, bad_step: int, bad: float):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.calls, self.bad_step, self.bad = 0, bad_step, bad

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        out = (self.w * x).pow(2).mean()
        if not self.training:
            return out
        self.calls += 1
        return out * self.bad if self.calls == self.bad_step else out


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_raises_naming_epoch_and_step(tmp_path, bad):
    rec = Recorder()
    with pytest.raises(TrainingError) as e:
        fit_linear(tmp_path, rec, model=BadLossAtStep(8, bad), n_batches=5)
    msg = str(e.value)
    assert "epoch 2" in msg and "step 8" in msg  # 5 steps per epoch: step 8 is in epoch 2
    assert "non-finite" in msg and str(bad) in msg
    assert len(rec.epochs) == 1 and len(rec.steps) == 7  # nothing reported for the bad step


def test_stop_request_saves_last_and_resume_finishes(tmp_path):
    rec = Recorder(stop_after=7)  # 5 steps per epoch: stop in epoch 2
    with pytest.raises(StopRequested) as e:
        fit_linear(tmp_path, rec, epochs=4)
    assert "epoch 2" in str(e.value) and "step 7" in str(e.value)
    assert (tmp_path / StreamFiles.last).exists()
    ckpt = load_checkpoint(tmp_path / StreamFiles.last)
    assert ckpt["state"]["epoch"] == 1 and ckpt["state"]["step"] == 7
    assert ckpt["state"]["finished"] is False
    assert [s["step"] for s in rec.steps] == list(range(1, 8))

    model = LinearAE(seed=123)  # other weights: resume must load the checkpoint's
    rec2 = Recorder()
    result = fit_linear(tmp_path, rec2, model=model, resume=True, epochs=4)
    for k, v in ckpt["model"].items():  # loaded, then trained on
        assert not torch.equal(model.state_dict()[k], v)
    assert result.epochs_done == 4 and not result.early_stopped
    assert [e["epoch"] for e in rec2.epochs] == [2, 3, 4]  # epoch 1 is not trained again
    assert rec2.steps[0]["epoch"] == 2 and rec2.steps[0]["step"] > 7  # the step count goes on
    # the resumed model starts from the checkpoint: its first loss is near the stopped run's
    fresh = LinearAE(seed=123).loss(fixed_batches(5)[0]).item()
    assert abs(rec2.steps[0]["loss"] - rec.steps[-1]["loss"]) < abs(fresh - rec.steps[-1]["loss"])
    assert load_checkpoint(tmp_path / StreamFiles.last)["state"]["finished"] is True


def test_resumed_run_ends_at_the_planned_step_count(tmp_path):
    """A run stopped mid-epoch and resumed takes epochs * n_batches optimizer steps in all, as
    an uninterrupted run does: reported steps never exceed n_steps (the console shows
    step/n_steps and an ETA from it), and the LR schedule is not run past its end."""
    with pytest.raises(StopRequested):
        fit_linear(tmp_path, Recorder(stop_after=7), epochs=4)
    rec = Recorder()
    fit_linear(tmp_path, rec, resume=True, epochs=4)
    n_steps = rec.steps[0]["n_steps"]
    assert n_steps == 20
    assert max(s["step"] for s in rec.steps) == n_steps
    assert load_checkpoint(tmp_path / StreamFiles.last)["state"]["step"] == n_steps


def test_resume_without_checkpoint_trains_from_scratch(tmp_path):
    rec = Recorder()
    result = fit_linear(tmp_path, rec, resume=True, epochs=2)
    assert result.epochs_done == 2 and rec.steps[0]["step"] == 1


def test_finished_run_resumed_does_not_train_again(tmp_path):
    first = fit_linear(tmp_path, Recorder(), epochs=3)
    ckpt = load_checkpoint(tmp_path / StreamFiles.last)
    model = LinearAE(seed=5)
    rec = Recorder()
    again = fit_linear(tmp_path, rec, model=model, resume=True, epochs=3)
    assert rec.steps == [] and rec.epochs == []
    assert again == first
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), k


def test_linear_fit_loss_falls(tmp_path):
    rec = Recorder()
    fit_linear(tmp_path, rec, epochs=6)
    assert rec.epochs[-1]["train_loss"] < 0.5 * rec.epochs[0]["train_loss"]
    assert rec.epochs[-1]["val_loss"] < rec.epochs[0]["val_loss"]


def test_stop_on_an_epochs_last_step_resumes_into_its_validation(tmp_path):
    """Stopped on step 10 of 5-step epochs: nothing of epoch 2 is left to train, yet it is
    validated and reported, with the training loss of the steps taken before the stop."""
    first = Recorder(stop_after=10)
    with pytest.raises(StopRequested):
        fit_linear(tmp_path, first, epochs=4)
    rec = Recorder()
    result = fit_linear(tmp_path, rec, resume=True, epochs=4)
    assert result.epochs_done == 4
    assert [e["epoch"] for e in rec.epochs] == [2, 3, 4]
    epoch2 = [s["loss"] for s in first.steps if s["epoch"] == 2]
    assert len(epoch2) == 5 and rec.epochs[0]["train_loss"] == pytest.approx(sum(epoch2) / 5)


# ---------------------------------------------------------------- precision, compile, OOM

@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_fp16_keeps_its_loss_scale(tmp_path, precision):
    """The autocast path CUDA takes, run on the CPU: the loss falls; fp16 uses a GradScaler
    whose state is checkpointed for resume."""
    rec = Recorder()
    fit_linear(tmp_path, rec, rt=Runtime(CPU.device, precision), epochs=6)
    assert rec.epochs[-1]["train_loss"] < 0.5 * rec.epochs[0]["train_loss"]
    scaler = load_checkpoint(tmp_path / StreamFiles.last)["scaler"]
    assert (scaler["scale"] > 0) if precision == "fp16" else scaler == {}


class BrokenCompiled(nn.Module):
    """What torch.compile returns when compilation fails: it raises on the first call."""

    def __init__(self, module):
        super().__init__()

    def forward(self, x):
        raise RuntimeError("backend compiler failed")


def test_compile_failure_falls_back_to_eager_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", BrokenCompiled)
    rec = Recorder()
    fit_linear(tmp_path, rec, rt=Runtime(CPU.device, compile=True), epochs=6)
    assert len(rec.warnings) == 1 and "torch.compile failed" in rec.warnings[0]
    assert "backend compiler failed" in rec.warnings[0]
    assert rec.epochs[-1]["train_loss"] < 0.5 * rec.epochs[0]["train_loss"]


def test_compile_unavailable_trains_uncompiled(tmp_path, monkeypatch):
    def unavailable(module):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", unavailable)
    rec = Recorder()
    fit_linear(tmp_path, rec, rt=Runtime(CPU.device, compile=True), epochs=2)
    assert rec.warnings == ["torch.compile unavailable (RuntimeError: Dynamo is not supported "
                            "on this Python); training uncompiled"]
    assert len(rec.epochs) == 2


class OutOfMemoryAtStep(LinearAE):
    def __init__(self, step: int):
        super().__init__()
        self.step, self.calls = step, 0

    def loss(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.step:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().loss(x)


def test_out_of_memory_says_what_to_lower_and_keeps_the_checkpoints(tmp_path):
    with pytest.raises(TrainingError) as e, explain_oom("training Swin MAE",
                                                        "lower swinmae.train.batch_size (now 16)"):
        fit_linear(tmp_path, Recorder(), model=OutOfMemoryAtStep(8), epochs=4)
    assert str(e.value) == ("the GPU ran out of memory training Swin MAE; lower "
                            "swinmae.train.batch_size (now 16), then start a new run (the "
                            "checkpoints this run wrote so far are kept)")
    # epoch 1's, for a look
    assert load_checkpoint(tmp_path / StreamFiles.last)["state"]["epoch"] == 1
    assert (tmp_path / StreamFiles.checkpoint).exists()
