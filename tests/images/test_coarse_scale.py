"""The pixel maps' coarse scale (`score.coarse_sigma`): a large faint defect lost in the fine
map's pixel noise stands out once the map is smoothed at a quarter of its side and measured
against normal maps smoothed alike; a small sharp one stays where it is; the image scores read
the fine map only, so they (and the run's threshold) do not change."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from core.config import load_config
from core.images import stages
from core.images.scoring import (CoarseScale, PixelErrorStats, image_scores, normal_reference,
                                 thumbnails)

SIDE = 64


def _score_cfg(**changes):
    cfg = load_config([]).swinmae.score
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def _normals(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n alike normal images (n, 1, S, S) and their maps (n, S, S): pixel noise around 1."""
    images = 0.5 + 0.01 * torch.rand(n, 1, SIDE, SIDE, generator=g)
    return images, 1.0 + 0.2 * torch.randn(n, SIDE, SIDE, generator=g)


def _faint_area() -> torch.Tensor:
    mask = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    mask[16:40, 20:44] = True  # 14 % of the image
    return mask


def test_a_large_faint_defect_stands_out_at_the_coarse_scale_and_a_sharp_one_stays():
    g = torch.Generator().manual_seed(1)
    images, maps = _normals(30, g)
    test_images, test_maps = _normals(4, g)
    area = _faint_area()
    test_maps[1][area] += 0.12  # 0.6 of a pixel's normal spread: lost in the fine map
    test_maps[2, 50, 10] += 5.0  # a small sharp defect
    normal = normal_reference(maps, thumbnails(images), 10, two_sided=True)
    coarse = CoarseScale.of(normal, _score_cfg(coarse_sigma=0.25, coarse_weight=0.5))
    assert coarse is not None and coarse.sigma == 16.0
    fine = normal(test_maps, test_images)  # (4, S, S)
    both = coarse(fine, test_maps, test_images)
    truth = torch.zeros(4, SIDE, SIDE, dtype=torch.bool)
    truth[1] = area
    fine_auroc, both_auroc = (roc_auc_score(truth.flatten(), m.flatten()) for m in (fine, both))
    assert fine_auroc < 0.75 and both_auroc > 0.95
    assert both[2].flatten().argmax() == 50 * SIDE + 10  # still the sharp defect's pixel


def test_no_coarse_scale_when_it_is_off_or_only_a_mean_and_spread_were_kept():
    g = torch.Generator().manual_seed(2)
    images, maps = _normals(8, g)
    near = normal_reference(maps, thumbnails(images), 4, two_sided=True)
    assert CoarseScale.of(near, _score_cfg(coarse_sigma=0.0)) is None
    assert CoarseScale.of(near, _score_cfg(coarse_weight=0.0)) is None
    everyone = normal_reference(maps, thumbnails(images), 0, two_sided=True)
    assert isinstance(everyone, PixelErrorStats) and CoarseScale.of(everyone, _score_cfg()) is None
    assert CoarseScale.of(None, _score_cfg()) is None


@pytest.mark.parametrize("coarse_sigma", [0.0, 0.25])
def test_scored_images_keep_their_fine_scores_and_only_the_maps_change(monkeypatch, coarse_sigma):
    """`score_items` with the coarse scale on and off: the same image scores, read from the
    fine z-maps; the pixel maps add the coarse z-map, for the baseline alike."""
    g = torch.Generator().manual_seed(3)
    images, maps = _normals(30, g)
    test_images, test_maps = _normals(4, g)
    test_maps[1][_faint_area()] += 0.12
    normal = normal_reference(maps, thumbnails(images), 10, two_sided=True)
    batch = {"image": test_images, "mask": torch.zeros(4, SIDE, SIDE, dtype=torch.uint8),
             "mask_known": torch.ones(4, dtype=torch.bool)}
    monkeypatch.setattr(stages, "_maps", lambda *a, **k: iter([(test_maps, batch)]))

    class Baseline:  # maps as the mean-image baseline's would be: the same here
        def maps(self, imgs, sigma):
            return test_maps

    cfg = load_config([f"swinmae.score.coarse_sigma={coarse_sigma}"])
    ctx = types.SimpleNamespace(cfg=cfg)
    scored = stages.score_items(ctx, None, Baseline(), [None] * 4, normal, normal)
    fine = normal(test_maps, test_images)
    expected = image_scores(fine, cfg.swinmae.score.image_score, cfg.swinmae.score.topk)
    np.testing.assert_allclose(scored.scores, expected.numpy(), rtol=1e-6)
    np.testing.assert_allclose(scored.base_scores, expected.numpy(), rtol=1e-6)
    if coarse_sigma == 0:
        assert scored.coarse is None
        np.testing.assert_allclose(scored.maps, fine.numpy(), rtol=1e-6)
    else:
        assert scored.coarse == {"sigma": 16.0, "weight": 0.5}
        area = _faint_area().numpy()
        assert scored.maps[1][area].mean() > 2 * fine[1][_faint_area()].mean()
        np.testing.assert_allclose(scored.base_maps, scored.maps, rtol=1e-6)
