"""Feature-space scoring (`score.method: knn`): the memory bank's nearest-neighbour distances,
its bound, the greedy coreset, leaving a training image's own patches out, and a planted
out-of-distribution patch found where it was planted."""
from __future__ import annotations

import pytest
import torch

from core.config import defaults, from_dict, to_dict
from core.errors import ConfigError
from core.images import knn
from core.images.config import SwinMAEConfig
from core.images.knn import CANDIDATES, MemoryBank, greedy_coreset, knn_maps, patch_features
from core.images.scoring import AnomalyMaps
from core.images.swinmae import SwinMAE, preset
from core.images.tiling import tiled


def _normal_features(n_images: int, g: int = 8, F: int = 16, seed: int = 0) -> torch.Tensor:
    """(n_images, F, g, g): every patch near one of 4 normal patterns."""
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn(4, F, generator=torch.Generator().manual_seed(99))
    which = torch.randint(4, (n_images, g, g), generator=gen)
    feats = patterns[which] + 0.05 * torch.randn(n_images, g, g, F, generator=gen)
    return feats.permute(0, 3, 1, 2)


def test_the_distance_is_to_the_nearest_entry():
    bank = MemoryBank(torch.tensor([[0.0, 0.0], [3.0, 4.0]]), torch.tensor([0, 1]))
    feats = torch.tensor([[1.0, 0.0], [3.0, 5.0]]).T.reshape(1, 2, 1, 2)  # two patches
    assert torch.allclose(bank(feats), torch.tensor([[[1.0, 1.0]]]))


def test_the_nearest_distance_is_exact_where_the_fast_expansion_cannot_tell_entries_apart():
    """Far from the origin |q|² + |k|² - 2 q·k rounds away differences of a few hundredths in
    float32, so it may rank the farther of two entries first; the shortlist's distances are
    measured directly, and the nearest one wins."""
    far = torch.full((1, 64), 300.0)
    near, farther = far.clone(), far.clone()
    near[0, 0] += 0.03
    farther[0, 1] += 0.05
    for order in ([near, farther], [farther, near]):
        bank = MemoryBank(torch.cat(order), torch.tensor([0, 1]))
        dist = bank(far.view(1, 64, 1, 1))  # (1, 1, 1)
        assert dist.item() == pytest.approx(0.03, rel=1e-3)


def test_a_standardised_bank_measures_each_channel_by_its_spread():
    spreads = torch.tensor([100.0, 0.01])[None, :, None, None]  # channel 0 10,000 times wider
    normal = torch.randn(8, 2, 4, 4, generator=torch.Generator().manual_seed(0)) * spreads \
        + 1000.0  # both far from 0
    bank = MemoryBank.build(iter(normal.split(4)), 8, size=128, standardise=True)
    assert torch.allclose(bank.shift, normal.mean(dim=(0, 2, 3)), rtol=1e-4)
    probe = normal[:1].clone()
    probe[0, 1, 0, 0] += 0.1  # 10 spreads off in the narrow channel
    dist = bank(probe)
    assert dist[0, 0, 0] > 5 and dist[0].flatten()[1:].max() < 1e-3  # the others are entries


