"""Tests of core/images/swinmae.py: patch and window layouts and their exact inverses, the
shifted-window mask, the relative position index, the block masks' conventions (True = hidden),
config checks, and the model: shapes, no NaN, hidden patches really hidden, a gradient for every
parameter, and a loss that falls on smooth textures."""
from __future__ import annotations

import math

import pytest
import torch

from core.errors import ConfigError
from core.images.swinmae import (SwinBlock, SwinMAE, SwinMAEModelConfig, block_mask,
                                 complementary_block_masks, patch_stats, patchify, preset,
                                 relative_position_index, shifted_window_mask, unpatchify,
                                 window_partition, window_reverse)
from core.images.uniform_mask import uniform_keep

GRID = 16  # tiny preset: 64 px / patch 4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster than two on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_model(**changes) -> SwinMAE:
    torch.manual_seed(0)
    return SwinMAE(preset("tiny", **changes))


def textures(n: int, size: int = 64, n_chans: int = 3, seed: int = 0) -> torch.Tensor:
    """(n, C, size, size) sums of two sine gratings, 0.5–1.5 cycles per image, random
    orientation and per-channel phase: smooth, so hidden blocks are predictable from context."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")  # (H, W)
    theta = torch.rand(n, 2, 1, 1, generator=g) * math.pi
    freq = (0.5 + torch.rand(n, 2, 1, 1, generator=g)) * 2 * math.pi / size
    phase = torch.rand(n, 2, n_chans, 1, 1, generator=g) * 2 * math.pi
    u = (xx * torch.cos(theta) + yy * torch.sin(theta)) * freq  # (n, 2, H, W)
    return torch.sin(u[:, :, None] + phase).sum(dim=1)  # (n, C, H, W)


# ---------------------------------------------------------------- patches and windows


def test_patchify_layout():
    B, C, H, W, p = 2, 3, 8, 12, 4
    imgs = torch.arange(B * C * H * W, dtype=torch.float32).reshape(B, C, H, W)
    x = patchify(imgs, p)
    assert x.shape == (B, (H // p) * (W // p), p * p * C)
    for b in range(B):
        for i in range(H // p):
            for j in range(W // p):
                block = imgs[b, :, i * p:(i + 1) * p, j * p:(j + 1) * p]  # (C, p, p)
                assert torch.equal(x[b, i * (W // p) + j], block.permute(1, 2, 0).flatten())


@pytest.mark.parametrize("C", [1, 3])
def test_unpatchify_is_the_exact_inverse(C):
    imgs = torch.randn(2, C, 16, 24)
    x = patchify(imgs, 4)
    assert torch.equal(unpatchify(x, 4, 4, 6, C), imgs)
    assert torch.equal(patchify(unpatchify(x, 4, 4, 6, C), 4), x)


def test_window_partition_layout_and_exact_inverse():
    B, H, W, C, ws = 2, 8, 12, 3, 4
    x = torch.randn(B, H, W, C)
    win = window_partition(x, ws)
    assert win.shape == (B * (H // ws) * (W // ws), ws * ws, C)
    # window 4 of image 1 is window row 1, column 1; its token 6 is row 1, column 2 in it
    assert torch.equal(win[1 * 6 + 4, 6], x[1, 1 * ws + 1, 1 * ws + 2])
    assert torch.equal(window_reverse(win, ws, H, W), x)


# ---------------------------------------------------------------- shifted-window mask


def test_shifted_window_mask_known_pairs():
    mask = shifted_window_mask(8, 8, ws=4, shift=2)
    assert mask.shape == (4, 16, 16)
    assert (mask[0] == 0).all()  # the top-left window holds no wrapped token
    # last window: rolled rows/cols 4-5 were image rows/cols 6-7, rolled 6-7 were image 0-1
    assert mask[3, 0, 5] == 0  # rolled (4, 4) and (5, 5): both from the image's bottom right
    assert mask[3, 0, 10] == float("-inf")  # (4, 4) vs (6, 6): (6, 6) wrapped from the top left
    assert mask[3, 0, 2] == float("-inf")  # (4, 4) vs (4, 6): column 6 wrapped from the left


def test_shifted_window_mask_matches_brute_force():
    """-inf exactly where one token of a pair wrapped around a border and the other did not."""
    H, W, ws, s = 8, 12, 4, 2
    mask = shifted_window_mask(H, W, ws, s)
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    wrapped = torch.stack([rows >= H - s, cols >= W - s], dim=-1).long()  # (H, W, 2), rolled grid
    w = window_partition(wrapped[None], ws)  # (nW, T, 2)
    apart = (w[:, :, None] != w[:, None, :]).any(dim=-1)  # (nW, T, T)
    assert torch.equal(mask == float("-inf"), apart)
    assert torch.equal(mask == 0, ~apart)


def test_no_shift_no_mask():
    assert (shifted_window_mask(8, 8, 4, 0) == 0).all()


def test_shifted_block_does_not_mix_wrapped_tokens():
    """In SW-MSA the bottom-right window also holds the wrapped top-left corner: changing the
    image's top-left token must not reach the bottom-right one (it reaches its real neighbours)."""
    torch.manual_seed(0)
    block = SwinBlock(dim=8, num_heads=2, grid=8, ws=4, shift=2, mlp_ratio=2.0).eval()
    x = torch.randn(1, 8, 8, 8)
    changed = x.clone()
    changed[0, 0, 0] = torch.randn(8) * 5  # not a constant shift: LayerNorm would erase it
    with torch.no_grad():
        a, b = block(x), block(changed)
    assert torch.equal(a[0, 7, 7], b[0, 7, 7])
    assert not torch.allclose(a[0, 1, 1], b[0, 1, 1])


