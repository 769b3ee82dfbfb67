"""From a loaded series to model input: normalisation fitted on train, the train/validation
split, window start positions and batches of windows. No DataLoader: a batch is one gather from
the series tensor, far cheaper than collating single windows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from core.errors import DataError
from core.timeseries.channels import STD_FLOOR



@dataclass
class Normalizer:
    """Per-channel standardisation with statistics of the training data; saved with the model."""
    mean: np.ndarray  # (C,) float32
    std: np.ndarray  # (C,) float32, at least STD_FLOOR

    @classmethod
    def fit(cls, values: np.ndarray) -> "Normalizer":
        std = np.maximum(values.std(axis=0), STD_FLOOR)
        return cls(values.mean(axis=0).astype(np.float32), std.astype(np.float32))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": torch.from_numpy(self.mean), "std": torch.from_numpy(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def split_train_val(values: np.ndarray, val_fraction: float, window: int,
                    source: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, C) → the first and the last `val_fraction` of the rows; each must hold a window."""
    n_val = int(round(len(values) * val_fraction))
    if len(values) - n_val < window or n_val < window:
        need = int(np.ceil(window / val_fraction))  # val_fraction <= 0.5: the val part binds
        raise DataError(
            f"{source}: {len(values)} rows are too few for window {window} with validation "
            f"fraction {val_fraction}: expected at least {need} rows; add data or lower "
            "patchtst.data.window")
    return values[:-n_val], values[-n_val:]


def window_starts(n_rows: int, window: int, stride: int) -> np.ndarray:
    """Start rows of windows every `stride` rows (at most `window`, so no row falls between two
    windows); the last window always ends at the last row, so every row is covered."""
    if n_rows < window:
        raise ValueError(f"{n_rows} rows are fewer than one window of {window}")
    starts = np.arange(0, n_rows - window + 1, min(stride, window))
    if starts[-1] != n_rows - window:
        starts = np.append(starts, n_rows - window)
    return starts


def gather_windows(series: torch.Tensor, starts: torch.Tensor, window: int) -> torch.Tensor:
    """series (T, C), starts (B,) → windows (B, L, C) with L = window, on the series' device."""
    starts = starts.to(series.device)
    index = starts[:, None] + torch.arange(window, device=series.device)  # (B, L)
    return series[index]


def epoch_order(n: int, epoch: int, seed: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """Indices of this rank's share of `n` training windows for `epoch`, shuffled: every rank
    draws the same permutation and takes an equal, disjoint share (a DistributedSampler)."""
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True,
                                 seed=seed, drop_last=world > 1)
    sampler.set_epoch(epoch)
    return np.fromiter(sampler, dtype=np.int64, count=len(sampler))


def window_batches(series: torch.Tensor, starts: np.ndarray, window: int, batch_size: int,
                   limit: int = 0) -> Iterator[torch.Tensor]:
    """Batches (B, L, C) of the windows at `starts`, in that order; `limit` > 0 caps the number
    of batches."""
    order = torch.as_tensor(starts)
    for i in range(n_batches_of(len(order), batch_size, limit)):
        yield gather_windows(series, order[i * batch_size:(i + 1) * batch_size], window)


def n_batches_of(n_windows: int, batch_size: int, limit: int = 0) -> int:
    n = -(-n_windows // batch_size)
    return min(n, limit) if limit else n
