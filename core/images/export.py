"""The image stream's export: Swin MAE's smoothed anomaly maps as model.onnx, the rest of the
scoring recipe (image size and mode, normal-map statistics, score method, threshold) as
model.json, and `export_predict.py` as predict.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from core.images.config import ImageScoreConfig
from core.onnx_export import to_onnx
from core.fileio import write_json
from core.images.scoring import anomaly_maps
from core.images.trained import STREAM, TrainedImages, load_trained

PREDICT = Path(__file__).with_name("export_predict.py")


class AnomalyMaps(nn.Module):
    """Images (B, C, S, S) in [0, 1] → smoothed anomaly maps (B, S, S), as scoring computes
    them (`score.mode`: masked images use the same fixed block masks)."""

    def __init__(self, model: nn.Module, cfg: ImageScoreConfig):
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return anomaly_maps(self.model, images, self.cfg)


def spec(trained: TrainedImages) -> dict:
    """model.json: what predict.py needs beside the network."""
    sc, normal = trained.cfg.score, trained.normal
    return {"stream": STREAM, "from_run": trained.run_dir.name,
            "image_size": trained.cfg.model.image_size, "channels": trained.channels,
            "mode": "L" if trained.channels == 1 else "RGB", "resize": trained.cfg.data.resize,
            "score_mode": sc.mode, "image_score": sc.image_score, "topk": sc.topk,
            "batch_size": sc.batch_size, "threshold": trained.threshold,
            "threshold_percentile": trained.percentile,
            "normal_map": {"mean": normal.mean.tolist(), "std": normal.std.tolist(),
                           "two_sided": normal.two_sided, "images": trained.normalized_by}
            if normal is not None else None}


def export(run_dir: Path, folder: Path) -> None:
    trained = load_trained(run_dir)
    size = trained.cfg.model.image_size
    example = torch.rand(2, trained.channels, size, size)  # (B, C, S, S)
    with torch.no_grad():
        to_onnx(AnomalyMaps(trained.model, trained.cfg.score), example, folder / "model.onnx",
                "images", "maps")
    write_json(folder / "model.json", spec(trained))
    shutil.copyfile(PREDICT, folder / "predict.py")
