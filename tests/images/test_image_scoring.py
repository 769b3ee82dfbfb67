"""Tests of the image stream's scoring path: `core/images/scoring.py` (Gaussian smoothing, pixel
error, image scores, anomaly maps with complementary masks), `core/images/baselines.py` (the
mean-image baseline), `core/images/overlays.py` (heatmap overlays) and `pixel_auroc` in
`core/images/stages.py`.

Hand-computed cases throughout; one test trains the tiny Swin MAE for a few seconds on smooth
textures and checks that its anomaly map lights up on a planted bright square."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from core.config import defaults
from core.images.baselines import MeanImageBaseline
from core.images.config import ImageScoreConfig
from core.images.overlays import OUTLINE, heat_colors, mask_outline, overlay, save_overlay
from core.images.scoring import (PixelErrorStats, anomaly_maps, gaussian_blur, image_scores,
                                 pixel_error)
from core.images.stages import pixel_auroc
from core.images.swinmae import SwinMAE, complementary_block_masks, preset


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """Every test here runs tiny tensors on one thread (see conftest.one_torch_thread)."""
    yield


def score_cfg(**changes) -> ImageScoreConfig:
    return defaults("swinmae.score", **changes)


# ---------------------------------------------------------------- gaussian_blur


def test_blur_with_sigma_zero_is_the_identity():
    maps = torch.rand(2, 9, 7)
    assert torch.equal(gaussian_blur(maps, 0.0), maps)


def test_blur_of_an_impulse_is_a_normalised_symmetric_gaussian():
    """An impulse far from the borders keeps its mass, spreads symmetrically, and falls off
    as exp(-d² / 2σ²) (the separable kernel is the outer product of the 1-D one)."""
    sigma, c = 1.5, 16
    impulse = torch.zeros(1, 33, 33, dtype=torch.float64)
    impulse[0, c, c] = 1.0
    out = gaussian_blur(impulse, sigma)[0]  # (33, 33)
    assert out.shape == (33, 33)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-12)  # radius 5 < 16: no border effect
    assert torch.allclose(out, out.flip(0)) and torch.allclose(out, out.flip(1))
    assert torch.allclose(out, out.T)
    assert out.argmax().item() == c * 33 + c
    assert (out[c, c + 1] / out[c, c]).item() == pytest.approx(math.exp(-0.5 / sigma**2))
    assert (out[c + 2, c + 1] / out[c, c]).item() == pytest.approx(math.exp(-2.5 / sigma**2))
    assert out[c, c + 7].item() == 0.0  # beyond the kernel radius ceil(3σ) = 5


def test_blur_preserves_a_sum_away_from_the_borders_and_constants_everywhere():
    maps = torch.zeros(2, 40, 40, dtype=torch.float64)
    maps[0, 15:25, 12:20] = torch.rand(10, 8, dtype=torch.float64)
    maps[1] = 3.0
    out = gaussian_blur(maps, 2.0)
    assert out[0].sum().item() == pytest.approx(maps[0].sum().item(), rel=1e-12)
    assert torch.allclose(out[1], maps[1])  # reflected borders: a constant map stays constant
    # a map is blurred on its own: image 0's mass did not leak into image 1 (nor back)
    assert torch.equal(gaussian_blur(maps[:1], 2.0), out[:1])


# ---------------------------------------------------------------- pixel_error


def test_pixel_error_of_a_brightness_offset_has_no_gradient_term():
    imgs = torch.rand(2, 3, 8, 8)
    recon = imgs + 0.5
    l2 = pixel_error(recon, imgs, score_cfg(error="l2"))
    grad = pixel_error(recon, imgs, score_cfg(error="l2_grad", grad_weight=3.0))
    assert l2.shape == (2, 8, 8)
    assert torch.allclose(l2, torch.full_like(l2, 0.25))
    assert torch.allclose(grad, l2)  # same structure: the gradients agree


def test_pixel_error_averages_channels():
    imgs = torch.zeros(1, 2, 4, 4)
    recon = imgs.clone()
    recon[0, 1] = 2.0  # only channel 1 is off, by 2 everywhere: (0 + 4) / 2
    assert torch.allclose(pixel_error(recon, imgs, score_cfg()), torch.full((1, 4, 4), 2.0))


def test_pixel_error_l2_grad_of_one_wrong_pixel():
    """One interior pixel off by e: L2 sees only it; the forward differences also change at
    its left and upper neighbours (by e each) and at itself (by -e along x and along y)."""
    e, w, (i, j) = 0.5, 2.0, (3, 4)
    imgs = torch.rand(1, 1, 8, 8)
    recon = imgs.clone()
    recon[0, 0, i, j] += e
    l2 = pixel_error(recon, imgs, score_cfg(error="l2"))[0]
    expected = torch.zeros(8, 8)
    expected[i, j] = e**2
    assert torch.allclose(l2, expected)
    expected[i, j] += w * 2 * e**2
    expected[i, j - 1] = w * e**2
    expected[i - 1, j] = w * e**2
    got = pixel_error(recon, imgs, score_cfg(error="l2_grad", grad_weight=w))[0]
    assert torch.allclose(got, expected)


# ---------------------------------------------------------------- image_scores


def test_image_scores_max_and_topk_mean():
    maps = torch.zeros(2, 4, 5)  # 20 pixels each
    maps[0, 1, 2], maps[0, 3, 4], maps[0, 0, 0] = 9.0, 5.0, 1.0
    maps[1] = torch.arange(20, dtype=torch.float32).view(4, 5)
    assert image_scores(maps, "max", 0.01).tolist() == [9.0, 19.0]
    assert image_scores(maps, "topk_mean", 0.1).tolist() == [7.0, 18.5]  # top 2 of 20
    assert image_scores(maps, "topk_mean", 0.15).tolist() == [5.0, 18.0]  # top 3
    assert image_scores(maps, "topk_mean", 0.001).tolist() == [9.0, 19.0]  # at least 1 pixel
    assert image_scores(maps, "topk_mean", 1.0).tolist() == [0.75, 9.5]  # the plain mean


# ---------------------------------------------------------------- anomaly_maps


class StubModel:
    """Just what `anomaly_maps` uses of a SwinMAE: `.cfg`, `.grid`, `.reconstruct` and the real
    `.scoring_passes`. The reconstruction is the input plus (call number + 1), so each pixel's
    error says which reconstruction it was taken from; every mask passed in is recorded."""
    scoring_passes = SwinMAE.scoring_passes

    def __init__(self, image_size: int = 16, patch_size: int = 2, mask_unit: int = 2,
                 mask_ratio: float = 0.3, masking: str = "block"):
        self.cfg = SimpleNamespace(patch_size=patch_size, mask_unit=mask_unit,
                                   mask_ratio=mask_ratio, masking=masking)
        self.grid = image_size // patch_size
        self.masks: list[torch.Tensor | None] = []
        self.packings: list[torch.Tensor | None] = []

    def reconstruct(self, imgs: torch.Tensor, mask: torch.Tensor | None,
                    keep: torch.Tensor | None = None) -> torch.Tensor:
        self.masks.append(mask)
        self.packings.append(keep)
        return imgs + len(self.masks)


def test_masked_mode_takes_each_pixel_from_the_reconstruction_that_hid_it():
    model = StubModel(image_size=16, patch_size=2, mask_unit=2, mask_ratio=0.3)  # K = 4 masks
    imgs = torch.rand(3, 1, 16, 16)
    maps = anomaly_maps(model, imgs, score_cfg(mode="masked", sigma=0.0))
    masks = complementary_block_masks(8, 8, 2, 0.3)  # (4, 8, 8) patch grid
    assert len(model.masks) == len(masks) == 4
    assert all(torch.equal(got, want) for got, want in zip(model.masks, masks))
    which = masks.float().argmax(dim=0)  # (8, 8): the mask hiding each patch
    which_px = which.repeat_interleave(2, 0).repeat_interleave(2, 1)  # (16, 16) pixels
    expected = ((which_px + 1) ** 2).float()  # call k adds k + 1 → squared error (k + 1)²
    assert maps.shape == (3, 16, 16)
    assert torch.allclose(maps, expected.expand(3, 16, 16))  # (x + k) - x: rounding only


def test_uniform_masked_mode_averages_the_diagonal_packings_that_drop_each_pixel():
    """A uniform-masking model is scored with the 2 diagonal packings (top-left kept, then
    bottom-right) and no secondary mask; each pixel's error is the mean over the packings that
    dropped its unit: the top-left unit's from the second call only, the bottom-right's from
    the first only, the other two units' from both."""
    model = StubModel(image_size=16, patch_size=2, mask_unit=2, masking="uniform")  # 4×4 units
    imgs = torch.rand(3, 1, 16, 16)
    maps = anomaly_maps(model, imgs, score_cfg(mode="masked", sigma=0.0))
    assert model.masks == [None] * 2
    assert [k.shape for k in model.packings] == [(1, 2, 2)] * 2
    assert [k.unique().tolist() for k in model.packings] == [[0], [3]]
    # unit (i, j) is slot 2 * (i % 2) + (j % 2) of its block; call 1 adds 1, call 2 adds 2
    slot = (2 * (torch.arange(4)[:, None] % 2) + torch.arange(4)[None, :] % 2)  # (4, 4) units
    per_slot = torch.tensor([2.0 ** 2, (1 + 2 ** 2) / 2, (1 + 2 ** 2) / 2, 1.0])  # squared errors
    expected = per_slot[slot].repeat_interleave(4, 0).repeat_interleave(4, 1)  # (16, 16) pixels
    assert maps.shape == (3, 16, 16)
    assert torch.allclose(maps, expected.expand(3, 16, 16))


