"""The pixel maps' coarse scale (`score.coarse_sigma`, head runs): a large faint area of defect
probability, lost in the head map's pixel noise, stands out once the head's map is smoothed at
a quarter of its side and measured against normal head maps smoothed alike; a small sharp
defect stays where it is; the image scores read the fine map only, so they (and the run's
threshold) do not change; single-map detectors (and the baseline) keep the fine map."""
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
    """n alike normal images (n, 1, S, S) and their maps (n, 2, S, S), error then head
    probability: pixel noise around 1 and around 0.1."""
    images = 0.5 + 0.01 * torch.rand(n, 1, SIDE, SIDE, generator=g)
    maps = torch.stack([1.0 + 0.2 * torch.randn(n, SIDE, SIDE, generator=g),
                        0.1 + 0.02 * torch.randn(n, SIDE, SIDE, generator=g)], dim=1)
    return images, maps


def _faint_area() -> torch.Tensor:
    mask = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    mask[16:40, 20:44] = True  # 14 % of the image
    return mask


def _test_set(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """4 test images: image 1 has a faint broad rise of head probability (0.6 of a pixel's
    normal spread), image 2 one pixel of high error."""
    images, maps = _normals(4, g)
    maps[1, 1][_faint_area()] += 0.012
    maps[2, 0, 50, 10] += 5.0
    return images, maps


def test_a_large_faint_defect_stands_out_at_the_coarse_scale_and_a_sharp_one_stays():
    g = torch.Generator().manual_seed(1)
    images, maps = _normals(30, g)
    test_images, test_maps = _test_set(g)
    normal = normal_reference(maps, thumbnails(images), 10, two_sided=True)
    coarse = CoarseScale.of(normal, _score_cfg(coarse_sigma=0.25, coarse_weight=1.0))
    assert coarse is not None and coarse.sigma == 16.0
    assert coarse.reference.maps.shape == (30, SIDE, SIDE)  # the head maps only
    test_keys = thumbnails(test_images)
    fine = normal(test_maps, test_keys)  # (4, S, S)
    both = coarse(fine, test_maps, test_keys)
    truth = torch.zeros(4, SIDE, SIDE, dtype=torch.bool)
    truth[1] = _faint_area()
    fine_auroc, both_auroc = (roc_auc_score(truth.flatten(), m.flatten()) for m in (fine, both))
    assert fine_auroc < 0.75 and both_auroc > 0.95
    assert both[2].flatten().argmax() == 50 * SIDE + 10  # still the sharp defect's pixel


def test_the_coarse_scale_counts_a_rise_of_the_heads_map_and_not_a_fall():
    """A broad area where the head sees less defect than in normal images is not a defect:
    the coarse scale adds nothing there (the fine maps, two-sided, still count it); the same
    area raised by as much stands out."""
    g = torch.Generator().manual_seed(4)
    images, maps = _normals(30, g)
    normal = normal_reference(maps, thumbnails(images), 10, two_sided=True)
    coarse = CoarseScale.of(normal, _score_cfg(coarse_sigma=0.25, coarse_weight=1.0))
    assert not coarse.reference.two_sided and normal.two_sided
    test_images, test_maps = _normals(2, g)
    area = _faint_area()
    test_maps[0, 1][area] -= 0.012
    test_maps[1, 1][area] += 0.012
    keys = thumbnails(test_images)
    fine = normal(test_maps, keys)
    added = coarse(fine, test_maps, keys) - fine  # (2, S, S): the coarse z-maps
    fell, rose = added[0][area], added[1][area]
    assert fell.max() < 0 and rose.min() > 3
    assert fine[0][area].mean() > fine[0][~area].mean() + 0.1  # the fine maps see the fall


def test_the_coarse_scale_takes_its_own_count_of_the_same_nearest_normal_images():
    """`coarse_neighbours`: the smoothed head maps are measured against that many nearest
    normal images (found by the same keys as the fine maps'), at most all but one; 0: as many
    as the fine maps'."""
    g = torch.Generator().manual_seed(3)
    images, maps = _normals(30, g)
    keys = thumbnails(images)
    normal = normal_reference(maps, keys, 10, two_sided=True, match_shape=True)
    for asked, taken in ((20, 20), (0, 10), (100, 29)):
        coarse = CoarseScale.of(normal, _score_cfg(coarse_neighbours=asked))
        assert coarse.reference.neighbours == taken
        assert coarse.reference.match_shape and torch.equal(coarse.reference.keys, normal.keys)
    test_images, test_maps = _test_set(g)
    test_keys, normal_ones = thumbnails(test_images), [0, 3]  # images 0 and 3 are normal

    def coarse_z(count: int) -> torch.Tensor:  # the normal test images' coarse z-maps
        coarse = CoarseScale.of(normal, _score_cfg(coarse_neighbours=count, coarse_weight=1.0))
        fine = normal(test_maps, test_keys)
        return (coarse(fine, test_maps, test_keys) - fine)[normal_ones]
    # a spread from a few smoothed maps is noise: normal images stray far from it
    assert coarse_z(3).abs().mean() > 1.5 * coarse_z(29).abs().mean()


def test_no_coarse_scale_when_off_for_one_map_or_with_only_a_mean_and_spread():
    g = torch.Generator().manual_seed(2)
    images, maps = _normals(8, g)
    near = normal_reference(maps, thumbnails(images), 4, two_sided=True)
    assert CoarseScale.of(near, _score_cfg()) is not None
    assert CoarseScale.of(near, _score_cfg(coarse_sigma=0.0)) is None
    assert CoarseScale.of(near, _score_cfg(coarse_weight=0.0)) is None
    one_map = normal_reference(maps[:, 0], thumbnails(images), 4, two_sided=True)
    assert CoarseScale.of(one_map, _score_cfg()) is None  # reconstruction, knn, the baseline
    everyone = normal_reference(maps, thumbnails(images), 0, two_sided=True)
    assert isinstance(everyone, PixelErrorStats) and CoarseScale.of(everyone, _score_cfg()) is None
    assert CoarseScale.of(None, _score_cfg()) is None


@pytest.mark.parametrize("coarse_sigma", [0.0, 0.25])
def test_scored_images_keep_their_fine_scores_and_only_the_maps_change(monkeypatch, coarse_sigma):
    """`score_items` with the coarse scale on and off: the same image scores, read from the
    fine z-maps; the model's pixel maps add the coarse z-map; the baseline's one map is left
    fine."""
    g = torch.Generator().manual_seed(3)
    images, maps = _normals(30, g)
    test_images, test_maps = _test_set(g)
    normal = normal_reference(maps, thumbnails(images), 10, two_sided=True)
    base_normal = normal_reference(maps[:, 0], thumbnails(images), 10, two_sided=True)
    batch = {"image": test_images, "mask": torch.zeros(4, SIDE, SIDE, dtype=torch.uint8),
             "mask_known": torch.ones(4, dtype=torch.bool)}
    monkeypatch.setattr(stages, "_maps",
                        lambda *a, **k: iter([(test_maps, thumbnails(test_images), batch)]))

    class Baseline:  # one map per image, as the mean-image baseline's
        def maps(self, imgs, sigma):
            return test_maps[:, 0]

    cfg = load_config([f"swinmae.score.coarse_sigma={coarse_sigma}"])
    score_cfg = cfg.swinmae.score
    scored = stages.score_items(types.SimpleNamespace(cfg=cfg), None, Baseline(), [None] * 4,
                                normal, base_normal)
    test_keys = thumbnails(test_images)
    fine, base_fine = normal(test_maps, test_keys), base_normal(test_maps[:, 0], test_keys)
    for scores, z in ((scored.scores, fine), (scored.base_scores, base_fine)):
        np.testing.assert_allclose(
            scores, image_scores(z, score_cfg.image_score, score_cfg.topk).numpy(), rtol=1e-6)
    np.testing.assert_allclose(scored.base_maps, base_fine.numpy(), rtol=1e-6)
    if coarse_sigma == 0:
        assert scored.coarse is None
        np.testing.assert_allclose(scored.maps, fine.numpy(), rtol=1e-6)
    else:
        assert scored.coarse == {"sigma": 16.0, "weight": 4.0, "neighbours": 29,  # of 30
                                 "two_sided": False}
        area = _faint_area()
        assert scored.maps[1][area.numpy()].mean() > 2 * fine[1][area].mean()
