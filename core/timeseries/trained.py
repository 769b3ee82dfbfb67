"""A finished run's time-series model as scoring needs it: the checkpoint's training config,
channel names and normaliser, and the run's channel scales and threshold (its scoring.json).
A scoring run and an export both read it, so new data is scored exactly as the run scored its
own: with the training statistics, never with statistics of the new data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from core.config import PatchTSTConfig, from_dict
from core.devices import Runtime
from core.errors import DataError
from core.fileio import read_json
from core.timeseries.patchtst import PatchTST
from core.timeseries.scoring import channel_errors, smooth, step_scores
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

    @property
    def window(self) -> int:
        return self.cfg.data.window

    def errors(self, values: np.ndarray, rt: Runtime,
               should_stop: Callable[[], bool] = lambda: False) -> np.ndarray:
        """Raw rows (T, C) → per-channel error (T, C) float32 in units of `scale`."""
        normalised = self.normalizer(values)  # (T, C)
        return channel_errors(self.model, normalised, self.cfg.score, rt, should_stop) / self.scale

    def scores(self, errors: np.ndarray) -> np.ndarray:
        """Scaled errors (T, C) → the run's step score (T,): the capped mean over channels,
        then the centred moving mean."""
        return smooth(step_scores(errors, self.cfg.score.channel_cap), self.cfg.score.smooth)


def load_trained(run_dir: Path) -> TrainedSeries:
    """The time-series model of the finished run `run_dir`, on the CPU (scoring moves it);
    DataError naming the file when the run trained or scored no time-series model."""
    from core.timeseries.stages import load_model
    run_dir = Path(run_dir)
    out = run_dir / STREAM
    scoring = read_json(out / "scoring.json")
    if not (out / "best.pt").is_file() or not isinstance(scoring, dict):
        raise DataError(f"run {run_dir.name}: expected a trained and scored time-series model "
                        f"({STREAM}/best.pt and {STREAM}/scoring.json), found none")
    model, extra = load_model(out)
    cfg = from_dict(PatchTSTConfig, extra["config"], STREAM)
    channels = [str(c) for c in extra["channels"]]
    by_name = scoring.get("channel_scale") or {}
    if sorted(by_name) != sorted(channels):
        raise DataError(f"run {run_dir.name}: {STREAM}/scoring.json holds channel scales for "
                        f"{sorted(by_name)}, expected the model's channels {channels}")
    return TrainedSeries(run_dir, model, cfg, channels, Normalizer.from_dict(extra["normalizer"]),
                         np.array([by_name[c] for c in channels], np.float32),
                         float(scoring["threshold"]), float(scoring["percentile"]))
