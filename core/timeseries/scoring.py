"""Anomaly scores per time step from PatchTST reconstruction error.

Windows slide over the (normalised) series every `stride` rows; each window's squared error per
time step and channel is added into a (T, C) accumulator and divided by how many windows covered
that step. Memory stays bounded by one batch of windows plus the (T, C) result.

Modes: `masked` reconstructs each window K times with complementary masks, so every patch is
predicted from its visible context and counted once; `full` reconstructs with nothing hidden."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from core.config import TSScoreConfig
from core.devices import Runtime
from core.errors import StopRequested
from core.timeseries.patchtst import PatchTST, complementary_masks
from core.timeseries.windows import gather_windows, window_starts


def window_errors(model: PatchTST, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Squared reconstruction error (B, L, C) of windows x (B, L, C)."""
    if mode == "full":
        return (model(x).float() - x).pow(2)
    B, L, C = x.shape
    masks = complementary_masks(model.n_patches, model.cfg.mask_ratio).to(x.device)  # (K, N)
    err = torch.zeros_like(x)
    for mask in masks:
        hidden_steps = mask.repeat_interleave(model.cfg.patch_len)  # (L,)
        pred = model(x, mask.expand(B * C, -1))  # the same patches hidden in every series
        err += (pred.float() - x).pow(2) * hidden_steps[None, :, None]
    return err


def score_batch_size(cfg: TSScoreConfig, device: torch.device) -> int:
    """Windows per scoring batch: the configured size, or by device when it is 0. On a CPU small
    batches stay in cache (32 windows: 1.6x the windows/s of 256, `benchmarks/score_scale.py`);
    a GPU wants large ones."""
    return cfg.batch_size or (256 if device.type == "cuda" else 32)


@torch.no_grad()
def channel_errors(model: PatchTST, values: np.ndarray, cfg: TSScoreConfig,
                   rt: Runtime, should_stop: Callable[[], bool] = lambda: False) -> np.ndarray:
    """Per-step, per-channel reconstruction error (T, C) float32 of a normalised series (T, C),
    averaged over the windows that cover each step."""
    device = rt.device
    model.eval().to(device)
    window = model.n_patches * model.cfg.patch_len
    series = torch.from_numpy(values)
    starts = torch.from_numpy(window_starts(len(values), window, cfg.stride))
    total = torch.zeros(series.shape, dtype=torch.float64)  # (T, C)
    count = torch.zeros(len(values), dtype=torch.float64)  # (T,)
    offsets = torch.arange(window)
    batch_size = score_batch_size(cfg, device)
    for i in range(0, len(starts), batch_size):
        if should_stop():
            raise StopRequested("stopped while scoring")
        batch = starts[i:i + batch_size]
        x = gather_windows(series, batch, window).to(device, non_blocking=True)
        with rt.autocast():
            err = window_errors(model, x, cfg.mode).cpu().double()  # (B, L, C)
        rows = (batch[:, None] + offsets).reshape(-1)  # (B*L,)
        total.index_add_(0, rows, err.reshape(-1, err.shape[-1]))
        count.index_add_(0, rows, torch.ones(len(rows), dtype=torch.float64))
    total /= count[:, None]  # in place: no second (T, C) float64 array at the peak
    return total.float().numpy()


def channel_scale(val_errors: np.ndarray, normalize: bool) -> np.ndarray:
    """(C,) divisor of each channel's error: its mean error on normal validation data, or ones."""
    if not normalize:
        return np.ones(val_errors.shape[1], dtype=np.float32)
    return (val_errors.mean(axis=0) + 1e-8).astype(np.float32)


def step_scores(errors: np.ndarray) -> np.ndarray:
    """(T, C) channel errors → (T,) anomaly score: the mean over channels."""
    return errors.mean(axis=1)