def test_masked_mode_counts_each_pixel_once():
    """A reconstruction that ignores the mask gives the same map in masked and full mode:
    the complementary masks neither drop nor double any pixel's error, with or without the
    gradient term and the smoothing."""
    known = torch.rand(2, 3, 16, 16)

    class Fixed(StubModel):
        def reconstruct(self, imgs, mask, keep=None):
            self.masks.append(mask)
            return known

    imgs = torch.rand(2, 3, 16, 16)
    for cfg in (score_cfg(sigma=0.0), score_cfg(error="l2_grad", sigma=1.0)):
        full_model = Fixed()
        full = anomaly_maps(full_model, imgs, cfg.model_copy(update={"mode": "full"}))
        assert full_model.masks == [None]
        for masking in ("block", "uniform"):
            masked = anomaly_maps(Fixed(mask_ratio=0.75, masking=masking), imgs,
                                  cfg.model_copy(update={"mode": "masked"}))
            assert torch.allclose(masked, full, atol=1e-6), masking
        assert torch.allclose(full, gaussian_blur(pixel_error(known, imgs, cfg), cfg.sigma))


def textures(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """(n, 1, size, size) sums of two sine gratings (0.5–1.5 cycles per image, random
    orientation and phase), values in [-2, 2]: smooth, so a hidden block is predictable."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")  # (H, W)
    theta = torch.rand(n, 2, 1, 1, generator=g) * math.pi
    freq = (0.5 + torch.rand(n, 2, 1, 1, generator=g)) * 2 * math.pi / size
    phase = torch.rand(n, 2, 1, 1, generator=g) * 2 * math.pi
    u = (xx * torch.cos(theta) + yy * torch.sin(theta)) * freq + phase  # (n, 2, H, W)
    return torch.sin(u).sum(dim=1, keepdim=True)  # (n, 1, H, W)


@pytest.mark.parametrize("masking", ["block", "uniform"])
def test_map_lights_up_on_a_planted_defect(masking):
    """Tiny Swin MAE, 60 steps on smooth textures (a few seconds on one thread); a test image
    gets a bright 8×8 square off the mask-unit grid. The map's peak and its top 1 % of pixels
    lie on the square (dilated by 3 px for the smoothing), and with block masking that image
    outscores clean ones. 60 steps found the square on 10 of 10 seeds tried with block masking
    (40 steps missed one: a border peak) and 6 of 6 with uniform masking. Uniform masking's raw
    maps do not separate the images at this budget (its clean maps peak where a quarter of the
    units must predict the rest: 0.7–1.3× the defect image's score over 6 seeds); the product
    scores in units of normal images' error per pixel (`score.normalize`), which this test
    leaves out."""
    torch.manual_seed(0)
    model = SwinMAE(preset("tiny", in_chans=1, masking=masking))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    train = textures(64, seed=100)
    for step in range(60):
        batch = train[(step * 16) % 64:][:16]
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()

    test = textures(6, seed=999)
    y0, x0, side = 21, 37, 8  # not a multiple of the 8 px mask unit: straddles four units
    test[0, :, y0:y0 + side, x0:x0 + side] += 3.0
    cfg = score_cfg()  # masked mode, L2, sigma 2, top 1 % mean
    maps = anomaly_maps(model, test, cfg)  # (6, 64, 64)
    near = torch.zeros(64, 64, dtype=torch.bool)
    near[y0 - 3:y0 + side + 3, x0 - 3:x0 + side + 3] = True
    peak = maps[0].flatten().argmax()
    assert near.flatten()[peak], f"peak at {divmod(peak.item(), 64)}"
    top = maps[0].flatten().topk(round(0.01 * 64 * 64)).indices
    assert near.flatten()[top].all()
    if masking == "block":
        scores = image_scores(maps, cfg.image_score, cfg.topk)
        assert scores[0] > 1.5 * scores[1:].max(), scores


# ---------------------------------------------------------------- MeanImageBaseline


def test_mean_image_baseline_on_hand_cases():
    a = torch.tensor([[[0.0, 0.0], [1.0, 5.0]]])  # (C=1, 2, 2)
    b = torch.tensor([[[2.0, 4.0], [1.0, 5.0]]])
    base = MeanImageBaseline.fit([{"image": a[None]}, {"image": b[None]}])  # two batches
    assert torch.equal(base.mean, torch.tensor([[[1.0, 2.0], [1.0, 5.0]]]))
    # population variance 1 and 4; constant pixels floored at 1e-4
    assert torch.allclose(base.var, torch.tensor([[[1.0, 4.0], [1e-4, 1e-4]]]))
    one_batch = MeanImageBaseline.fit([{"image": torch.stack([a, b])}])
    assert torch.equal(one_batch.mean, base.mean) and torch.equal(one_batch.var, base.var)

    x = torch.tensor([[[[3.0, 2.0], [1.0, 5.01]]]])  # (B=1, C=1, 2, 2)
    z2 = base.maps(x, sigma=0.0)
    assert z2.shape == (1, 2, 2)
    assert torch.allclose(z2, torch.tensor([[[4.0, 0.0], [0.0, 1.0]]]), rtol=1e-3)


def test_mean_image_baseline_averages_channels_and_smooths_like_the_model():
    imgs = torch.stack([torch.zeros(2, 8, 8), 2 * torch.ones(2, 8, 8)])  # mean 1, var 1
    base = MeanImageBaseline.fit([{"image": imgs}])
    x = torch.ones(1, 2, 8, 8)
    x[0, 0, 4, 4] = 3.0  # z² = 4 in channel 0, 0 in channel 1: mean 2
    raw = base.maps(x, sigma=0.0)
    expected = torch.zeros(1, 8, 8)
    expected[0, 4, 4] = 2.0
    assert torch.allclose(raw, expected)
    assert torch.allclose(base.maps(x, sigma=1.0), gaussian_blur(expected, 1.0))


# ---------------------------------------------------------------- overlays


def test_heat_colors_shape_range_and_ends():
    values = np.linspace(-1, 3, 41, dtype=np.float32).reshape(1, 41)
    rgb = heat_colors(values, vmax=2.0)
    assert rgb.shape == (1, 41, 3) and rgb.dtype == np.uint8
    assert (rgb[0, :11] == 0).all()  # at or below 0: black
    assert (rgb[0, 30:] == 255).all()  # at or above vmax: white, saturated
    brightness = rgb[0].astype(int).sum(axis=1)
    assert (np.diff(brightness) >= 0).all()  # the ramp only gets brighter
    assert heat_colors(np.zeros((3, 4)), vmax=0.0).shape == (3, 4, 3)  # vmax 0: no division


def test_mask_outline_of_a_square_is_its_border():
    mask = np.zeros((9, 9), np.uint8)
    mask[2:7, 2:7] = 1
    border = mask.astype(bool).copy()
    border[3:6, 3:6] = False
    outline = mask_outline(mask)
    assert outline.dtype == bool and np.array_equal(outline, border)
    assert outline.sum() == 16
    edge = np.zeros((4, 4), np.uint8)
    edge[:2, :2] = 1  # touching the image border: outside the image counts as outside
    assert mask_outline(edge).sum() == 4
    assert not mask_outline(np.zeros((5, 5))).any()


@pytest.mark.parametrize("channels", [1, 3])
def test_overlay_shape_dtype_blend_and_outline(channels, tmp_path: Path):
    image = np.full((channels, 6, 8), 0.5, np.float32)
    amap = np.zeros((6, 8), np.float32)
    mask = np.zeros((6, 8), np.uint8)
    mask[1:5, 2:6] = 1
    out = overlay(image, amap, vmax=1.0, mask=mask)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    outline = mask_outline(mask)
    assert (out[outline] == OUTLINE).all()
    assert (out[~outline] == 63).all()  # half of grey 127.5 blended with black (map 0)
    assert (overlay(image, amap, vmax=1.0, alpha=0.0) == 127).all()  # alpha 0: the image
    save_overlay(tmp_path / "o.png", image, amap, 1.0, mask)
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (8, 6) and im.mode == "RGB"


# ---------------------------------------------------------------- pixel_auroc


def test_pixel_auroc_on_a_hand_computed_case():
    """Positive pixels 0.8 and 0.35 against negatives 0.1, 0.4, 0.2, 0.3, 0.05, 0.9: 0.8 beats
    5 of 6 and 0.35 beats 4 of 6, so 9 / 12. Image 2 (a defect without a mask) is left out;
    counted, its four negatives at 5.0 would drop the AUROC to 9 / 20."""
    maps = np.array([[[0.1, 0.4], [0.2, 0.3]],
                     [[0.8, 0.35], [0.05, 0.9]],
                     [[5.0, 5.0], [5.0, 5.0]]], np.float32)
    masks = np.array([[[0, 0], [0, 0]], [[1, 1], [0, 0]], [[0, 0], [0, 0]]], np.uint8)
    known = np.array([True, True, False])
    assert pixel_auroc(maps, masks, known) == pytest.approx(0.75)
    assert pixel_auroc(maps, masks, known) == pytest.approx(
        roc_auc_score(masks[:2].ravel(), maps[:2].ravel()))
    assert pixel_auroc(maps, masks, np.ones(3, bool)) == pytest.approx(9 / 20)


def test_pixel_auroc_is_none_without_a_defect_pixel():
    maps = np.random.default_rng(0).random((3, 4, 4)).astype(np.float32)
    masks = np.zeros((3, 4, 4), np.uint8)
    assert pixel_auroc(maps, masks, np.ones(3, bool)) is None
    masks[2, 1:3, 1:3] = 1  # the only defect pixels are in an image whose mask is not known
    assert pixel_auroc(maps, masks, np.array([True, True, False])) is None
    assert pixel_auroc(maps, np.ones((3, 4, 4), np.uint8), np.ones(3, bool)) is None  # all defect


# ---------------------------------------------------------------- normal-image statistics

def test_normalised_maps_find_a_defect_that_a_hot_border_hides():
    """Normal maps all glow at the border (the model is always poor there); a faint defect in
    the middle wins only once each pixel is measured against normal images there."""
    g = torch.Generator().manual_seed(0)
    border = torch.zeros(16, 16)
    border[:, :2] = 5.0
    normal = border + 0.1 * torch.rand(40, 16, 16, generator=g)  # (40, 16, 16)
    test = border + 0.1 * torch.rand(6, 16, 16, generator=g)
    test[3, 8, 8] += 1.0  # the defect: far fainter than the border
    raw = image_scores(test, "max", 0.01)
    assert raw.argmax() != 3 and raw.max() - raw.min() < 0.2  # the border decides: all alike
    stats = PixelErrorStats.fit(normal, two_sided=False)
    z = stats(test)
    assert image_scores(z, "max", 0.01).argmax() == 3
    assert z[3].flatten().argmax() == 8 * 16 + 8
    assert torch.allclose(stats(normal).mean(dim=0), torch.zeros(16, 16), atol=1e-4)


def test_normal_statistics_floor_a_flat_pixel():
    normal = torch.ones(5, 4, 4)
    normal[:, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])  # the only pixel that varies
    stats = PixelErrorStats.fit(normal, two_sided=True)
    assert stats.std.min() > 0 and torch.isfinite(stats(normal + 1e-3)).all()


def test_two_sided_maps_count_an_error_far_below_normal():
    """A defect that removes texture is easier to reconstruct: its error falls below normal
    images' there. Signed z-scores put it at the bottom of its map; two-sided ones rank that
    image highest, and leave a pixel above normal as it was."""
    g = torch.Generator().manual_seed(0)
    normal = 1.0 + 0.1 * torch.randn(40, 16, 16, generator=g)  # (40, 16, 16)
    test = 1.0 + 0.1 * torch.randn(4, 16, 16, generator=g)
    test[2, 4:8, 4:8] = 0.0  # the missing texture: no error at all
    test[3, 10, 10] = 2.0  # an ordinary defect: error far above normal
    signed = PixelErrorStats.fit(normal, two_sided=False)(test)
    both = PixelErrorStats.fit(normal, two_sided=True)(test)
    assert signed[2, 4:8, 4:8].max() < -5  # far below normal: signed, it counts for nothing
    assert image_scores(both, "topk_mean", 0.05).argmax() == 2
    assert torch.equal(both, signed.abs())
    assert both[3, 10, 10] == signed[3, 10, 10] > 5


def test_a_capped_map_cannot_carry_an_image_alone():
    """`score.map_cap`: each of an image's maps counts at most `cap` normal spreads before they
    are added. Image 0 is far off normal in one map only (a normal tile's bright edge in the
    error map); image 1 is moderately off in all three (a defect every map sees). Uncapped the
    first wins; capped at 10 the second. A single map is never capped."""
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(40, 3, 8, 8, generator=g)  # (N, M, H, W): z ≈ the value
    stats = PixelErrorStats.fit(normal, two_sided=True)
    test = torch.zeros(2, 3, 8, 8)
    test[0, 0, 4, 4] = 30 * stats.std[0, 4, 4] + stats.mean[0, 4, 4]  # z 30 in map 0 only
    test[1, :, 4, 4] = 6 * stats.std[:, 4, 4] + stats.mean[:, 4, 4]  # z 6 in each map
    plain = image_scores(stats(test), "max", 0.01)
    capped_stats = PixelErrorStats.fit(normal, two_sided=True, cap=10.0)
    capped = image_scores(capped_stats(test), "max", 0.01)
    assert plain[0] > plain[1] and capped[1] > capped[0]
    assert float(capped[1]) == pytest.approx(float(plain[1]), rel=1e-4)  # under the cap: as it was
    assert capped_stats(test).max() <= 30 + 1e-4  # 3 maps of at most 10
    one_map = PixelErrorStats.fit(normal[:, 0], two_sided=True, cap=10.0)
    assert float(one_map(test[:, 0]).max()) == pytest.approx(30, rel=1e-3)  # one map: no cap
