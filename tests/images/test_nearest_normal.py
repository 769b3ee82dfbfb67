"""Measuring an image's map against its nearest normal training images (`score.neighbours`):
the reference picks images that look alike, saves and loads exactly, and predict.py's numpy
copy of it gives the same z-scores as the run."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from core.config import load_config
from core.images import export_predict, stages
from core.images.scoring import (THUMB, CoarseScale, NearestNormal, PixelErrorStats,
                                 gaussian_blur, image_scores, normal_reference, thumbnails)
from core.images.stages import load_normal_reference, save_normal_reference


def _two_kinds(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n dark and n bright normal images (2n, 1, 32, 32) and their maps (2n, 32, 32): the model
    is always poor on the bright ones' left half, never on the dark ones'."""
    dark = 0.2 + 0.02 * torch.rand(n, 1, 32, 32, generator=g)
    bright = 0.8 + 0.02 * torch.rand(n, 1, 32, 32, generator=g)
    maps = 1.0 + 0.1 * torch.rand(2 * n, 32, 32, generator=g)
    maps[n:, :, :16] += 4.0
    return torch.cat([dark, bright]), maps


def test_an_image_is_measured_against_the_normal_images_most_like_it():
    """Bright parts' maps are always hot on the left half. Measured against all normal images
    (half of them bright) a faint defect there on a dark part is lost in that spread; against
    the dark parts it resembles, it stands out, and a bright part's hot half is normal."""
    g = torch.Generator().manual_seed(0)
    images, maps = _two_kinds(20, g)
    test_images, test_maps = _two_kinds(3, g)
    test_maps[1, 20, 8] += 1.5  # a faint defect on the left half of a dark part
    near = normal_reference(maps, thumbnails(images), 10, two_sided=True)
    everyone = normal_reference(maps, thumbnails(images), 0, two_sided=True)
    assert isinstance(near, NearestNormal) and isinstance(everyone, PixelErrorStats)
    keys = thumbnails(test_images)
    z_near, z_all = near(test_maps, keys), everyone(test_maps, keys)
    assert image_scores(z_near, "max", 0.01).argmax() == 1
    assert z_near[1].flatten().argmax() == 20 * 32 + 8
    assert z_near[3:].amax() < z_near[1, 20, 8] / 4  # a bright part's hot half is normal
    assert z_all[1, 20, 8] < 1 and z_all[1].flatten().argmax() != 20 * 32 + 8


def _lit(shape: str, lighting: torch.Tensor) -> torch.Tensor:
    """Parts (n, 1, 32, 32) of one shape under the given lightings (n,): shape "left" is
    twice as bright on its left half as on its right, "right" the other way round."""
    pattern = torch.full((32, 32), 0.5)
    if shape == "left":
        pattern[:, :16] = 1.0
    else:
        pattern[:, 16:] = 1.0
    return lighting[:, None, None, None] * pattern


def test_shape_matching_finds_parts_of_the_same_shape_under_other_lighting():
    """Left-shaped parts were only seen dim, right-shaped ones bright; the model is always hot
    on a part's bright half. A brightly lit left-shaped part looks more like the bright
    right-shaped ones than like its dim kin: matched by its thumbnail its normal hot half
    stands out; matched by shape (`match_shape`) it is normal, and a real defect still shows."""
    g = torch.Generator().manual_seed(5)
    images = torch.cat([_lit("left", 0.2 + 0.05 * torch.rand(10, generator=g)),
                        _lit("right", 0.8 + 0.05 * torch.rand(10, generator=g))])
    maps = 1.0 + 0.1 * torch.rand(20, 32, 32, generator=g)
    maps[:10, :, :16] += 4.0
    maps[10:, :, 16:] += 4.0
    test_image = _lit("left", torch.tensor([0.8, 0.8]))
    test_maps = 1.05 + torch.zeros(2, 32, 32)
    test_maps[:, :, :16] += 4.0
    test_maps[1, 8, 24] += 1.0  # a defect on the dim half of the second one
    by_look = normal_reference(maps, thumbnails(images), 8, two_sided=True)
    by_shape = normal_reference(maps, thumbnails(images), 8, two_sided=True, match_shape=True)
    # its own normal half, against the right-shaped parts:
    assert by_look(test_maps, thumbnails(test_image))[0].amax() > 20
    z = by_shape(test_maps, thumbnails(test_image))
    assert z[0].amax() < 3 and z[1].flatten().argmax() == 8 * 32 + 24 and z[1].amax() > 20


