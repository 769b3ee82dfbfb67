"""The time-series stream's export: PatchTST's window reconstruction error as model.onnx, the
rest of the scoring recipe as model.json, and `export_predict.py` as predict.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from core.onnx_export import to_onnx
from core.fileio import write_json
from core.timeseries.scoring import score_batch_size, window_errors
from core.timeseries.trained import STREAM, TrainedSeries, load_trained

PREDICT = Path(__file__).with_name("export_predict.py")


class WindowErrors(nn.Module):
    """Normalised windows (B, L, C) → squared reconstruction error (B, L, C), computed as
    scoring computes it (`score.mode`: masked windows use the same fixed masks)."""

    def __init__(self, model: nn.Module, mode: str):
        super().__init__()
        self.model, self.mode = model, mode

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return window_errors(self.model, windows, self.mode)


def spec(trained: TrainedSeries) -> dict:
    """model.json: what predict.py needs beside the network."""
    sc = trained.cfg.score
    return {"stream": STREAM, "from_run": trained.run_dir.name, "channels": trained.channels,
            "normalizer": {"mean": trained.normalizer.mean.tolist(),
                           "std": trained.normalizer.std.tolist()},
            "window": trained.window, "stride": sc.stride, "patch_len": trained.cfg.model.patch_len,
            "mode": sc.mode, "batch_size": score_batch_size(sc, torch.device("cpu")),
            "channel_scale": trained.scale.tolist(), "channel_cap": sc.channel_cap,
            "channel_normal": trained.normal, "top_quantile": trained.top_quantile,
            "smooth": sc.smooth, "smooth_long": trained.long_window,
            "threshold": trained.threshold,
            "threshold_percentile": trained.percentile,
            "pca": None if trained.pca is None else {"mean": trained.pca.mean.tolist(),
                                                     "axes": trained.pca.axes.tolist()},
            "log_units": trained.units or {}, "fusion": trained.fusion.to_dict()}


def export(run_dir: Path, folder: Path) -> None:
    trained = load_trained(run_dir)
    example = torch.zeros(2, trained.window, len(trained.channels))  # (B, L, C)
    with torch.no_grad():
        to_onnx(WindowErrors(trained.model, trained.cfg.score.mode), example,
                folder / "model.onnx", "windows", ["errors"])
    write_json(folder / "model.json", spec(trained))
    shutil.copyfile(PREDICT, folder / "predict.py")
