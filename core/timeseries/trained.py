"""A finished run's time-series model as scoring needs it: the checkpoint's training config,
channel names and normaliser, and the run's channel scales, threshold and fused parts (its
scoring.json, and pca.npz when the run fused a PCA).
A scoring run and an export both read it, so new data is scored exactly as the run scored its
own: with the training statistics, never with statistics of the new data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.config import from_dict
from core.errors import DataError
from core.fileio import read_json
from core.timeseries.baselines import PCAFit
from core.timeseries.config import PatchTSTConfig
from core.timeseries.files import SeriesFiles
from core.timeseries.patchtst import PatchTST
from core.timeseries.scoring import (Fusion, channel_errors, fuse, reconstruction_parts,
                                     smoothed_terms, smoothing_terms)
from core.timeseries.windows import Normalizer

STREAM = "patchtst"


@dataclass
class TrainedSeries:
    """What turns raw rows (T, C) into the run's step scores."""
    run_dir: Path
    model: PatchTST
    cfg: PatchTSTConfig  # the training config: window, score settings
    channels: list[str]  # C names, in the order the model takes them
    normalizer: Normalizer
    scale: np.ndarray  # (C,) float32: each channel's error divisor (scoring.json)
    threshold: float  # a step score above it is flagged
    percentile: float  # of the validation scores, where the threshold sits
    pca: PCAFit | None = None  # fused into the score (score.fuse_pca), fitted on training rows
    units: dict[str, tuple[float, float]] | None = None  # each fused term's validation unit
    normal: dict[str, float] | None = None  # each channel's mean scaled error on validation
    top_quantile: float = 0.0  # > 0: the run's score has a `top_channels` part
    long_window: int = 0  # > 0: the run also smoothed each part over this many steps
    fusion: Fusion = Fusion()  # how the run fused its terms (scoring.json's `fusion`)

    @property
    def window(self) -> int:
        return self.cfg.data.window

    def errors(self, normalised: np.ndarray, device: torch.device,
               should_stop: Callable[[], bool] = lambda: False) -> np.ndarray:
        """Rows standardised by `normalizer` (T, C) → per-channel error (T, C) float32 in units
        of `scale`."""
        errors = channel_errors(self.model, normalised, self.cfg.score, device, should_stop)
        return errors / self.scale

    def parts(self, normalised: np.ndarray, errors: np.ndarray) -> dict[str, np.ndarray]:
        """Standardised rows (T, C) and their scaled errors (T, C) → each part's point-wise
        score (T,): the reconstruction (the capped mean over channels), when the run had them its
        top channels (a quantile over channels) and the PCA's residual."""
        parts = reconstruction_parts(errors, self.cfg.score.channel_cap, self.top_quantile)
        if self.pca is not None:
            parts["pca"] = self.pca.scores(normalised)
        return parts

    def score(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """Point-wise parts → the run's post-processed score (T,): each part smoothed (at the
        run's one or two time scales), then fused in the run's own validation units when that
        makes several terms, as the run's `fusion` says."""
        terms = smoothed_terms(parts, self.cfg.score.smooth, self.long_window)
        return (fuse(terms, self.units, self.fusion) if len(terms) > 1
                else terms["reconstruction"])


def load_trained(run_dir: Path) -> TrainedSeries:
    """The time-series model of the finished run `run_dir`, on the CPU (scoring moves it);
    DataError naming the file when the run trained or scored no time-series model."""
    from core.timeseries.stages import load_model
    run_dir = Path(run_dir)
    out = SeriesFiles(run_dir / STREAM)
    scoring = read_json(out.scoring)
    if not out.checkpoint.is_file() or not isinstance(scoring, dict):
        raise DataError(f"run {run_dir.name}: expected a trained and scored time-series model "
                        f"({STREAM}/{out.checkpoint.name} and {STREAM}/{out.scoring.name}), "
                        f"found none")
    model, extra = load_model(out.dir)
    ceiling = scoring.get("log_var_ceiling")  # runs before the ceiling, or without a head: none
    cfg = from_dict(PatchTSTConfig, extra["config"], STREAM)
    channels = [str(c) for c in extra["channels"]]
    by_name = scoring.get("channel_scale") or {}
    if sorted(by_name) != sorted(channels):
        raise DataError(f"run {run_dir.name}: {STREAM}/scoring.json holds channel scales for "
                        f"{sorted(by_name)}, expected the model's channels {channels}")
    if ceiling is not None:
        model.log_var_ceiling = torch.tensor([ceiling[c] for c in channels], dtype=torch.float32)
    parts = scoring.get("parts") or ["reconstruction"]
    long_window = int(scoring.get("smooth_long") or 0)  # runs before the second scale: none
    terms = list(smoothing_terms(parts, cfg.score.smooth, long_window))
    return TrainedSeries(run_dir, model, cfg, channels, Normalizer.from_dict(extra["normalizer"]),
                         np.array([by_name[c] for c in channels], np.float32),
                         float(scoring["threshold"]), float(scoring["percentile"]),
                         _fused_pca(run_dir, parts), _units(run_dir, scoring, terms),
                         scoring.get("channel_normal"),
                         cfg.score.top_quantile if "top_channels" in parts else 0.0, long_window,
                         Fusion.from_dict(scoring.get("fusion")))  # before it: the plain mean


def _fused_pca(run_dir: Path, parts: list[str]) -> PCAFit | None:
    """The PCA the run fused into its score (pca.npz), None when it fused none."""
    if "pca" not in parts:
        return None
    path = SeriesFiles(run_dir / STREAM).pca
    if not path.is_file():
        raise DataError(f"run {run_dir.name}: its score fuses a PCA, but {STREAM}/{path.name} "
                        f"is missing")
    with np.load(path) as npz:
        return PCAFit(npz["mean"], npz["axes"])


def _units(run_dir: Path, scoring: dict, terms: list[str]
           ) -> dict[str, tuple[float, float]] | None:
    """Each fused term's validation unit (scoring.json's log_units), None for a run whose score
    is the reconstruction alone at one time scale."""
    if len(terms) == 1:
        return None
    units = scoring.get("log_units") or {}
    if sorted(units) != sorted(terms):
        raise DataError(f"run {run_dir.name}: its score fuses {terms}, but {STREAM}/scoring.json "
                        f"holds log_units for {sorted(units)}")
    return {name: (float(m), float(s)) for name, (m, s) in units.items()}