def test_head_matching_finds_the_normal_images_whose_surface_the_heads_see_alike():
    """One shape, two surfaces the thumbnails cannot tell apart and the heads' descriptors can
    (the keys' columns past the thumbnail); the model is always hot on the second surface's
    left half. By the thumbnail alone a faint defect there on the first surface is lost in a
    mix of both; with `match_head` it is measured against its own surface and stands out, and
    the second surface's hot half is normal."""
    g = torch.Generator().manual_seed(6)
    images = 0.5 + 0.01 * torch.rand(20, 1, 32, 32, generator=g)
    surface = torch.cat([torch.zeros(10, 6), torch.full((10, 6), 5.0)]) \
        + 0.1 * torch.rand(20, 6, generator=g)
    keys = torch.cat([thumbnails(images), surface], dim=1)
    maps = 1.0 + 0.1 * torch.rand(20, 32, 32, generator=g)
    maps[10:, :, :16] += 4.0
    test_keys = torch.cat([thumbnails(0.5 + 0.01 * torch.rand(2, 1, 32, 32, generator=g)),
                           torch.tensor([[0.05] * 6, [5.05] * 6])], dim=1)
    test_maps = 1.05 + torch.zeros(2, 32, 32)
    test_maps[0, 20, 8] += 1.5  # a faint defect on the first surface's left half
    test_maps[1, :, :16] += 4.0  # the second surface, as it always is
    by_thumbnail = normal_reference(maps, keys, 8, two_sided=True)
    by_head = normal_reference(maps, keys, 8, two_sided=True, head_weight=0.5)
    assert by_thumbnail.head_weight == 0 and by_head.head_weight == 0.5
    z = by_thumbnail(test_maps, test_keys)
    assert z[0, 20, 8] < 2  # within the mixed neighbours' spread
    z = by_head(test_maps, test_keys)
    assert z[0].flatten().argmax() == 20 * 32 + 8 and z[0, 20, 8] > 10
    assert z[1].amax() < z[0, 20, 8] / 3  # the second surface's hot half is normal
    plain = normal_reference(maps, thumbnails(images), 8, two_sided=True, head_weight=0.5)
    assert plain.head_weight == 0  # keys without a head's part: thumbnails alone


def test_the_run_measures_the_model_and_the_baseline_each_against_its_own_neighbours(
        monkeypatch):
    """The score stage's references: the model's maps against `score.neighbours` normal
    images found by shape, the mean-image baseline's against `score.baseline_neighbours`
    found by the thumbnails as they are (its own best on the tiles, a stronger baseline)."""
    g = torch.Generator().manual_seed(2)
    images, maps = _two_kinds(15, g)
    batch = {"image": images, "index": torch.arange(30)}
    keys = torch.cat([thumbnails(images), torch.rand(30, 8, generator=g)], dim=1)  # a head's
    monkeypatch.setattr(stages, "_maps", lambda *a, **k: iter([(maps, keys, batch)]))

    class Baseline:
        def maps(self, imgs, sigma):
            return maps + 1.0

    cfg = load_config(["swinmae.score.neighbours=6", "swinmae.score.baseline_neighbours=9"])
    model, base = stages._normal_references(types.SimpleNamespace(cfg=cfg), None, Baseline(),
                                            [None] * 30)
    assert (model.neighbours, model.match_shape, model.head_weight) == (6, True, 0.5)
    assert torch.equal(model.keys, keys)
    assert (base.neighbours, base.match_shape, base.head_weight) == (9, False, 0.0)
    assert torch.equal(base.keys, thumbnails(images))  # it has no head to match by
    assert torch.equal(base.maps.float(), (maps + 1.0).half().float())
    cfg = load_config(["swinmae.score.baseline_neighbours=0"])  # 0: against all of them
    _, base = stages._normal_references(types.SimpleNamespace(cfg=cfg), None, Baseline(),
                                        [None] * 30)
    assert isinstance(base, PixelErrorStats)


def test_a_neighbour_count_that_leaves_none_out_is_one_reference_for_all():
    g = torch.Generator().manual_seed(1)
    images, maps = _two_kinds(4, g)
    for k in (0, 8, 50):
        ref = normal_reference(maps, thumbnails(images), k, two_sided=False)
        assert isinstance(ref, PixelErrorStats) and ref.neighbours == 0  # scoring.json's 0
        assert torch.allclose(ref.mean, maps.mean(dim=0))


