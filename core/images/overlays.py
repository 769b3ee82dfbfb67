"""Heatmap overlays for people: an anomaly map blended over its image, with the ground-truth
mask's outline when one is known; and for the gallery, the image itself with the outlines of
the flagged pixels and of the mask, to put beside its overlay. Pillow and numpy only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# a 'hot'-like ramp: black → red → yellow → white, by map value from 0 to vmax
_STOPS = np.array([[0, 0, 0], [230, 20, 20], [255, 220, 0], [255, 255, 255]], dtype=np.float32)
OUTLINE = (0, 220, 90)  # the ground-truth mask
REGION = (30, 120, 255)  # the pixels whose map value is above the threshold


def heat_colors(values: np.ndarray, vmax: float) -> np.ndarray:
    """(H, W) map → (H, W, 3) uint8 colours, saturating at `vmax`."""
    t = np.clip(values / max(vmax, 1e-12), 0, 1) * (len(_STOPS) - 1)
    lo = np.minimum(t.astype(int), len(_STOPS) - 2)
    frac = (t - lo)[..., None]
    return (_STOPS[lo] * (1 - frac) + _STOPS[lo + 1] * frac).astype(np.uint8)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """(H, W) 0/1 → bool (H, W): mask pixels with a 4-neighbour outside the mask."""
    m = mask.astype(bool)
    padded = np.pad(m, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return m & ~inner


def _rgb(image: np.ndarray) -> np.ndarray:
    """image (C, H, W) in [0, 1], C = 1 or 3 → (H, W, 3) float32 in [0, 255]."""
    gray = np.asarray(image, dtype=np.float32)
    rgb = np.repeat(gray, 3, axis=0) if gray.shape[0] == 1 else gray
    return (rgb.transpose(1, 2, 0) * 255).clip(0, 255)


def overlay(image: np.ndarray, amap: np.ndarray, vmax: float, mask: np.ndarray | None = None,
            alpha: float = 0.5) -> np.ndarray:
    """image (C, H, W) in [0, 1], map (H, W) → (H, W, 3) uint8 blend; mask outline in green."""
    out = (1 - alpha) * _rgb(image) + alpha * heat_colors(amap, vmax)
    if mask is not None:
        out[mask_outline(mask)] = OUTLINE
    return out.astype(np.uint8)


def outlined(image: np.ndarray, region: np.ndarray | None = None,
             mask: np.ndarray | None = None) -> np.ndarray:
    """image (C, H, W) in [0, 1] → (H, W, 3) uint8, the image itself, so a person sees the part:
    the outline of `region` (H, W) bool, the pixels flagged, in blue, and the ground-truth
    `mask`'s outline in green on top."""
    out = _rgb(image)
    if region is not None:
        out[mask_outline(region)] = REGION
    if mask is not None:
        out[mask_outline(mask)] = OUTLINE
    return out.astype(np.uint8)


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two (H, W, 3) uint8 pictures → (H, 2W + gap, 3), a white gap between them."""
    white = np.full((left.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([left, white, right], axis=1)


def save_overlay(path: Path, image: np.ndarray, amap: np.ndarray, vmax: float,
                 mask: np.ndarray | None = None) -> None:
    Image.fromarray(overlay(image, amap, vmax, mask)).save(path)
