"""The image stream's export: Swin MAE's smoothed anomaly maps as model.onnx, the rest of the
scoring recipe (image size and mode, normal-map statistics, score method, threshold) as
model.json (with normal_maps.npz when each image is measured against its nearest normal
images), and `export_predict.py` as predict.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.images.config import ImageScoreConfig
from core.onnx_export import to_onnx
from core.fileio import atomic_path, write_json
from core.images.scoring import THUMB, NearestNormal, NormalReference, anomaly_maps
from core.images.trained import STREAM, TrainedImages, load_trained

PREDICT = Path(__file__).with_name("export_predict.py")
NORMAL_MAPS = "normal_maps.npz"  # beside model.json when images are measured against their
# nearest normal images


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
            "normal_map": None if normal is None else _normal_map(normal) | {
                "two_sided": normal.two_sided, "images": trained.normalized_by}}


def _normal_map(normal: NormalReference) -> dict:
    """model.json's reference: the per-pixel mean and spread, or (nearest normal images) the
    file with the normal maps and thumbnails and how many of them each image is measured
    against."""
    if isinstance(normal, NearestNormal):
        return {"neighbours": normal.neighbours, "thumbnail": THUMB, "file": NORMAL_MAPS}
    return {"mean": normal.mean.tolist(), "std": normal.std.tolist()}


def export(run_dir: Path, folder: Path) -> None:
    trained = load_trained(run_dir)
    size = trained.cfg.model.image_size
    example = torch.rand(2, trained.channels, size, size)  # (B, C, S, S)
    with torch.no_grad():
        to_onnx(AnomalyMaps(trained.model, trained.cfg.score), example, folder / "model.onnx",
                "images", "maps")
    if isinstance(trained.normal, NearestNormal):
        with atomic_path(folder / NORMAL_MAPS) as tmp, open(tmp, "wb") as f:
            np.savez(f, maps=trained.normal.maps.numpy(),
                     keys=trained.normal.keys.numpy())
    write_json(folder / "model.json", spec(trained))
    shutil.copyfile(PREDICT, folder / "predict.py")
