"""Anomaly scores per time step from PatchTST reconstruction error.

Windows slide over the (normalised) series every `stride` rows; each window's squared error per
time step and channel is added into a (T, C) accumulator and divided by how many windows covered
that step. Memory stays bounded by one batch of windows plus the (T, C) result.

Modes: `masked` reconstructs each window K times with complementary masks, so every patch is
predicted from its visible context and counted once (staggered over channels, so that a
cross-channel model sees the other channels at a hidden moment); `full` reconstructs with nothing hidden."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy.ndimage import uniform_filter1d

from core.errors import StopRequested
from core.masking import masked_error
from core.timeseries.config import TSScoreConfig
from core.timeseries.patchtst import PatchTST, staggered_masks
from core.timeseries.windows import gather_windows, window_starts


def window_errors(model: PatchTST, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Squared reconstruction error (B, L, C) of windows x (B, L, C), over the predicted variance
    when the model has a variance head (`PatchTST.errors`)."""
    return per_window(model.errors, model, x, mode)


def per_window(measure: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
               model: PatchTST, x: torch.Tensor, mode: str) -> torch.Tensor:
    """measure(x, mask) → (B, L, C) of windows x (B, L, C) as scoring takes it: with nothing
    hidden (`full`), or (`masked`) each value from the one complementary mask that hides it."""
    if mode == "full":
        return measure(x, None)
    B, L, C = x.shape
    masks = staggered_masks(model.n_patches, model.cfg.mask_ratio, C).to(x.device)  # (K, C, N)
    return masked_error(  # a mask's pattern is the same in every window
        masks, lambda mask: measure(x, mask.repeat(B, 1)),
        lambda mask: mask.repeat_interleave(model.cfg.patch_len, dim=1).T)  # (L, C)


def score_batch_size(cfg: TSScoreConfig, device: torch.device) -> int:
    """Windows per scoring batch: the configured size, or by device when it is 0. On a CPU small
    batches stay in cache (32 windows: 1.6x the windows/s of 256, `benchmarks/score_scale.py`);
    a GPU wants large ones."""
    return cfg.batch_size or (256 if device.type == "cuda" else 32)


def channel_errors(model: PatchTST, values: np.ndarray, cfg: TSScoreConfig,
                   device: torch.device, should_stop: Callable[[], bool] = lambda: False
                   ) -> np.ndarray:
    """Per-step, per-channel reconstruction error (T, C) float32 of a normalised series (T, C),
    averaged over the windows that cover each step. In fp32 whatever the training precision,
    as the exported model.onnx computes it."""
    return step_means(model.errors, model, values, cfg, device, should_stop)


def set_log_var_ceiling(model: PatchTST, val: np.ndarray, cfg: TSScoreConfig,
                        device: torch.device, should_stop: Callable[[], bool] = lambda: False
                        ) -> np.ndarray | None:
    """Cap what the variance head may discount: each channel's predicted log-variance on the
    normal validation rows (T_val, C), per step, at the `cfg.variance_ceiling` quantile, set
    as `model.log_var_ceiling` and returned (C,). Without a head or a ceiling: None, unset.

    Trained longer, the head learns that unfamiliar moments are hard to predict and so would
    excuse an anomaly's error; the ceiling lets it excuse no more than on normal data."""
    model.log_var_ceiling = None
    if model.log_var_head is None or cfg.variance_ceiling == 0:
        return None
    log_var = step_means(model.log_variances, model, val, cfg, device, should_stop)  # (T, C)
    ceiling = np.quantile(log_var, cfg.variance_ceiling, axis=0).astype(np.float32)  # (C,)
    model.log_var_ceiling = torch.from_numpy(ceiling)
    return ceiling


@torch.no_grad()
def step_means(measure: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
               model: PatchTST, values: np.ndarray, cfg: TSScoreConfig, device: torch.device,
               should_stop: Callable[[], bool]) -> np.ndarray:
    """`per_window` measure of windows every `cfg.stride` rows over a normalised series
    (T, C), averaged over the windows that cover each step: (T, C) float32."""
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
        err = per_window(measure, model, x, cfg.mode).cpu().double()  # (B, L, C)
        rows = (batch[:, None] + offsets).reshape(-1)  # (B*L,)
        total.index_add_(0, rows, err.reshape(-1, err.shape[-1]))
        count.index_add_(0, rows, torch.ones(len(rows), dtype=torch.float64))
    total /= count[:, None]  # in place: no second (T, C) float64 array at the peak
    return total.float().numpy()


