"""Scoring at a zoom (`data.zoom`): tiles cut and their maps stitched back in place, training
crops that show image and mask alike, and a detector mapping every tile of a zoomed image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core.config import defaults
from core.images.data import ImageFolderDataset, ImageItem
from core.images.scoring import AnomalyMaps
from core.images.swinmae import SwinMAE, preset
from core.images.tiling import tiled


def _deviation(tiles: torch.Tensor) -> torch.Tensor:
    """A per-pixel detector: (B, C, T, T) → (B, T, T) distance from mid-grey."""
    return (tiles - 0.5).abs().mean(dim=1)


def test_tiles_must_divide_the_image():
    with pytest.raises(ValueError, match="100-pixel image cannot be cut into 32-pixel tiles"):
        tiled(_deviation, torch.rand(1, 1, 100, 100), 32)


def test_a_tiled_map_of_a_constant_image_is_flat():
    maps = tiled(_deviation, torch.full((2, 3, 64, 64), 0.7), 32)
    assert maps.shape == (2, 64, 64)
    assert torch.allclose(maps, torch.full_like(maps, 0.2))


def test_a_planted_defect_lands_where_it_was_planted():
    images = torch.full((3, 1, 96, 96), 0.5)
    images[1, :, 70:74, 10:14] = 1.0  # in the bottom-left tile of a 3 × 3 grid
    maps = tiled(_deviation, images, 32)
    assert maps[0].max() == 0 and maps[2].max() == 0  # the other images stay clean
    hot = (maps[1] > 0).nonzero()
    assert hot[:, 0].tolist() == [r for r in range(70, 74) for _ in range(4)]
    assert hot[:, 1].tolist() == list(range(10, 14)) * 4
    assert torch.equal(maps, _deviation(images))  # a per-pixel detector: as if untiled


def test_maps_on_a_coarser_grid_and_with_several_maps_per_image_stitch_alike():
    images = torch.rand(2, 1, 64, 64)

    def two_pooled(tiles):  # (B, 1, 32, 32) → (B, 2, 8, 8): two maps on a 4-pixel grid
        pooled = F.avg_pool2d(tiles, 4)[:, 0]
        return torch.stack([pooled, 2 * pooled], dim=1)
    maps = tiled(two_pooled, images, 32)
    assert maps.shape == (2, 2, 16, 16)
    assert torch.allclose(maps, two_pooled(images))  # pooling windows never straddle a tile


def test_one_tile_is_the_detector_itself():
    images = torch.rand(2, 1, 32, 32)
    assert torch.equal(tiled(_deviation, images, 32), _deviation(images))


def test_a_detector_maps_each_tile_of_a_zoomed_image_as_that_tile_alone():
    torch.manual_seed(0)
    model = SwinMAE(preset("tiny", in_chans=1)).eval()  # 64 px
    detector = AnomalyMaps(model, defaults("swinmae.score", method="reconstruction"))
    images = torch.rand(2, 1, 128, 128)
    maps = detector(images)
    assert maps.shape == (2, 128, 128)
    assert torch.allclose(maps[:, 64:, :64], detector(images[..., 64:, :64]), atol=1e-5)


def test_training_crops_show_image_and_mask_at_the_same_place(tmp_path: Path):
    pixels = np.zeros((32, 32), np.uint8)
    pixels[20:24, 4:8] = 255  # one bright square; the mask marks the same pixels
    Image.fromarray(pixels).save(tmp_path / "x.png")
    Image.fromarray(pixels).save(tmp_path / "x_mask.png")
    item = ImageItem(tmp_path / "x.png", 1, "spot", tmp_path / "x_mask.png")
    data = ImageFolderDataset([item], 32, 1, with_masks=True, hflip=True, crop=16)
    torch.manual_seed(0)
    places = set()
    for _ in range(30):
        out = data[0]
        assert out["image"].shape == (1, 16, 16) and out["mask"].shape == (16, 16)
        assert torch.equal(out["image"][0] > 0.5, out["mask"].bool())
        places.add(tuple(out["mask"].nonzero().min(dim=0).values.tolist())
                   if out["mask"].any() else None)
    assert len(places) > 3  # the crop moves
    with pytest.raises(ValueError, match="crop: expected 1 to 32 pixels, found 40"):
        ImageFolderDataset([item], 32, 1, crop=40)