def test_relative_position_index_shape_and_range():
    ws = 4
    idx = relative_position_index(ws)
    assert idx.shape == (ws * ws, ws * ws) and idx.dtype == torch.long
    n = (2 * ws - 1) ** 2
    assert idx.min() == 0 and idx.max() == n - 1
    assert set(idx.unique().tolist()) == set(range(n))  # every offset occurs: all rows trained
    assert (idx.diagonal() == (n - 1) // 2).all()  # offset (0, 0) is the middle row
    assert torch.equal(idx + idx.T, torch.full_like(idx, n - 1))  # offset and its opposite
    assert idx[0, 1] == (ws - 1) * (2 * ws - 1) + (ws - 2)  # token 1 is one column right of 0


# ---------------------------------------------------------------- block masks


@pytest.mark.parametrize("grid, unit, ratio", [(16, 2, 0.75), (16, 4, 0.75), (16, 4, 0.5),
                                               (12, 3, 0.4), (8, 4, 0.9)])
def test_block_mask_hides_whole_units_at_the_exact_ratio(grid, unit, ratio):
    mask = block_mask(32, grid, grid, unit, ratio, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (32, grid, grid)
    n_units = (grid // unit) ** 2
    n_hidden = min(max(1, round(ratio * n_units)), n_units - 1)
    units = mask.view(32, grid // unit, unit, grid // unit, unit)
    per_unit = units.sum(dim=(2, 4))  # (B, uh, uw) hidden patches in each unit
    assert ((per_unit == 0) | (per_unit == unit * unit)).all()  # whole units only
    assert ((per_unit > 0).sum(dim=(1, 2)) == n_hidden).all()
    assert (mask.sum(dim=(1, 2)) == n_hidden * unit * unit).all()  # True = hidden


def test_block_mask_is_random_per_image_and_reproducible():
    mask = block_mask(64, 16, 16, 4, 0.75, generator=torch.Generator().manual_seed(3))
    again = block_mask(64, 16, 16, 4, 0.75, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mask, again)
    assert len({tuple(m.flatten().tolist()) for m in mask}) > 50
    assert (mask.float().mean(dim=0) > 0.5).all()  # each position is hidden sometimes


@pytest.mark.parametrize("grid, unit, ratio, k", [(16, 4, 0.75, 2), (16, 2, 0.4, 3),
                                                  (16, 4, 0.25, 4), (12, 3, 0.2, 5),
                                                  (8, 4, 0.01, 4)])
def test_complementary_block_masks_hide_each_unit_exactly_once(grid, unit, ratio, k):
    masks = complementary_block_masks(grid, grid, unit, ratio)
    assert masks.dtype == torch.bool and masks.shape == (k, grid, grid)
    assert (masks.sum(dim=0) == 1).all()  # every patch hidden in exactly one mask
    units = masks.view(k, grid // unit, unit, grid // unit, unit).sum(dim=(2, 4))
    assert ((units == 0) | (units == unit * unit)).all()  # whole units only
    assert masks.any(dim=(1, 2)).all()  # no mask hides nothing
    u = masks[:, ::unit, ::unit]  # (K, uh, uw) one flag per unit
    if k > 1:  # edge neighbours are never hidden together: each has context on all sides
        assert not (u[:, 1:] & u[:, :-1]).any() and not (u[:, :, 1:] & u[:, :, :-1]).any()


# ---------------------------------------------------------------- config


def test_presets_are_valid_and_unknown_preset_is_named():
    assert preset("tiny").image_size == 64 and preset("base").depths == (2, 2, 6, 2)
    with pytest.raises(ConfigError, match="swinmae.preset.*'huge'"):
        preset("huge")


@pytest.mark.parametrize("changes, message", [
    (dict(window_size=5), r"swinmae\.model\.window_size.*stage 0 grid is 16, found 5"),
    (dict(image_size=60), r"swinmae\.model\.image_size.*multiple of .* 8, found 60"),
    (dict(mask_unit=3), r"swinmae\.model\.mask_unit.*16×16 patch grid.*found 3"),
    (dict(num_heads=(2,)), r"swinmae\.model\.num_heads.*2 entries.*found \[2\]"),
    (dict(num_heads=(3, 4)), r"swinmae\.model\.num_heads.*stage 0 width 32.*3 heads"),
    (dict(depths=(2, 0)), r"swinmae\.model\.depths.*positive integers, found \(2, 0\)"),
    (dict(mask_ratio=1.5), r"swinmae\.model\.mask_ratio.*<= 0\.95, found 1\.5"),
    (dict(in_chans=2), r"swinmae\.model\.in_chans.*one of 1, 3, found 2"),
    (dict(decoder_heads=3), r"swinmae\.model\.decoder_heads.*decoder_dim \(64\), found 3"),
])
def test_config_errors_name_the_key_and_value(changes, message):
    with pytest.raises(ConfigError, match=message):  # a field's own rule, or one between fields
        preset("tiny", **changes)


def test_the_model_checks_its_config():
    unchecked = SwinMAEModelConfig.model_construct(**(preset("tiny").model_dump()
                                                      | {"num_heads": (2,)}))
    with pytest.raises(ConfigError, match=r"swinmae\.model\.num_heads.*2 entries"):
        SwinMAE(unchecked)


def test_window_is_clamped_to_small_stage_grids():
    """Swin-T at 224 px: stage grids 56, 28, 14, 7 with window 7; the last is one window."""
    model = SwinMAE(preset("tiny", window_size=8))  # grids 16, 8: stage 1 is one 8×8 window
    last = model.stages[1].blocks
    assert [b.shift for b in last] == [0, 0] and last[1].layout(8).attn_mask is None
    assert [b.shift for b in model.stages[0].blocks] == [0, 4]


# ---------------------------------------------------------------- model


def test_output_shapes_and_no_nan():
    model = tiny_model()
    imgs = torch.randn(3, 3, 64, 64)
    mask = block_mask(3, GRID, GRID, 2, 0.75)
    for m in (None, mask, mask[0]):  # no mask, one per image, one for the batch
        pred = model(imgs, m)
        assert pred.shape == (3, GRID * GRID, 4 * 4 * 3) and torch.isfinite(pred).all()
    rec = model.reconstruct(imgs, mask)
    assert rec.shape == imgs.shape and torch.isfinite(rec).all()
    loss = model.loss(imgs)
    assert loss.ndim == 0 and torch.isfinite(loss)
    gray = tiny_model(in_chans=1)
    assert gray(torch.randn(2, 1, 64, 64)).shape == (2, GRID * GRID, 16)


def test_wrong_image_or_mask_shape_is_named():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"images \(B, 3, 64, 64\), found \(2, 3, 32, 32\)"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"mask of shape \(8, 8\) does not fit the 16×16"):
        model(torch.randn(2, 3, 64, 64), torch.zeros(8, 8, dtype=torch.bool))


def test_one_mask_for_the_batch_equals_the_same_mask_per_image():
    model = tiny_model().eval()
    imgs = torch.randn(2, 3, 64, 64)
    mask = complementary_block_masks(GRID, GRID, 2, 0.75)[1]  # (h, w)
    with torch.no_grad():
        assert torch.allclose(model(imgs, mask), model(imgs, mask.expand(2, -1, -1)), atol=1e-6)


def test_mask_token_replaces_hidden_patches():
    """Changing the pixels under hidden patches must not change any prediction."""
    model = tiny_model().eval()
    imgs = torch.randn(2, 3, 64, 64)
    mask = block_mask(2, GRID, GRID, 2, 0.75, generator=torch.Generator().manual_seed(0))
    pixel_mask = mask.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None]  # (B, 1, H, W)
    changed = torch.where(pixel_mask, torch.randn_like(imgs) * 10, imgs)
    assert not torch.equal(changed, imgs)
    with torch.no_grad():
        a, b, c = model(imgs, mask), model(changed, mask), model(changed, None)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)  # unmasked, the change is seen: the check above can fail


def test_loss_counts_only_hidden_patches():
    model = tiny_model()
    imgs = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, GRID, GRID, dtype=torch.bool)
    mask[:, :2, :2] = True
    mask[1, 8:10, 4:6] = True
    with torch.no_grad():
        pred = model(imgs, mask)
        err = (pred - patchify(imgs, 4)).pow(2).mean(dim=-1)  # (B, N)
        expected = err[mask.flatten(1)].mean()
        assert torch.allclose(model.loss(imgs, mask), expected, atol=1e-6)


def test_norm_pix_loss_targets_and_reconstruct():
    model = tiny_model(norm_pix_loss=True)
    imgs = torch.randn(2, 3, 64, 64) * 3 + 5
    mask = block_mask(2, GRID, GRID, 2, 0.75)
    with torch.no_grad():
        pred = model(imgs, mask)
        target = patchify(imgs, 4)
        mean, std = patch_stats(target)
        hidden = mask.flatten(1)
        expected = ((pred - (target - mean) / std).pow(2).mean(dim=-1))[hidden].mean()
        assert torch.allclose(model.loss(imgs, mask), expected, atol=1e-5)
        rec = model.reconstruct(imgs, mask)  # de-normalised with each patch's own stats
        assert torch.allclose(patchify(rec, 4), pred * std + mean, atol=1e-5)


def test_every_parameter_gets_a_gradient():
    model = tiny_model(decoder_depth=2)  # shifted blocks in the encoder and the decoder
    model.loss(torch.randn(4, 3, 64, 64)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    for name, table in model.named_parameters():  # every relative offset gets trained
        if name.endswith("bias_table"):
            assert (table.grad.abs().sum(dim=1) > 0).all(), name


def fixed_masks(masking: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mask, keep) for `SwinMAE.loss` on 16 tiny images, the same every call: block masking
    hides 75 % of the 2×2-patch units; uniform keeps one unit per 2×2 block (`keep`) and hides
    25 % of the packed grid's units."""
    g = torch.Generator().manual_seed(1)
    if masking == "block":
        return block_mask(16, GRID, GRID, 2, 0.75, generator=g), None
    keep = uniform_keep(16, GRID // 2, generator=g)
    return block_mask(16, GRID // 2, GRID // 2, 2, 0.25, generator=g), keep


@pytest.mark.parametrize("masking", ["block", "uniform"])
def test_loss_falls_on_smooth_textures(masking):
    model = tiny_model(masking=masking)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    imgs = textures(16)
    mask, keep = fixed_masks(masking)
    hidden = model.hidden(16, mask, keep).flatten(1)  # (16, N)

    def fixed_loss() -> float:
        with torch.no_grad():
            return model.loss(imgs, mask, keep).item()

    before = fixed_loss()
    for _ in range(40):
        loss = model.loss(imgs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fixed_loss()
    assert after < 0.6 * before, (before, after)
    # and it beats predicting zero (the data mean) everywhere: it uses the visible context
    zero_loss = patchify(imgs, 4).pow(2).mean(dim=-1)[hidden].mean().item()
    assert after < 0.8 * zero_loss, (after, zero_loss)