def channel_scale(val_errors: np.ndarray, normalize: bool, floor: float) -> np.ndarray:
    """(C,) divisor of each channel's error (T_val, C): its mean error on normal validation data,
    raised to at least `floor` times the median channel's, so a channel that was (nearly)
    constant in training cannot turn a small change into a huge score. Ones when not
    normalising."""
    if not normalize:
        return np.ones(val_errors.shape[1], dtype=np.float32)
    mean = val_errors.mean(axis=0).astype(np.float64)  # (C,)
    return np.maximum(mean, max(floor * np.median(mean), 1e-8)).astype(np.float32)


def step_scores(errors: np.ndarray, cap: float = 0.0) -> np.ndarray:
    """(T, C) channel errors → (T,) anomaly score: the mean over channels, each channel counting
    at most `cap` (0: no cap), so one channel alone cannot drown the others."""
    return (np.minimum(errors, cap) if cap > 0 else errors).mean(axis=1)


def top_channel_scores(errors: np.ndarray, quantile: float) -> np.ndarray:
    """(T, C) scaled channel errors → (T,) each step's `quantile` over its channels, uncapped:
    how far the most-erring channels are (at 0.95 about the 3rd largest of 38 channels, near the
    largest of 8), however far, where `step_scores`' cap stops counting. On many channels one
    channel alone cannot raise it."""
    return np.quantile(errors, quantile, axis=1)


def reconstruction_parts(errors: np.ndarray, cap: float, top_quantile: float
                         ) -> dict[str, np.ndarray]:
    """(T, C) scaled channel errors → the reconstruction's point-wise parts of the score, each
    (T,): `reconstruction` (the capped mean, `step_scores`) and, when top_quantile > 0,
    `top_channels` (`top_channel_scores`)."""
    parts = {"reconstruction": step_scores(errors, cap)}
    if top_quantile > 0:
        parts["top_channels"] = top_channel_scores(errors, top_quantile)
    return parts


