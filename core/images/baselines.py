"""A trivial image baseline scored in the same run as Swin MAE, so a user sees whether the model
beats it: each pixel's squared deviation from the mean normal image, in units of that pixel's
variance over the normal images (a per-pixel Gaussian), smoothed like the model's maps. The score
stage then post-processes its maps as the model's (`score.normalize`, `score.two_sided`), so a
step that lifts both is not counted as the model's gain."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from core.images.scoring import gaussian_blur


@dataclass
class MeanImageBaseline:
    mean: torch.Tensor  # (C, S, S)
    var: torch.Tensor  # (C, S, S), floored

    @classmethod
    def fit(cls, batches: Iterable[dict], floor: float = 1e-4) -> "MeanImageBaseline":
        """Mean and variance per pixel over batches {"image": (B, C, S, S)} of normal images."""
        total = total_sq = None
        n = 0
        for batch in batches:
            x = batch["image"].double()
            total = x.sum(0) if total is None else total + x.sum(0)
            total_sq = x.pow(2).sum(0) if total_sq is None else total_sq + x.pow(2).sum(0)
            n += len(x)
        mean = total / n
        var = (total_sq / n - mean.pow(2)).clamp_min(floor)
        return cls(mean.float(), var.float())

    def maps(self, images: torch.Tensor, sigma: float) -> torch.Tensor:
        """(B, C, S, S) → (B, S, S) smoothed squared z-scores, averaged over channels."""
        z2 = (images.float() - self.mean).pow(2) / self.var
        return gaussian_blur(z2.mean(dim=1), sigma)