def test_thumbnails_average_bins_of_the_channel_mean():
    img = torch.zeros(1, 3, 64, 64)
    img[:, :, :4, :4] = 0.9  # exactly the first 4×4 bin
    t = thumbnails(img)
    assert t.shape == (1, THUMB * THUMB)
    assert t[0, 0] == pytest.approx(0.9) and t[0, 1:].abs().max() == 0


@pytest.mark.parametrize("neighbours", [0, 5])
def test_saved_reference_loads_to_the_same_z_scores(tmp_path, neighbours):
    g = torch.Generator().manual_seed(2)
    images, maps = _two_kinds(6, g)
    test_images, test_maps = _two_kinds(2, g)
    ref = normal_reference(maps, thumbnails(images), neighbours, two_sided=True)
    save_normal_reference(tmp_path / "normal_stats.npz", ref)
    back = load_normal_reference(tmp_path / "normal_stats.npz", two_sided=True)
    assert type(back) is type(ref)
    keys = thumbnails(test_images)
    assert torch.equal(back(test_maps, keys), ref(test_maps, keys))


def test_old_runs_mean_and_std_still_load(tmp_path):
    np.savez(tmp_path / "normal_stats.npz", mean=np.ones((8, 8), np.float32),
             std=np.full((8, 8), 2.0, np.float32))
    ref = load_normal_reference(tmp_path / "normal_stats.npz", two_sided=False)
    assert isinstance(ref, PixelErrorStats)
    assert torch.allclose(ref(torch.full((1, 8, 8), 5.0)), torch.full((1, 8, 8), 2.0))


@pytest.mark.parametrize("neighbours", [0, 5])
def test_two_maps_of_an_image_are_each_measured_against_their_kind_then_added(neighbours):
    """A defect head's run has two maps per image (error, probability) on different scales:
    each is put in units of normal images' maps of its own kind, then the z-scores are added."""
    g = torch.Generator().manual_seed(4)
    images, error = _two_kinds(6, g)
    probability = 0.01 * torch.rand(12, 32, 32, generator=g)  # far smaller than the error
    test_images, test_error = _two_kinds(2, g)
    test_probability = 0.01 * torch.rand(4, 32, 32, generator=g)
    test_probability[0, 5, 5] = 0.5  # the head sees a defect the error does not
    keys = thumbnails(images)
    both = normal_reference(torch.stack([error, probability], dim=1), keys, neighbours, True)
    assert both.maps_per_image == 2
    test_keys = thumbnails(test_images)
    z = both(torch.stack([test_error, test_probability], dim=1), test_keys)  # (4, 32, 32)
    apart = [normal_reference(m, keys, neighbours, True)(t, test_keys)
             for m, t in ((error, test_error), (probability, test_probability))]
    assert z.shape == (4, 32, 32) and torch.allclose(z, apart[0] + apart[1], atol=1e-5)
    assert z[0].flatten().argmax() == 5 * 32 + 5  # the small-scale map's defect counts


@pytest.mark.parametrize("neighbours", [0, 5])
def test_a_map_that_hardly_varies_does_not_explode(neighbours):
    """A barely trained head's probability is ~0.47 everywhere; at float16 its normal maps are
    all the same number, so only the floor relative to the map's level bounds the z-scores."""
    g = torch.Generator().manual_seed(5)
    images = torch.rand(12, 1, 32, 32, generator=g)
    maps = (0.4688 + 1e-6 * torch.rand(12, 32, 32, generator=g)).half().float()
    ref = normal_reference(maps, thumbnails(images), neighbours, two_sided=True)
    test_keys = thumbnails(torch.rand(2, 1, 32, 32, generator=g))
    z = ref(torch.full((2, 32, 32), 0.4690), test_keys)
    assert z.max() < 1  # 0.0002 apart at a floor of 0.00047
    bank = {"maps": maps.numpy(), "keys": thumbnails(images).numpy()} if neighbours else None
    normal = {"neighbours": neighbours, "thumbnail": THUMB, "two_sided": True} if neighbours \
        else {"mean": ref.mean.tolist(), "std": ref.std.tolist(), "two_sided": True}
    assert export_predict.in_normal_units(np.full((2, 32, 32), 0.4690, np.float32),
                                          test_keys.numpy(), normal, bank).max() < 1


