"""The defect head (`score.method: head`): synthetic defects made from normal images, the
U-Net's shapes and gradients, its training loss falling, and the reconstruction it sees."""
from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score

from core.images.defects import blob_masks, synthetic_defects
from core.images.head import DefectHead, HeadTraining, UNet, focal_loss, head_input, \
    head_outputs, masked_reconstruction
from core.images.swinmae import SwinMAE, preset


def _parts(B: int = 8, S: int = 64) -> torch.Tensor:
    """(B, 1, S, S) normal 'parts': a bright disc with a fine stripe texture, slightly varied."""
    g = torch.Generator().manual_seed(1)
    y, x = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    disc = (((y - S / 2) ** 2 + (x - S / 2) ** 2) < (0.35 * S) ** 2).float()
    stripes = 0.5 + 0.1 * torch.sin(x / 1.5)
    base = 0.2 + 0.6 * disc * stripes
    return (base + 0.02 * torch.randn(B, 1, S, S, generator=g)).clamp(0, 1)


def test_a_defect_changes_only_the_pixels_of_its_mask():
    images = _parts(64)
    out, masks = synthetic_defects(images, 1.0, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and masks.shape == (64, 1, 64, 64)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    outside = (masks == 0).expand_as(images)
    assert torch.equal(out[outside], images[outside])  # nothing changes off the mask
    changed = ((out - images).abs() > 1e-6) & ~outside
    # inside, most pixels change (a fill can equal the original only by chance)
    assert changed.sum() > 0.8 * masks.sum()
    assert out.min() >= 0 and out.max() <= 1


def test_defect_share_sets_how_many_images_get_one_and_blobs_range_from_specks_to_a_third():
    images = _parts(200, 32)
    _, masks = synthetic_defects(images, 0.5, torch.Generator().manual_seed(0))
    with_defect = masks.flatten(1).amax(dim=1) > 0
    assert 60 < with_defect.sum() < 140  # ~half of 200
    area = masks.flatten(1).mean(dim=1)[with_defect]
    assert area.min() > 0.003 and area.max() < 0.33  # 0.5 % to 30 % of the image, about
    assert (area < 0.05).any() and (area > 0.15).any()  # both ends of the range are drawn
    _, all_masks = synthetic_defects(images, 1.0, torch.Generator().manual_seed(0))
    assert (all_masks.flatten(1).amax(dim=1) > 0).all()


def test_blob_masks_are_seeded():
    a, b = (blob_masks(4, 48, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a, b) and a.shape == (4, 1, 48, 48)


@pytest.mark.parametrize("size", [64, 72])
def test_the_head_maps_every_pixel_and_every_weight_gets_a_gradient(size):
    head = DefectHead(3, 4)
    x = torch.rand(2, 3, size, size)
    logits = head(x)
    assert logits.shape == (2, 1, size, size) and logits.is_contiguous()
    focal_loss(logits, (torch.rand(2, 1, size, size) > 0.9).float()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_an_ensemble_maps_each_pixel_once_per_head_and_its_map_is_their_mean_probability():
    torch.manual_seed(0)
    head = DefectHead(3, 4, count=3).eval()
    x = torch.rand(2, 3, 64, 64)
    logits = head(x)  # (2, 3, 64, 64): one map per member
    assert logits.shape == (2, 3, 64, 64)
    singles = [member(x)[:, 0] for member in head.members]
    assert all(torch.equal(logits[:, k], singles[k]) for k in range(3))
    assert not torch.allclose(singles[0], singles[1])  # each from its own initialisation
    mae, gray = _Identity("uniform"), torch.rand(2, 1, 64, 64)  # its head input: 3 channels
    expected = torch.stack([torch.sigmoid(m(head_input(mae, gray))[:, 0]) for m in head.members])
    assert torch.allclose(head_outputs(mae, head, gray)[0], expected.mean(dim=0), atol=1e-6)


def test_a_head_saved_before_ensembles_loads_as_an_ensemble_of_one():
    torch.manual_seed(0)
    old = UNet(3, 4).eval()  # what a run's head/best.pt held before `head.ensemble`
    head = DefectHead(3, 4)
    head.load_checkpoint_state(old.state_dict())
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(head.eval()(x), old(x))
    with pytest.raises(RuntimeError, match="members.1"):  # a mismatch is not silently ignored
        DefectHead(3, 4, count=2).load_checkpoint_state(old.state_dict())


def test_focal_loss_counts_each_member_against_the_same_mask():
    target = (torch.rand(2, 1, 8, 8) > 0.8).float()
    a, b = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    both = focal_loss(torch.cat([a, b], dim=1), target)
    assert torch.allclose(both, (focal_loss(a, target) + focal_loss(b, target)) / 2)


def test_focal_loss_is_low_for_confident_right_answers_and_high_for_wrong_ones():
    target = torch.tensor([[1.0, 0.0, 0.0]])
    right, wrong = torch.tensor([[6.0, -6.0, -6.0]]), torch.tensor([[-6.0, 6.0, 6.0]])
    assert focal_loss(right, target) < 1e-4 < 1.0 < focal_loss(wrong, target)


class _Identity(SwinMAE):
    """A tiny Swin MAE whose every reconstruction is the image itself."""

    def __init__(self, masking: str):
        super().__init__(preset("tiny", in_chans=3, masking=masking))

    def reconstruct(self, imgs, mask, keep=None):
        return imgs.clone()


@pytest.mark.parametrize("masking", ["uniform", "block"])
def test_masked_reconstruction_averages_over_the_masks_that_hide_each_pixel(masking):
    imgs = torch.rand(2, 3, 64, 64)
    # a perfect reconstruction stays the image: every pixel is hidden at least once, and its
    # predictions are averaged, not summed
    assert torch.allclose(masked_reconstruction(_Identity(masking), imgs), imgs, atol=1e-6)
    x = head_input(_Identity(masking), imgs)
    assert x.shape == (2, 7, 64, 64) and torch.allclose(x[:, 6], torch.zeros(2, 64, 64))


@pytest.mark.parametrize("count", [1, 2])
def test_training_the_head_lowers_its_loss_and_it_finds_the_defects(one_torch_thread, count):
    torch.manual_seed(0)
    mae = SwinMAE(preset("tiny", in_chans=1))
    head = DefectHead(3, 4, count)
    training = HeadTraining(mae, head, defect_share=1.0)
    assert [n for n, _ in training.named_parameters()] == \
        [f"head.{n}" for n, _ in head.named_parameters()]  # Swin MAE is frozen and not saved
    opt = torch.optim.AdamW(training.parameters(), lr=3e-3)
    images = _parts(8)

    def loss() -> torch.Tensor:  # the same 8 defects every step (HeadTraining draws them)
        with torch.random.fork_rng():
            torch.manual_seed(123)
            return training.loss(images)

    losses = []
    for _ in range(60):
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for p in mae.parameters())
    with torch.random.fork_rng():
        torch.manual_seed(123)
        with_defects, masks = synthetic_defects(images, 1.0)
    maps = head_outputs(mae, head, with_defects)[0]  # (8, 64, 64): its map ranks their pixels high
    assert roc_auc_score(masks.flatten().numpy(), maps.flatten().numpy()) > 0.9


def test_a_detector_with_a_head_makes_the_error_map_and_the_head_map(one_torch_thread):
    from core.config import load_config
    from core.images.scoring import AnomalyMaps, gaussian_blur
    torch.manual_seed(0)
    mae, head = SwinMAE(preset("tiny", in_chans=1)).eval(), DefectHead(3, 4).eval()
    cfg = load_config([]).swinmae.score
    images = _parts(3)
    maps = AnomalyMaps(mae, cfg, head)(images)
    assert maps.shape == (3, 2, 64, 64)
    assert torch.allclose(maps[:, 0], AnomalyMaps(mae, cfg)(images))  # the reconstruction's
    assert torch.allclose(maps[:, 1], gaussian_blur(head_outputs(mae, head, images)[0], cfg.sigma))


def test_a_detector_keys_each_image_by_its_thumbnail_and_what_its_heads_see(one_torch_thread):
    """`AnomalyMaps.keyed`: the maps as the detector makes them, and each image's key: its
    thumbnail, then with a head and `match_head` each deepest feature channel's mean and
    spread over the image; zoomed, the mean of its tiles' descriptors."""
    from core.config import load_config
    from core.images.scoring import THUMB, AnomalyMaps, thumbnails
    from core.images.tiling import tiles_of
    torch.manual_seed(0)
    mae, head = SwinMAE(preset("tiny", in_chans=1)).eval(), DefectHead(3, 4).eval()
    cfg = load_config([]).swinmae.score
    images = _parts(3)
    maps, keys = AnomalyMaps(mae, cfg, head).keyed(images)
    assert torch.equal(maps, AnomalyMaps(mae, cfg, head)(images))
    features = head_outputs(mae, head, images)[1].flatten(2)  # (3, 32, 64 places)
    assert keys.shape == (3, THUMB * THUMB + 2 * 32)
    assert torch.equal(keys[:, :THUMB * THUMB], thumbnails(images))
    assert torch.allclose(keys[:, THUMB * THUMB:],
                          torch.cat([features.mean(2), features.std(2)], 1), atol=1e-5)
    off = cfg.model_copy(update={"match_head": 0.0})
    assert torch.equal(AnomalyMaps(mae, off, head).keyed(images)[1], thumbnails(images))
    assert torch.equal(AnomalyMaps(mae, cfg).keyed(images)[1], thumbnails(images))  # no head
    zoomed = torch.nn.functional.interpolate(images, scale_factor=2.0, mode="bilinear")
    keys = AnomalyMaps(mae, cfg, head).keyed(zoomed)[1]  # 2 x 2 tiles of 64 px each
    tiles = AnomalyMaps(mae, cfg, head).keyed(tiles_of(zoomed, 64))[1][:, THUMB * THUMB:]
    assert torch.allclose(keys[:, THUMB * THUMB:], tiles.view(4, 3, -1).mean(0), atol=1e-5)


def test_the_heads_deepest_features_come_with_the_same_logits():
    torch.manual_seed(0)
    head = DefectHead(3, 4, count=2).eval()
    x = torch.rand(2, 3, 64, 64)
    logits, features = head.with_features(x)
    assert torch.equal(logits, head(x))
    assert features.shape == (2, 2 * 8 * 4, 8, 8)  # K 8w channels at S / 8
    assert torch.equal(features[:, 32:], head.members[1].encode(x)[-1])


def test_a_detector_with_a_bank_of_the_heads_features_adds_their_distance_map(one_torch_thread):
    from core.config import load_config
    from core.images.knn import MemoryBank, distance_maps
    from core.images.scoring import AnomalyMaps, gaussian_blur
    torch.manual_seed(0)
    mae, head = SwinMAE(preset("tiny", in_chans=1)).eval(), DefectHead(3, 4).eval()
    cfg = load_config([]).swinmae.score
    normal, images = _parts(4), _parts(3)
    features = head_outputs(mae, head, normal)[1]  # (4, 32, 8, 8)
    bank = MemoryBank.build(iter(features.split(2)), 4, size=64, standardise=True)
    maps = AnomalyMaps(mae, cfg, head, bank)(images)
    assert maps.shape == (3, 3, 64, 64)
    assert torch.allclose(maps[:, :2], AnomalyMaps(mae, cfg, head)(images))  # error, head
    expected = distance_maps(bank, head_outputs(mae, head, images)[1], (64, 64))
    assert torch.allclose(maps[:, 2], gaussian_blur(expected, cfg.sigma), atol=1e-5)
    left_out = AnomalyMaps(mae, cfg, head, bank)(normal, torch.arange(4))[:, 2]
    kept = AnomalyMaps(mae, cfg, head, bank)(normal)[:, 2]  # their own entries in the bank
    assert (left_out >= kept - 1e-5).all() and left_out.mean() > 2 * kept.mean()


def test_the_head_needs_normalized_maps_to_add_them():
    from core.config import load_config
    from core.errors import ConfigError
    with pytest.raises(ConfigError, match="swinmae.score.normalize: true"):
        load_config(["swinmae.score.normalize=false"])


def test_the_default_has_the_head_and_the_reconstruction_preset_is_the_default_without():
    from core.config import load_config, presets
    assert "reconstruction" in presets("swinmae")  # so the console's preset picker offers it
    default, plain, tiny = (load_config([f"swinmae.preset={name}"]).swinmae
                            for name in ("default", "reconstruction", "tiny"))
    assert (default.score.method, plain.score.method) == ("head", "reconstruction")
    assert plain.model == default.model and plain.train == default.train
    assert tiny.score.method == "reconstruction"  # seconds: no head to train