def test_a_channel_constant_in_training_cannot_make_a_huge_distance():
    normal = torch.randn(8, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    normal[:, 3] = 7.0  # a unit that stayed off among normal patches
    bank = MemoryBank.build(iter(normal.split(4)), 8, size=128, standardise=True)
    probe = normal[:1].clone()
    probe[0, 3, 0, 0] += 1.0  # one spread of the other channels off, in the constant one
    assert 5 < bank(probe)[0, 0, 0] < 15  # its spread floored at a tenth of the median (~1)


def test_a_planted_out_of_distribution_patch_scores_highest_where_it_was_planted():
    normal = _normal_features(20)
    bank = MemoryBank.build(iter(normal.split(4)), 20, size=64)
    test = _normal_features(2, seed=5)
    test[1, :, 2, 6] = 5.0  # one patch unlike any normal pattern
    dist = bank(test)  # (2, 8, 8)
    assert dist[0].max() < 0.5  # normal patches lie near the bank
    assert dist[1].flatten().argmax() == 2 * 8 + 6 and dist[1, 2, 6] > 5 * dist[0].max()


def test_the_bank_is_bounded_whatever_the_number_of_images():
    size = 32
    for n_images in (3, 400):
        bank = MemoryBank.build(iter(_normal_features(n_images).split(50)), n_images, size)
        assert bank.bank.shape == (size, 16) and bank.owner.shape == (size,)
        assert 0 <= bank.owner.min() and bank.owner.max() < n_images


def test_the_coreset_keeps_a_rare_pattern_that_random_subsampling_would_miss():
    common = 0.1 * torch.randn(5000, 8, generator=torch.Generator().manual_seed(0))
    rare = torch.full((3, 8), 10.0)  # 3 in 5003: a random draw of 20 all but never has one
    chosen = greedy_coreset(torch.cat([common, rare]), 20, torch.Generator().manual_seed(1))
    assert len(chosen.unique()) == 20
    assert (chosen >= 5000).any()
    assert torch.equal(greedy_coreset(rare, 20), torch.arange(3))  # fewer than size: all


def test_candidates_per_image_are_capped(monkeypatch):
    """Each image gives about size × CANDIDATES / n_images of its patches to the selection."""
    seen = []

    def spy(features, size, generator):
        seen.append(len(features))
        return torch.arange(size)

    monkeypatch.setattr(knn, "greedy_coreset", spy)
    MemoryBank.build(iter(_normal_features(100, g=16).split(10)), 100, 8)
    assert seen == [100 * -(-8 * CANDIDATES // 100)]  # not the 100 × 256 patches


def test_excluding_an_image_leaves_its_own_patches_out():
    feats = _normal_features(2)
    bank = MemoryBank(feats.permute(0, 2, 3, 1).reshape(-1, 16),
                      torch.arange(2).repeat_interleave(64))  # every patch of both images
    # each patch finds itself (up to the rounding of |a|² - 2ab + |b|² in float32)
    assert bank(feats).max() < 0.01
    left_out = bank(feats, torch.tensor([0, 1]))
    assert left_out.min() > 0.02  # now only the other image's patches count (noise 0.05)
    assert bank(feats[:1], torch.tensor([1])).max() < 0.01


def test_the_bank_saves_and_loads(tmp_path):
    bank = MemoryBank(torch.randn(5, 3), torch.arange(5))
    bank.save(tmp_path / "bank.pt")
    loaded = MemoryBank.load(tmp_path / "bank.pt")
    assert torch.equal(loaded.bank, bank.bank) and torch.equal(loaded.owner, bank.owner)


def _model() -> SwinMAE:
    torch.manual_seed(0)
    return SwinMAE(preset("tiny", in_chans=1)).eval()


def test_patch_features_stack_the_chosen_stages_on_the_finest_grid():
    model = _model()  # tiny: 64 px, patch 4, stages of width 32 and 64 on grids 16 and 8
    imgs = torch.rand(2, 1, 64, 64)
    assert patch_features(model, imgs, (0, 1)).shape == (2, 96, 16, 16)
    assert patch_features(model, imgs, (1,)).shape == (2, 64, 8, 8)
    f = patch_features(model, imgs, (0,))
    assert torch.allclose(f.mean(dim=1), torch.zeros(2, 16, 16), atol=1e-4)  # standardised


def test_a_detector_with_a_bank_finds_a_planted_spot_in_an_image(one_torch_thread):
    model = _model()
    gen = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    texture = 0.5 + 0.2 * torch.sin(x / 2.0)
    normal = (texture + 0.02 * torch.randn(24, 1, 64, 64, generator=gen)).clamp(0, 1)
    bank = MemoryBank.build((patch_features(model, b, (0, 1)) for b in normal.split(8)), 24, 256)
    cfg = defaults("swinmae.score", method="knn", sigma=0.0)
    detector = AnomalyMaps(model, cfg, bank=bank)
    test = normal[:2].clone()
    test[1, :, 40:48, 8:16] = 1.0  # a bright spot
    maps = detector(test)  # (2, 64, 64)
    assert maps.shape == (2, 64, 64)
    spot = maps[1, 40:48, 8:16].mean()
    assert spot > 3 * maps[0].mean() and spot > 3 * maps[1, :32].mean()
    assert torch.equal(maps, knn_maps(model, bank, test, (0, 1)))  # sigma 0: the raw distances


def test_knn_stages_must_exist_in_the_model():
    raw = to_dict(defaults("swinmae"))
    raw["score"] = raw["score"] | {"method": "knn", "knn": {"stages": [0, 3], "bank_size": 10}}
    cfg = from_dict(SwinMAEConfig, raw, "swinmae")
    with pytest.raises(ConfigError, match=r"swinmae.score.knn.stages.*0 to 2.*\[0, 3\]"):
        cfg.check()
    raw["score"]["method"] = "head"  # the knn settings matter only to knn
    from_dict(SwinMAEConfig, raw, "swinmae").check()


def test_a_zoomed_detector_leaves_each_tile_of_a_training_image_out_with_its_image(
        one_torch_thread):
    model = _model()  # 64 px tiles
    imgs = torch.rand(2, 1, 128, 128)  # zoom 2: 4 tiles each
    feats = tiled(lambda t: patch_features(model, t, (0,)), imgs, 64)  # (2, 32, 32, 32)
    every = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])  # all patches of both
    bank = MemoryBank(every, torch.arange(2).repeat_interleave(32 * 32))
    cfg = defaults("swinmae.score", method="knn", sigma=0.0, knn={"stages": [0],
                                                                  "bank_size": 10})
    detector = AnomalyMaps(model, cfg, bank=bank)
    assert detector(imgs).max() < 0.05  # every patch finds itself
    left_out = detector(imgs, torch.tensor([0, 1]))
    assert left_out.min() > 0.1  # on every tile, only the other image's patches remain
