"""Scoring at a higher resolution than the model's input (`data.zoom`): an image resized to
zoom × image_size is cut into a zoom × zoom grid of image_size tiles, each tile is mapped by the
detector, and the tile maps are put back in place as one map of the whole image. Training sees
random image_size crops of the same zoomed images (`core.images.data.ImageFolderDataset`'s
`crop`), so the model learns the parts at the scale it scores them.

The tiles do not overlap: the seams sit at the same pixels in every image, and the per-pixel
normalisation against normal images' maps (`score.normalize`) takes out what a seam does to the
error there, as it does for the image border.

Dimension names: B images, C channels, Z = zoom × T zoomed image side, T tile side, M maps per
image (absent or 2)."""
from __future__ import annotations

from typing import Callable

import torch


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
          tile: int) -> torch.Tensor:
    """images (B, C, Z, Z), fn: (B', C, T, T) tiles → (B', ..., t, t) maps (t = T / s for some
    integer stride s: pixel maps, or features on a patch grid) → (B, ..., Z / s, Z / s): fn of
    every tile at once (`tiles_of`), each map put where its tile was (`stitched`)."""
    return stitched(fn(tiles_of(images, tile)), images.shape[-1] // tile)


def tiles_of(images: torch.Tensor, tile: int) -> torch.Tensor:
    """images (B, C, Z, Z) → (n n B, C, T, T): the n × n tiles folded into the batch,
    tile-major (row of tiles, column of tiles, image); the images themselves when n is 1.
    ValueError when the tiles do not divide the image. Reshapes only, so an ONNX export keeps
    its batch dimension free."""
    B, C, Z = images.shape[0], images.shape[1], images.shape[-1]
    if Z % tile:
        raise ValueError(f"a {Z}-pixel image cannot be cut into {tile}-pixel tiles")
    n = Z // tile
    if n == 1:
        return images
    return images.reshape(B, C, n, tile, n, tile).permute(2, 4, 0, 1, 3, 5) \
        .reshape(n * n * B, C, tile, tile)


def stitched(maps: torch.Tensor, n: int) -> torch.Tensor:
    """(n n B, ..., t, t) maps of `tiles_of`'s n × n tiles of each image → (B, ..., n t, n t)."""
    if n == 1:
        return maps
    extra, t = maps.shape[1:-2], maps.shape[-1]
    k = len(extra)  # axes between the image and the map's rows: absent, or M maps
    maps = maps.reshape(n, n, -1, *extra, t, t)  # (n_r, n_c, B, ..., t, t)
    order = (2, *range(3, 3 + k), 0, 3 + k, 1, 4 + k)  # (B, ..., n_r, t, n_c, t)
    return maps.permute(order).reshape(-1, *extra, n * t, n * t)


def per_image(values: torch.Tensor, n: int) -> torch.Tensor:
    """(n n B, D) values of `tiles_of`'s n × n tiles of each image → (B, D): the mean over an
    image's tiles."""
    return values.reshape(n * n, -1, values.shape[-1]).mean(dim=0)
