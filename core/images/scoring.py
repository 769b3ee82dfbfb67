"""Anomaly maps and image scores from Swin MAE reconstructions.

`masked` mode scores an image the way its model was trained to see it. Block masking: K
reconstructions with complementary block masks, so every region is predicted once from its
visible context and its error is counted once. Uniform masking: the 2 diagonal packings (the
top-left, then the bottom-right unit of every 2×2 block kept, no secondary mask), so every
unit is dropped in one or both of them and its error is the mean over those that dropped it.
`full` reconstructs with nothing hidden.

The per-pixel error (L2, optionally plus an image-gradient term that catches thin
structural defects) is smoothed with a Gaussian, then (`normalize`) expressed in units of normal
images' error at that pixel, so places where the model is always poor (edges, background strips)
do not outshine a defect; `two_sided` counts an error far below normal as well (the absolute
z-score): a defect that removes texture is easier to reconstruct than the part around it. The
image score is the map's maximum or the mean of its top-k share of pixels.

Dimension names: B images, C channels, H = W = image size, h = w = patch grid side, K masks."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.images.config import ImageScoreConfig
from core.images.swinmae import SwinMAE, complementary_block_masks
from core.images.uniform_mask import diagonal_packings, dropped
from core.masking import masked_error


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, H, W) → (B, H, W), separable Gaussian with reflected borders; sigma 0: unchanged.
    The kernel is cut at 3 sigma, or at the map's side when that is smaller (reflection needs
    the padding to be shorter than the side)."""
    if sigma <= 0:
        return maps
    radius = max(1, min(math.ceil(3 * sigma), min(maps.shape[-2:]) - 1))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = maps[:, None]  # (B, 1, H, W)
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return out[:, 0]


def _gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) → forward differences along x and y, zero-padded to (B, C, H, W)."""
    dx = F.pad(img[..., :, 1:] - img[..., :, :-1], (0, 1))
    dy = F.pad(img[..., 1:, :] - img[..., :-1, :], (0, 0, 0, 1))
    return dx, dy


def pixel_error(recon: torch.Tensor, imgs: torch.Tensor, cfg: ImageScoreConfig) -> torch.Tensor:
    """(B, C, H, W) reconstruction and input → (B, H, W) error: squared error averaged over
    channels, plus (`l2_grad`) `grad_weight` × the squared difference of their gradients."""
    err = (recon.float() - imgs).pow(2).mean(dim=1)
    if cfg.error == "l2_grad":
        (rx, ry), (ix, iy) = _gradients(recon.float()), _gradients(imgs)
        err = err + cfg.grad_weight * ((rx - ix).pow(2) + (ry - iy).pow(2)).mean(dim=1)
    return err


@torch.no_grad()
def anomaly_maps(model: SwinMAE, imgs: torch.Tensor, cfg: ImageScoreConfig) -> torch.Tensor:
    """imgs (B, C, H, W) on the model's device → smoothed anomaly maps (B, H, W) float32."""
    mcfg = model.cfg
    if cfg.mode == "full":
        err = pixel_error(model.reconstruct(imgs, None), imgs, cfg)
    elif mcfg.masking == "uniform":
        pixels_per_unit = mcfg.mask_unit * mcfg.patch_size
        packings = diagonal_packings(model.grid // mcfg.mask_unit, imgs.device)[:, None]
        # packings (2, 1, n, n): each a packing for the whole batch
        times = sum(dropped(keep, pixels_per_unit)[0] for keep in packings)  # (H, W): 1 or 2
        err = masked_error(  # (B, H, W), each pixel's error summed over the packings dropping it
            packings, lambda keep: pixel_error(model.reconstruct(imgs, None, keep), imgs, cfg),
            lambda keep: dropped(keep, pixels_per_unit)[0]) / times  # (H, W) dropped pixels
    else:
        masks = complementary_block_masks(model.grid, model.grid, mcfg.mask_unit,
                                          mcfg.mask_ratio).to(imgs.device)  # (K, h, w)
        err = masked_error(  # (B, H, W)
            masks, lambda mask: pixel_error(model.reconstruct(imgs, mask), imgs, cfg),
            lambda mask: mask.repeat_interleave(mcfg.patch_size, 0)
            .repeat_interleave(mcfg.patch_size, 1))  # (H, W) hidden pixels
    return gaussian_blur(err.float(), cfg.sigma)


@dataclass
class PixelErrorStats:
    """Per-pixel mean and spread of normal images' anomaly maps, and whether an error below
    normal counts (`two_sided`)."""
    mean: torch.Tensor  # (H, W)
    std: torch.Tensor  # (H, W), floored at a tenth of the median so flat spots cannot explode
    two_sided: bool  # runs scored before two-sided maps existed load with False

    @classmethod
    def fit(cls, maps: torch.Tensor, two_sided: bool) -> "PixelErrorStats":
        """maps (N, H, W) of normal images, N >= 2."""
        std = maps.std(dim=0)
        return cls(maps.mean(dim=0), std.clamp_min(0.1 * std.median().item() + 1e-12), two_sided)

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, H, W) → (B, H, W) z-scores against the normal images; their absolute value when
        two-sided."""
        z = (maps - self.mean) / self.std
        return z.abs() if self.two_sided else z


def image_scores(maps: torch.Tensor, how: str, topk: float) -> torch.Tensor:
    """(B, H, W) maps → (B,) scores: the maximum, or the mean of the top `topk` share of pixels
    (at least one pixel)."""
    flat = maps.flatten(1)
    if how == "max":
        return flat.max(dim=1).values
    k = max(1, round(topk * flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(dim=1)
