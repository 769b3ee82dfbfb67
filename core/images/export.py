"""The image stream's export: the run's smoothed anomaly maps (Swin MAE's error, or its defect
head's segmentation) and each image's key to its nearest normal images as model.onnx, the rest
of the scoring recipe (image size and mode, normal-map statistics, score method, threshold) as
model.json (with normal_maps.npz when each image is measured against its nearest normal
images: their maps, keys and, for the pixel maps' coarse scale, their smoothed head maps), and
`export_predict.py` as predict.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from core.onnx_export import to_onnx
from core.fileio import atomic_path, write_json
from core.images.scoring import (THUMB, AnomalyMaps, CoarseScale, NearestNormal,
                                 NormalReference)
from core.images.stages import scored_size
from core.images.trained import STREAM, TrainedImages, load_trained

PREDICT = Path(__file__).with_name("export_predict.py")
NORMAL_MAPS = "normal_maps.npz"  # beside model.json when images are measured against their
# nearest normal images


def spec(trained: TrainedImages, coarse: CoarseScale | None) -> dict:
    """model.json: what predict.py needs beside the network (`coarse`: the run's pixel maps'
    coarse scale, or None)."""
    sc, normal = trained.cfg.score, trained.normal
    return {"stream": STREAM, "from_run": trained.run_dir.name,
            "image_size": scored_size(trained.cfg), "channels": trained.channels,
            "mode": "L" if trained.channels == 1 else "RGB", "resize": trained.cfg.data.resize,
            "method": sc.method, "score_mode": sc.mode, "image_score": sc.image_score,
            "topk": sc.topk, "batch_size": sc.batch_size, "threshold": trained.threshold,
            "threshold_percentile": trained.percentile,
            "normal_map": None if normal is None else _normal_map(normal) | {
                "two_sided": normal.two_sided, "map_cap": normal.cap,
                "images": trained.normalized_by, "coarse": coarse and {
                    "sigma": coarse.sigma, "weight": coarse.weight,
                    "neighbours": coarse.reference.neighbours}}}


def _normal_map(normal: NormalReference) -> dict:
    """model.json's reference: the per-pixel mean and spread, or (nearest normal images) the
    file with the normal maps and keys and how many of them each image is measured
    against."""
    if isinstance(normal, NearestNormal):
        return {"neighbours": normal.neighbours, "thumbnail": THUMB, "file": NORMAL_MAPS,
                "match_shape": normal.match_shape, "match_head": normal.head_weight}
    return {"mean": normal.mean.tolist(), "std": normal.std.tolist()}


class Keyed(torch.nn.Module):
    """The detector as model.onnx runs it: images → (maps, keys) (`AnomalyMaps.keyed`)."""

    def __init__(self, detector: AnomalyMaps):
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.detector.keyed(images)


def export(run_dir: Path, folder: Path) -> None:
    trained = load_trained(run_dir)
    size = scored_size(trained.cfg)
    example = torch.rand(2, trained.channels, size, size)  # (B, C, S, S)
    with torch.no_grad():
        to_onnx(Keyed(trained.detector), example, folder / "model.onnx", "images",
                ["maps", "keys"])
    coarse = CoarseScale.of(trained.normal, trained.cfg.score)  # counted above its
    # reference only; None without nearest normal images or a head
    if isinstance(trained.normal, NearestNormal):
        smoothed = {} if coarse is None else {"coarse": coarse.reference.maps.numpy()}
        with atomic_path(folder / NORMAL_MAPS) as tmp, open(tmp, "wb") as f:
            np.savez(f, maps=trained.normal.maps.numpy(), keys=trained.normal.keys.numpy(),
                     **smoothed)  # (N, [M,] S, S), (N, T [+ D]), (N, S, S) float16
    write_json(folder / "model.json", spec(trained, coarse))
    shutil.copyfile(PREDICT, folder / "predict.py")
