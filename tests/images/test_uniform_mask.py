"""Tests of uniform masking (UM-MAE) for Swin MAE: `core/images/uniform_mask.py` (one unit kept
per 2×2 block, pack and unpack and their inverses, the diagonal packings), the packed grid in the
config (every stage's windows tile it; a clear error when it cannot pack), Swin blocks on the
packed grid, and the model with `masking: uniform`: dropped and secondary-masked patches really
hidden, a gradient for every parameter, a loss that falls, old block checkpoints unchanged."""
from __future__ import annotations

import pytest
import torch

from core.errors import ConfigError
from core.images.config import SwinMAEModelConfig, stage_windows
from core.images.swinmae import (SwinBlock, SwinMAE, block_mask, patchify, preset,
                                 relative_position_index)
from core.images.uniform_mask import diagonal_packings, dropped, pack, uniform_keep, unpack


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """Tiny tensors: one thread (see conftest.one_torch_thread)."""
    yield


def uniform_model(**changes) -> SwinMAE:
    torch.manual_seed(0)
    return SwinMAE(preset("tiny", masking="uniform", **changes))


# ---------------------------------------------------------------- keep, pack, unpack


@pytest.mark.parametrize("unit_grid, unit", [(8, 1), (8, 2), (4, 3)])
def test_uniform_keep_keeps_exactly_one_unit_per_block(unit_grid, unit):
    keep = uniform_keep(64, unit_grid, generator=torch.Generator().manual_seed(0))
    assert keep.shape == (64, unit_grid // 2, unit_grid // 2) and keep.dtype == torch.long
    assert set(keep.unique().tolist()) == {0, 1, 2, 3}  # every slot is drawn
    hidden = dropped(keep, unit)  # (64, unit_grid * unit, unit_grid * unit)
    side = unit_grid * unit
    assert hidden.shape == (64, side, side)
    blocks = hidden.view(64, unit_grid // 2, 2 * unit, unit_grid // 2, 2 * unit)
    visible = (~blocks).sum(dim=(2, 4))  # (64, bh, bw) visible cells per block
    assert (visible == unit * unit).all()  # one whole unit of each block
    units = hidden.view(64, unit_grid, unit, unit_grid, unit)  # each unit all or nothing
    assert (units.all(dim=(2, 4)) | (~units).all(dim=(2, 4))).all()
    # the visible unit is the one keep names: row keep // 2, column keep % 2 of the block
    b, i, j = 5, 1, 0
    r, c = divmod(keep[b, i, j].item(), 2)
    assert not hidden[b, (2 * i + r) * unit, (2 * j + c) * unit]


def test_uniform_keep_is_random_per_image_and_reproducible():
    keep = uniform_keep(32, 8, generator=torch.Generator().manual_seed(3))
    again = uniform_keep(32, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(keep, again)
    assert len({tuple(k.flatten().tolist()) for k in keep}) == 32
    with pytest.raises(ValueError, match="5×5 unit grid"):
        uniform_keep(1, 5)


def test_pack_layout_on_a_hand_case():
    x = torch.arange(16.0).view(1, 4, 4, 1)  # cell value = raster index
    keep = torch.tensor([[[0, 3], [1, 2]]])  # top-left, bottom-right, top-right, bottom-left
    assert pack(x, keep, 1)[0, ..., 0].tolist() == [[0, 7], [9, 14]]


@pytest.mark.parametrize("unit", [1, 2])
def test_pack_and_unpack_are_inverses(unit):
    B, side, D = 3, 8 * unit, 5
    x = torch.randn(B, side, side, D)
    keep = uniform_keep(B, side // unit, generator=torch.Generator().manual_seed(1))
    packed = pack(x, keep, unit)
    assert packed.shape == (B, side // 2, side // 2, D)
    fill = torch.randn(D)
    back = unpack(packed, keep, unit, fill)  # (B, side, side, D)
    hidden = dropped(keep, unit)
    assert torch.equal(back[~hidden], x[~hidden])  # kept cells in place
    assert torch.equal(back[hidden], fill.expand(int(hidden.sum()), D))  # fill elsewhere
    assert torch.equal(pack(back, keep, unit), packed)
    # one packing for the batch is the same as it repeated per image
    one = keep[:1]
    assert torch.equal(pack(x, one, unit), pack(x, one.expand(B, -1, -1), unit))


def test_unpack_passes_gradients_to_the_packed_cells_and_the_fill():
    packed = torch.randn(2, 4, 4, 3, requires_grad=True)
    fill = torch.randn(3, requires_grad=True)
    keep = uniform_keep(2, 8)
    unpack(packed, keep, 1, fill).sum().backward()
    assert torch.equal(packed.grad, torch.ones_like(packed))
    assert torch.equal(fill.grad, torch.full((3,), 2.0 * 3 * 16))  # 3 of 4 cells, 2 images


def test_the_diagonal_packings_drop_every_unit_the_off_diagonal_ones_twice():
    packings = diagonal_packings(8)  # (2, 4, 4): 4×4 blocks of an 8×8 unit grid
    assert [k.unique().tolist() for k in packings] == [[0], [3]]
    times = sum(dropped(k[None], 2)[0].long() for k in packings)  # (16, 16) cells, unit 2
    block = torch.tensor([[1, 2], [2, 1]]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(times, block.repeat(4, 4))  # (4, 4) cells per block, 4×4 blocks


# ---------------------------------------------------------------- config and windows


@pytest.mark.parametrize("name", ["tiny", "default", "base"])
def test_the_packed_grid_tiles_every_stage_window(name):
    cfg = preset(name, in_chans=3)  # every preset masks uniformly by default
    assert cfg.masking == "uniform"
    full, packed = stage_windows(cfg), stage_windows(cfg, cfg.image_size // cfg.patch_size // 2)
    assert [g // 2 for g, _ in full] == [g for g, _ in packed]
    for grid, ws in packed:
        assert grid % ws == 0 and ws == min(cfg.window_size, grid)
    assert (cfg.image_size // cfg.patch_size // cfg.mask_unit) % 2 == 0


@pytest.mark.parametrize("changes, message", [
    (dict(image_size=224, window_size=7),  # Swin-T's own size
     r"swinmae\.model\.masking: .*28×28 packed grid.*window_size 7.*3\.5"),
    (dict(image_size=384, window_size=4), r"swinmae\.model\.masking: .*48×48 packed grid.*6\.0"),
    (dict(image_size=192, window_size=6, mask_unit=16), r"even unit grid.*3×3 units"),
])
def test_a_grid_that_cannot_pack_is_a_config_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        preset("base", masking="uniform", **changes)
    preset("base", masking="block", **changes)  # block masking needs no packing: sizes fine


def test_a_packed_layout_uses_the_bias_table_rows_of_its_offsets():
    """A block built for window 8 runs a 4-token grid with window 4: its bias rows are those
    the 8-window table holds for the same offsets (the top-left 4×4 tokens of an 8×8 window)."""
    block = SwinBlock(dim=8, num_heads=2, grid=16, ws=8, shift=4, mlp_ratio=2.0,
                      more_grids=(8, 4))
    small, middle = block.layout(4), block.layout(8)
    assert (small.ws, small.shift, middle.ws, middle.shift) == (4, 0, 8, 0)
    tokens = (torch.arange(4)[:, None] * 8 + torch.arange(4)[None, :]).flatten()  # in the 8×8
    assert torch.equal(small.bias_index, relative_position_index(8)[tokens][:, tokens])
    with pytest.raises(ValueError, match="not 5"):
        block.layout(5)


@pytest.mark.parametrize("ws, shift", [(4, 2), (8, 4)])
def test_a_block_on_the_packed_grid_equals_a_block_built_for_that_grid(ws, shift):
    """Built for 16 and 8: on the 8-grid it gives what a block built for 8 gives with the same
    weights (window 4 shifted by 2; or window 8, one window, no shift)."""
    torch.manual_seed(0)
    both = SwinBlock(dim=16, num_heads=2, grid=16, ws=ws, shift=shift, mlp_ratio=2.0,
                     more_grids=(8,))
    alone = SwinBlock(dim=16, num_heads=2, grid=8, ws=min(ws, 8), shift=shift if ws < 8 else 0,
                      mlp_ratio=2.0)
    alone.load_state_dict(both.state_dict())
    x = torch.randn(2, 8, 8, 16)
    torch.testing.assert_close(both(x), alone(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- the model


def test_uniform_model_shapes_and_hidden_patches():
    model = uniform_model().eval()
    imgs = torch.randn(2, 3, 64, 64)
    keep = uniform_keep(2, 8, generator=torch.Generator().manual_seed(0))  # 8×8 units of 2
    secondary = block_mask(2, 8, 8, 2, 0.25, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latent = model.forward_encoder(imgs, secondary, keep)
        pred = model(imgs, secondary, keep)
    assert latent.shape == (2, 4, 4, 64)  # packed 8×8 patches, one merge
    assert pred.shape == (2, 256, 48) and torch.isfinite(pred).all()
    hidden = model.hidden(2, secondary, keep)  # (2, 16, 16)
    assert hidden.float().mean() == 0.75 + 0.25 * 0.25  # dropped, then a quarter of the rest
    # any change to hidden pixels leaves the encoder's output alone; a visible one does not
    hidden_px = hidden.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None]  # (2, 1, 64, 64)
    changed = torch.where(hidden_px, torch.randn_like(imgs) * 5, imgs)
    with torch.no_grad():
        assert torch.equal(model.forward_encoder(changed, secondary, keep), latent)
        poked = imgs.clone()
        poked[~hidden_px.expand_as(imgs)] += 1.0
        assert not torch.allclose(model.forward_encoder(poked, secondary, keep), latent)


def test_embedding_the_packed_image_equals_packing_the_embedded_one():
    model = uniform_model()
    imgs = torch.randn(2, 3, 64, 64)
    keep = uniform_keep(2, 8)
    with torch.no_grad():
        full = model.patch_embed(imgs).permute(0, 2, 3, 1)  # (2, 16, 16, D)
        packed = model.patch_embed(pack(imgs.permute(0, 2, 3, 1), keep, 8).permute(0, 3, 1, 2))
    torch.testing.assert_close(packed.permute(0, 2, 3, 1), pack(full, keep, 2))


def test_uniform_loss_counts_dropped_and_secondary_patches_only():
    model = uniform_model()
    imgs = torch.randn(2, 3, 64, 64)
    keep = uniform_keep(2, 8)
    secondary = block_mask(2, 8, 8, 2, 0.25)
    with torch.no_grad():
        pred = model(imgs, secondary, keep)
        loss = model.loss(imgs, secondary, keep)
    err = (pred - patchify(imgs, 4)).pow(2).mean(dim=-1)  # (2, 256)
    torch.testing.assert_close(loss, err[model.hidden(2, secondary, keep).flatten(1)].mean())


def test_uniform_model_every_parameter_gets_a_gradient():
    model = uniform_model(decoder_depth=2)
    model.loss(torch.randn(4, 3, 64, 64)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_block_models_keep_their_parameters_and_refuse_a_packing():
    block, uniform = SwinMAE(preset("tiny", masking="block")), uniform_model()
    assert set(uniform.state_dict()) - set(block.state_dict()) == {"decoder_mask_token"}
    with pytest.raises(ValueError, match="masking: uniform"):
        block(torch.randn(1, 3, 64, 64), None, uniform_keep(1, 8))
    with pytest.raises(ValueError, match=r"packing \(B, 4, 4\)"):
        uniform(torch.randn(1, 3, 64, 64), None, uniform_keep(1, 4))


def test_a_checkpoint_from_before_the_masking_key_loads_as_block(tmp_path):
    """Checkpoints saved before `masking` existed were block-trained: they load as such now that
    the YAML's default is uniform."""
    import core.config
    from core.images.files import ImageFiles
    from core.images.stages import load_model
    from core.training import save_checkpoint
    model = SwinMAE(preset("tiny", masking="block"))  # as built before the default changed
    old = {k: v for k, v in model.cfg.model_dump().items()
           if k not in ("masking", "secondary_ratio")}
    stream = tmp_path / "swinmae"
    stream.mkdir()
    save_checkpoint(ImageFiles(stream).checkpoint, {"model": model.state_dict(),
                                                    "extra": {"model": old}})
    # read as a plain saved config, the key would take the default
    assert core.config.from_dict(SwinMAEModelConfig, old, "swinmae.model").masking == "uniform"
    loaded, _ = load_model(stream)
    assert loaded.cfg.masking == "block" and loaded.decoder_mask_token is None
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))
