"""Thumbnails of an image dataset for the Data page: a few training images and the test images
of each defect type, fitted on black with the defect mask outlined. No torch."""
from __future__ import annotations

from itertools import chain, zip_longest

import numpy as np

from core.images.data import ImageDataset, ImageItem, load_image, load_mask
from core.images.overlays import overlay

THUMB, N_THUMBS = 128, 8  # pixels per side, images shown


def preview_items(ds: ImageDataset, k: int = N_THUMBS) -> list[tuple[str, ImageItem]]:
    """(where, item) for up to k images: up to k/2 test images (defects first, one type after
    another, then good ones), the rest training images spread over the set."""
    types = sorted({it.defect_type for it in ds.test if it.label == 1})
    by_type = zip_longest(*([it for it in ds.test if it.defect_type == t] for t in types))
    test = [it for it in chain(*by_type) if it] + [it for it in ds.test if it.label == 0]
    test = test[:k // 2]
    n = min(k - len(test), len(ds.train))
    train = [ds.train[i * len(ds.train) // n] for i in range(n)]
    return [("train", it) for it in train] + [(f"test {it.defect_type}", it) for it in test]


def thumbnail(item: ImageItem) -> np.ndarray:
    """(THUMB, THUMB, 3) uint8: the image fitted on black, its mask's outline in green."""
    image = load_image(item.path, THUMB, 3, "pad")
    mask = load_mask(item.mask_path, THUMB, "pad") if item.mask_path else None
    return overlay(image, np.zeros((THUMB, THUMB)), 1.0, mask, alpha=0.0)  # alpha 0: no heat


def image_preview(ds: ImageDataset) -> list[tuple[str, np.ndarray]]:
    """(caption, thumbnail) per preview image; cached with the summary by `overview`."""
    return [(f"{where}: {it.path.name}", thumbnail(it)) for where, it in preview_items(ds)]
