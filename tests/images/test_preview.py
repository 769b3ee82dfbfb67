"""The Data page's image thumbnails: which images are shown, and how they look."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.images.data import load_image_dataset
from core.images.preview import N_THUMBS, THUMB, image_preview, preview_items

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "images"


def test_preview_mixes_training_images_and_each_defect_type():
    items = preview_items(load_image_dataset(SAMPLE))
    where = [w for w, _ in items]
    assert len(items) == N_THUMBS
    assert where.count("train") == N_THUMBS // 2
    assert {w for w in where if w != "train"} == {"test missing_pattern", "test scratch",
                                                 "test spot"}


def test_thumbnails_are_rgb_squares_with_the_mask_outlined_in_green():
    thumbs = image_preview(load_image_dataset(SAMPLE))
    for caption, thumb in thumbs:
        assert thumb.shape == (THUMB, THUMB, 3) and thumb.dtype == np.uint8
        green = (thumb == (0, 220, 90)).all(axis=-1).any()
        assert green == caption.startswith("test "), caption  # defects have masks; train none