def paired_reconstruction_parts(val_errors: np.ndarray, errors: np.ndarray, cfg: TSScoreConfig
                                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Scaled validation (T_val, C) and target (T, C) errors → {part: ((T_val,), (T,))}, the
    `reconstruction_parts` of both with the score config's cap and top quantile."""
    val, target = (reconstruction_parts(e, cfg.channel_cap, cfg.top_quantile)
                   for e in (val_errors, errors))
    return {name: (val[name], target[name]) for name in target}


def smooth(scores: np.ndarray, window: int) -> np.ndarray:
    """(T,) → (T,) centred moving mean over `window` steps (1: unchanged), edges padded with the
    first and last value: an anomaly lasts several steps, a noise spike does not. The same
    function post-processes the model's and the baselines' scores."""
    if window <= 1:
        return np.asarray(scores, dtype=np.float64)
    return uniform_filter1d(np.asarray(scores, dtype=np.float64), window, mode="nearest")


LOG_EPS = 1e-12  # scores are ≥ 0; the log of an exact zero stays finite


def log_standard(val: np.ndarray) -> tuple[float, float]:
    """Mean and std of log(score) over a detector's validation scores (T_val,): the unit in which
    `standardised` measures its scores on other data (std at least 1e-6: a flat validation score
    does not divide by zero)."""
    logs = np.log(np.asarray(val, dtype=np.float64) + LOG_EPS)
    return float(logs.mean()), max(float(logs.std()), 1e-6)


def standardised(scores: np.ndarray, unit: tuple[float, float]) -> np.ndarray:
    """(T,) scores → (T,) log scores in standard deviations from the validation mean."""
    mean, std = unit
    return (np.log(np.asarray(scores, dtype=np.float64) + LOG_EPS) - mean) / std


def part_of(term: str) -> str:
    """The part a term smooths: `pca@50` → `pca` (`smoothing_terms` names them so)."""
    return term.partition("@")[0]


@dataclass(frozen=True)
class Fusion:
    """How `fuse` combines a detector's standardised terms (each a log score in standard
    deviations from its validation mean): each counts at least `floor` (None: no floor), so a
    term quieter than on normal data cannot cancel another term's evidence, and a term of part
    p weighs `weights.get(p, 1)` in the mean. Fusion() is the plain mean."""
    floor: float | None = None
    weights: dict[str, float] = field(default_factory=dict)  # part → weight; others weigh 1

    @classmethod
    def of_config(cls, cfg: TSScoreConfig) -> Fusion:
        """The configured fusion: `fuse_floor`, and `pca_weight` on the PCA part's terms."""
        return cls(cfg.fuse_floor, {"pca": cfg.pca_weight})

    @classmethod
    def from_dict(cls, saved: dict | None) -> Fusion:
        """From scoring.json's `fusion`; a run scored before it was recorded: Fusion()."""
        saved = saved or {}
        return cls(saved.get("floor"), dict(saved.get("weights") or {}))

    def to_dict(self) -> dict:
        return {"floor": self.floor, "weights": dict(self.weights)}


def fuse(smoothed: dict[str, np.ndarray], units: dict[str, tuple[float, float]],
         fusion: Fusion = Fusion()) -> np.ndarray:
    """Smoothed (T,) scores of several terms → (T,) the `fusion`'s weighted mean of their
    `standardised` logs (each at least its floor), each in its own term's validation `units`
    (so scoring new data uses the model run's units)."""
    z = np.array([standardised(scores, units[name]) for name, scores in smoothed.items()])
    if fusion.floor is not None:
        z = np.maximum(z, fusion.floor)  # (terms, T)
    weights = [fusion.weights.get(part_of(name), 1.0) for name in smoothed]
    return np.average(z, axis=0, weights=weights)


LONG_WINDOWS_NEEDED = 10  # validation rows per step of the long window, at the least


def usable_long_window(long_window: int, val_rows: int) -> int:
    """The second time scale a run can use: `long_window`, or 0 (one scale) when the validation
    split holds fewer than LONG_WINDOWS_NEEDED such windows. Its unit on normal data would then
    rest on a few stretches, too narrow a spread, and that one term could drown the others."""
    return long_window if val_rows >= LONG_WINDOWS_NEEDED * long_window else 0


def smoothing_terms(parts: list[str], window: int, long_window: int = 0
                    ) -> dict[str, tuple[str, int]]:
    """The terms a detector fuses, {term: (part, moving-mean window)}: each part over `window`
    steps, named as the part, and when long_window > 0 also over `long_window` steps, named
    `part@long_window`."""
    terms = {name: (name, window) for name in parts}
    if long_window > 0:
        terms |= {f"{name}@{long_window}": (name, long_window) for name in parts}
    return terms


def smoothed_terms(parts: dict[str, np.ndarray], window: int, long_window: int = 0
                   ) -> dict[str, np.ndarray]:
    """Point-wise parts {name: (T,)} → their `smoothing_terms`, {term: (T,)} smoothed."""
    return {term: smooth(parts[name], w)
            for term, (name, w) in smoothing_terms(list(parts), window, long_window).items()}


def detector_scores(parts: dict[str, tuple[np.ndarray, np.ndarray]], window: int,
                    long_window: int = 0, fusion: Fusion = Fusion()
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[float, float]]]:
    """The detector's (validation, target) scores from its parts' point-wise (val (T_val,),
    target (T,)) scores: each part smoothed over `window` steps (and over `long_window` too when
    it is > 0: `smoothed_terms`); a single term is the score itself, several are `fuse`d (as
    `fusion` says) in units of their validation scores, so detectors in different units, or one
    detector at two time scales, weigh alike and a term that fails on some data cannot silence
    the other. Also returns each term's validation unit (empty for one term)."""
    val = smoothed_terms({name: v for name, (v, _) in parts.items()}, window, long_window)
    target = smoothed_terms({name: t for name, (_, t) in parts.items()}, window, long_window)
    if len(target) == 1:
        (name,) = target
        return val[name], target[name], {}
    units = {name: log_standard(v) for name, v in val.items()}
    return fuse(val, units, fusion), fuse(target, units, fusion), units
