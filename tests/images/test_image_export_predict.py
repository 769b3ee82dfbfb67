"""The exported predict.py's image reading and listing against the project's (fast: no
model)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from core.images import export_predict
from core.images.data import load_image, load_image_dataset

SAMPLES = REPO / "data" / "samples" / "images"


@pytest.mark.parametrize("channels, resize", [(1, "resize"), (3, "resize"), (1, "pad")])
def test_images_are_read_as_the_project_reads_them(tmp_path, channels, resize):
    rgb = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50, 3), np.uint8)).save(rgb)
    sample = next((SAMPLES / "test" / "good").iterdir())
    for path in (rgb, sample):
        np.testing.assert_array_equal(export_predict.load_image(path, 32, channels, resize),
                                      load_image(path, 32, channels, resize))


def test_an_mvtec_folder_lists_its_test_images_in_the_projects_order():
    root, items = export_predict.list_images(SAMPLES)
    ds = load_image_dataset(SAMPLES)
    assert root == ds.root
    assert [(p, d) for p, d in items] == [(it.path, it.defect_type) for it in ds.test]


def test_image_scores_are_the_projects(tmp_path):
    import torch
    from core.images.scoring import image_scores
    maps = np.random.default_rng(1).random((3, 16, 16)).astype(np.float32)
    for how in ("max", "topk_mean"):
        np.testing.assert_allclose(export_predict.image_scores(maps, how, 0.05),
                                   image_scores(torch.from_numpy(maps), how, 0.05).numpy(),
                                   rtol=1e-6)


def test_a_broken_image_is_named(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(SystemExit, match=r"broken.png: cannot be read .*expected a complete"):
        export_predict.load_image(path, 32, 1, "resize")