@pytest.mark.parametrize("size", [64, 72])  # 72: thumbnail bins of unequal width
@pytest.mark.parametrize("neighbours", [0, 4])
@pytest.mark.parametrize("per_image", [(), (2,)])  # one map per image, or two (defect head)
@pytest.mark.parametrize("cap", [0.0, 1.0])  # score.map_cap: 1 bites on these maps
@pytest.mark.parametrize("match_shape, match_head", [(False, 0.0), (True, 0.0), (True, 0.5)])
def test_predict_measures_maps_as_the_run_did(size, neighbours, per_image, cap, match_shape,
                                              match_head):
    """export_predict.py (numpy, no torch) against the run's torch reference, given the keys
    model.onnx gives it (thumbnails, then with a head its descriptor)."""
    g = torch.Generator().manual_seed(3)
    images = torch.rand(12, 3, size, size, generator=g)
    maps = torch.rand(12, *per_image, size, size, generator=g)
    test_images = torch.rand(3, 3, size, size, generator=g)
    test_maps = 2 * torch.rand(3, *per_image, size, size, generator=g)
    keys, test_keys = (torch.cat([thumbnails(x), 5 * torch.rand(len(x), 6, generator=g)], dim=1)
                       for x in (images, test_images))
    ref = normal_reference(maps, keys, neighbours, two_sided=True, cap=cap,
                           match_shape=match_shape, head_weight=match_head)
    if isinstance(ref, NearestNormal):
        normal = {"neighbours": neighbours, "thumbnail": THUMB, "two_sided": True,
                  "match_shape": match_shape, "match_head": match_head}
        bank = {"maps": ref.maps.float().numpy(), "keys": ref.keys.numpy()}
    else:
        normal = {"mean": ref.mean.tolist(), "std": ref.std.tolist(), "two_sided": True}
        bank = None
    ours = export_predict.in_normal_units(test_maps.numpy(), test_keys.numpy(),
                                          normal | {"map_cap": cap}, bank)
    assert np.allclose(ours, ref(test_maps, test_keys).numpy(), rtol=1e-4, atol=1e-4)
    if per_image and cap:  # the cap bit: uncapped sums are larger
        plain = export_predict.in_normal_units(test_maps.numpy(), test_keys.numpy(), normal,
                                               bank)
        assert (plain > ours + 0.1).any()


@pytest.mark.parametrize("sigma, side", [(0.5, 16), (2.0, 32), (16.0, 64), (40.0, 64)])
def test_predict_smooths_as_the_run_does(sigma, side):
    """predict.py's blur matrix against the run's separable Gaussian with reflected borders,
    the kernel cut at the side when 3 sigma is longer (40 px on 64)."""
    maps = torch.rand(3, side, side, generator=torch.Generator().manual_seed(8))
    ours = export_predict.blur(maps.numpy(), sigma)
    assert ours.shape == (3, side, side)
    np.testing.assert_allclose(ours, gaussian_blur(maps, sigma).numpy(), atol=1e-5)


def test_predict_draws_the_pixel_maps_as_the_run_does():
    """`--maps`: predict.py's pixel maps (the fine z-maps plus the coarse scale, counted above
    its reference only) against the score stage's `measure` on the same maps and keys."""
    g = torch.Generator().manual_seed(9)
    images, test_images = (torch.rand(n, 1, 32, 32, generator=g) for n in (30, 4))
    maps, test_maps = (torch.rand(n, 3, 32, 32, generator=g) for n in (30, 4))
    test_maps[1, 1, 8:24, 8:24] += 0.3  # a broad rise of the head's map
    keys, test_keys = thumbnails(images), thumbnails(test_images)
    cfg = load_config(["swinmae.score.coarse_neighbours=12"]).swinmae.score
    ref = normal_reference(maps, keys, 5, two_sided=True, cap=10.0, match_shape=True)
    coarse = CoarseScale.of(ref, cfg)
    _, shown = stages.measure(test_maps, test_keys, ref, coarse, cfg)
    normal = {"neighbours": 5, "thumbnail": THUMB, "two_sided": True, "match_shape": True,
              "map_cap": 10.0, "coarse": {"sigma": coarse.sigma, "weight": coarse.weight,
                                          "neighbours": 12}}
    bank = {"maps": ref.maps.float().numpy(), "keys": ref.keys.numpy(),
            "coarse": coarse.reference.maps.float().numpy()}  # as the export saves them
    fine = export_predict.in_normal_units(test_maps.numpy(), test_keys.numpy(), normal, bank)
    ours = fine + export_predict.coarse_units(test_maps.numpy(), test_keys.numpy(), normal, bank)
    np.testing.assert_allclose(ours, shown.numpy(), rtol=1e-3, atol=1e-3)
    assert (ours - fine)[1, 8:24, 8:24].mean() > 5  # the coarse scale is there
