"""Synthetic defects made from normal images themselves (DRAEM-style, no outside textures), for
training the defect head: a smooth random blob is cut out of each image and filled with texture
that does not belong there.

A blob is smooth noise at a random scale (2 to 32 cells across the image), upsampled and
thresholded so that 0.5 % to 30 % of the image is inside it: from specks to a third of the part,
as real defects range from pinholes to a whole face ground unevenly. What fills it, one of:
- another image of the batch, turned by a multiple of 90°: foreign texture (a crack, a seam);
- the same image, shifted: its own texture out of place;
- the same image, darker or brighter by 0.03 to 0.4: a hole, a stain, a faint shading.
The fill is blended with the original by a random share (0 to 0.8 of the original stays), so
defects range from faint to plain. A share of the images (`1 - defect_share`) is left clean:
the head must also learn to say nothing.

Dimension names: B images, C channels, S image side."""
from __future__ import annotations

import torch
import torch.nn.functional as F

SCALES = (2, 4, 8, 16, 32)  # noise cells across the image: blob sizes from large to specks
CLEAN_SHARE = (0.70, 0.995)  # quantile of the noise kept clean: 0.5 % to 30 % of the image
# (up to 10 % and shades of 0.1-0.5 before: magnetic tile image AUROC of the head 0.76 / 0.82
# with the two seeds' Swin MAEs, 0.81 / 0.81 with these; benchmarks/README.md)
SHIFT = (0.03, 0.4)  # brightness change of a darker or brighter fill
KEEP = 0.8  # at most this share of the original stays in the blob


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def blob_masks(B: int, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 1, size, size) float 0/1: one blob each, smooth noise thresholded at a random
    quantile, at a random scale."""
    masks = []
    scales = torch.randint(len(SCALES), (B,), generator=generator)
    quantiles = _uniform(B, *CLEAN_SHARE, generator)
    for scale, q in zip(scales.tolist(), quantiles.tolist()):
        cells = SCALES[scale]
        noise = torch.randn(1, 1, cells, cells, generator=generator)
        noise = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)
        masks.append((noise > torch.quantile(noise.flatten(), q)).float())
    return torch.cat(masks)


def synthetic_defects(images: torch.Tensor, defect_share: float = 0.5,
                      generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal images (B, C, S, S) in [0, 1], on the CPU → (images with defects (B, C, S, S),
    their masks (B, 1, S, S) float 0/1). Outside its mask an image is unchanged; an image
    without a defect (1 - defect_share of them) has an empty mask."""
    B, _, S, _ = images.shape
    masks = blob_masks(B, S, generator)
    masks = masks * (torch.rand(B, 1, 1, 1, generator=generator) < defect_share)
    kind = torch.randint(3, (B, 1, 1, 1), generator=generator)  # 0 foreign, 1 shifted, 2 shade
    turns = int(torch.randint(4, (1,), generator=generator))
    foreign = torch.rot90(images.roll(1, dims=0), turns, (2, 3))  # another image of the batch
    dy, dx = torch.randint(S, (2,), generator=generator).tolist()
    shifted = images.roll((dy, dx), dims=(2, 3))
    sign = torch.where(torch.rand(B, 1, 1, 1, generator=generator) < 0.5, -1.0, 1.0)
    shaded = (images + sign * _uniform(B, *SHIFT, generator).view(B, 1, 1, 1)).clamp(0, 1)
    fill = torch.where(kind == 0, foreign, torch.where(kind == 1, shifted, shaded))
    keep = _uniform(B, 0.0, KEEP, generator).view(B, 1, 1, 1)
    fill = keep * images + (1 - keep) * fill
    return images * (1 - masks) + fill * masks, masks
