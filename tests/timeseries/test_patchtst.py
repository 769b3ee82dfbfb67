"""Tests of core/timeseries/patchtst.py: patch layout and its exact inverse, the mask helpers'
conventions (True = hidden), RevIN, and the model: shape, no NaN, hidden patches really hidden,
a gradient for every parameter, a loss that falls on a tiny problem, and the variance head's
loss and what it learns."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.config import defaults
from core.masking import gather_units, scatter_units, visible_index
from core.timeseries.config import PatchTSTModelConfig
from core.timeseries.patchtst import (PatchTST, RevIN, complementary_masks, patchify,
                                      random_patch_mask, unpatchify, variance_loss)

TINY = defaults("patchtst.model", patch_len=4, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                dropout=0.0, mask_ratio=0.4, decoder_dim=8, decoder_heads=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(n_channels: int = 3, window: int = 32, **changes) -> PatchTST:
    torch.manual_seed(0)
    cfg = PatchTSTModelConfig(**{**vars(TINY), **changes})
    return PatchTST(cfg, n_channels, window)


def sines(n: int, window: int, n_channels: int, seed: int = 0) -> torch.Tensor:
    """(n, window, C) sine waves with random phase and a per-channel period."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(window, dtype=torch.float32)[None, :, None]  # (1, L, 1)
    period = torch.tensor([8.0, 12.0, 16.0][:n_channels])[None, None, :]  # (1, 1, C)
    phase = torch.rand(n, 1, n_channels, generator=g) * 2 * math.pi
    return torch.sin(2 * math.pi * t / period + phase)


# ---------------------------------------------------------------- patches


def test_patchify_layout_folds_channels_into_batch():
    B, L, C, P = 2, 12, 3, 4
    x = torch.arange(B * L * C, dtype=torch.float32).reshape(B, L, C)
    p = patchify(x, P)
    assert p.shape == (B * C, L // P, P)
    for b in range(B):
        for c in range(C):
            for n in range(L // P):
                assert torch.equal(p[b * C + c, n], x[b, n * P:(n + 1) * P, c])


def test_unpatchify_is_the_exact_inverse():
    x = torch.randn(3, 20, 5)
    p = patchify(x, 5)
    assert torch.equal(unpatchify(p, 5), x)
    assert torch.equal(patchify(unpatchify(p, 5), 5), p)


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("n_patches, ratio", [(10, 0.4), (10, 0.25), (7, 0.5), (5, 0.9), (4, 0.1)])
def test_random_patch_mask_hides_round_ratio_per_row(n_patches, ratio):
    torch.manual_seed(1)
    mask = random_patch_mask(64, n_patches, ratio)
    assert mask.dtype == torch.bool and mask.shape == (64, n_patches)
    expected = min(max(1, round(ratio * n_patches)), n_patches - 1)
    assert mask.sum(dim=1).tolist() == [expected] * 64


def test_random_patch_mask_rows_differ_and_cover_all_positions():
    torch.manual_seed(2)
    mask = random_patch_mask(200, 10, 0.4)
    assert len({tuple(row.tolist()) for row in mask}) > 50  # not one pattern repeated
    assert (mask.float().mean(dim=0) > 0.2).all()  # each position is hidden sometimes


@pytest.mark.parametrize("n_patches, ratio", [(10, 0.4), (10, 0.5), (10, 0.3), (12, 0.25),
                                              (10, 0.9), (25, 0.1), (3, 0.2)])
def test_complementary_masks_hide_each_patch_exactly_once(n_patches, ratio):
    masks = complementary_masks(n_patches, ratio)
    k = min(max(2, math.ceil(1 / ratio)), n_patches)
    assert masks.dtype == torch.bool and masks.shape == (k, n_patches)
    assert masks.sum(dim=0).tolist() == [1] * n_patches
    assert masks.any(dim=1).all()  # no mask hides nothing


@pytest.mark.parametrize("ratio, k", [(0.5, 2), (0.4, 3), (0.3, 4), (0.2, 5), (0.125, 8),
                                      (0.1, 10)])
def test_complementary_masks_count_is_ceil_of_inverse_ratio(ratio, k):
    """K = ceil(1 / ratio) as documented, so each mask hides about `ratio` of the patches, as
    in training (0.125 = 1/8 must give 8 masks, not 9)."""
    masks = complementary_masks(20, ratio)
    assert masks.shape == (k, 20)
    assert masks.sum(dim=0).tolist() == [1] * 20


@pytest.mark.parametrize("ratio", [0.004, 0.001])
def test_complementary_masks_for_small_valid_ratios(ratio):
    """The config accepts any mask_ratio > 0; scoring in `masked` mode must work for it:
    K = ceil(1/ratio), capped at the number of patches (one hidden patch per mask)."""
    masks = complementary_masks(10, ratio)
    assert masks.shape == (10, 10)
    assert masks.sum(dim=0).tolist() == [1] * 10


# ---------------------------------------------------------------- RevIN


def test_revin_normalises_and_inverts():
    x = torch.randn(4, 30, 3) * torch.tensor([1.0, 50.0, 0.1]) + torch.tensor([0.0, -7.0, 3.0])
    z, stats = RevIN()(x)
    assert torch.allclose(z.mean(dim=1), torch.zeros(4, 3), atol=1e-4)
    assert torch.allclose(z.std(dim=1, unbiased=False), torch.ones(4, 3), atol=1e-3)
    assert stats[0].shape == stats[1].shape == (4, 1, 3)
    assert torch.allclose(RevIN.inverse(z, stats), x, rtol=1e-5, atol=1e-5)


def test_revin_constant_window_stays_finite():
    x = torch.full((2, 10, 1), 5.0)
    z, stats = RevIN()(x)
    assert torch.isfinite(z).all() and torch.allclose(RevIN.inverse(z, stats), x)


# ---------------------------------------------------------------- model


def test_output_shape_and_no_nan():
    model = tiny_model(n_channels=3, window=32)
    x = torch.randn(5, 32, 3)
    assert model.n_patches == 8
    y = model(x)
    assert y.shape == (5, 32, 3) and torch.isfinite(y).all()
    mask = random_patch_mask(5 * 3, 8, 0.4)
    y = model(x, mask)
    assert y.shape == (5, 32, 3) and torch.isfinite(y).all()
    loss = model.loss(x)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_hidden_patches_never_reach_the_output():
    """Changing the values under a hidden patch must not change the reconstruction, also when
    rows hide different numbers of patches (RevIN is bypassed by calling reconstruct_patches on
    normalised patches directly)."""
    model = tiny_model(n_channels=1, window=32).eval()
    patches = torch.randn(4, 8, 4)  # (S, N, P)
    mask = torch.zeros(4, 8, dtype=torch.bool)
    mask[:, 2] = True
    mask[1, 5] = True
    changed = patches.clone()
    changed[:, 2] += torch.randn(4, 4) * 10
    changed[1, 5] = 100.0
    with torch.no_grad():
        a = model.reconstruct_patches(patches, mask)
        b = model.reconstruct_patches(changed, mask)
        c = model.reconstruct_patches(changed, None)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)  # unmasked, the change is seen: the check above can fail


@pytest.mark.parametrize("variance_head", [False, True])
def test_loss_counts_only_hidden_patches(monkeypatch, variance_head):
    """With a fixed mask, a prediction error on visible patches does not enter the loss: the
    MSE, plus with the variance head its `variance_loss`, over the hidden patches."""
    import core.timeseries.patchtst as patchtst
    model = tiny_model(n_channels=1, window=32, variance_head=variance_head)
    if variance_head:  # a head that predicts something other than its starting variance 1
        torch.nn.init.normal_(model.log_var_head[-1].weight)
    fixed = torch.zeros(2, 8, dtype=torch.bool)
    fixed[:, :3] = True
    monkeypatch.setattr(patchtst, "random_patch_mask", lambda *a, **k: fixed)
    x = torch.randn(2, 32, 1)
    z, _ = model.revin(x)
    target = patchify(z, 4)
    h = model.features(target, fixed)
    squared = (model.head(h) - target).pow(2)  # (S, N, P)
    per_patch = squared.mean(dim=-1)
    if variance_head:
        per_patch = per_patch + variance_loss(squared, model.log_variance(h)).mean(dim=-1)
    assert torch.allclose(model.loss(x), per_patch[:, :3].mean(), atol=1e-6)


def test_training_encodes_the_visible_patches_only():
    """The encoder's blocks see N - n_hidden tokens per series in training, all N in scoring;
    the decoder sees all N in both."""
    model = tiny_model(n_channels=2, window=32)  # N = 8 patches, 3 hidden in training
    seen = {}
    model.blocks[0].register_forward_hook(lambda m, args, out: seen.update(encoder=args[0].shape))
    model.decoder[0].register_forward_hook(lambda m, args, out: seen.update(decoder=args[0].shape))
    model.loss(torch.randn(5, 32, 2))
    assert seen == {"encoder": (10, 5, 16), "decoder": (10, 8, 8)}  # S = 5 windows x 2 channels
    with torch.no_grad():
        model(torch.randn(5, 32, 2))
    assert seen == {"encoder": (10, 8, 16), "decoder": (10, 8, 8)}


def test_loss_path_and_masked_reconstruction_agree():
    """The loss gathers the visible patches; `reconstruct_patches` with the same mask keeps all
    N tokens but lets none attend to a hidden one: the predictions must match."""
    model = tiny_model(n_channels=3, window=32).eval()
    patches = torch.randn(6, 8, 4)  # (S, N, P)
    mask = random_patch_mask(6, 8, 0.4)
    index = visible_index(mask, 5)
    with torch.no_grad():
        h = model.encode(gather_units(model.embed(patches) + model.pos, index))
        gathered = model.head(model.decode(scatter_units(model.mask_token, h, index, 8)))
        masked = model.reconstruct_patches(patches, mask)
    assert torch.allclose(gathered, masked, atol=1e-5)


def test_every_parameter_gets_a_gradient():
    """After one step: the variance head's last layer starts at zero (variance 1), so its first
    layer gets no gradient until that layer has moved."""
    model = tiny_model(n_channels=2, window=32, n_layers=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.loss(torch.randn(6, 32, 2)).backward()
    opt.step()
    opt.zero_grad()
    model.loss(torch.randn(6, 32, 2)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_loss_falls_on_sine_waves():
    """The reconstruction's MSE (the loss of a model without the variance head)."""
    model = tiny_model(n_channels=2, window=32, variance_head=False)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    train = sines(64, 32, 2, seed=0)
    val = sines(64, 32, 2, seed=1)

    def val_loss() -> float:
        torch.manual_seed(123)  # the same masks each time
        with torch.no_grad():
            return model.loss(val).item()

    before = val_loss()
    for _ in range(150):
        loss = model.loss(train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = val_loss()
    assert after < 0.5 * before, (before, after)


# ---------------------------------------------------------------- attention problems


@pytest.mark.parametrize("with_keep", [False, True])
def test_series_folded_into_one_problem_attend_only_within_themselves(monkeypatch, with_keep):
    """Four series per SDPA problem (a block-diagonal mask) give what one series per problem
    gives, forward and backward, with and without a keep mask; and changing one series leaves
    the others in its problem alone."""
    import core.timeseries.patchtst as patchtst
    torch.manual_seed(0)
    attn = patchtst.SelfAttention(16, 2, 0.0)
    x = torch.randn(8, 6, 16, requires_grad=True)  # (S, N, D)
    keep = torch.rand(8, 6) > 0.3 if with_keep else None
    if keep is not None:
        keep[:, 0] = True  # every series shows at least one token
    assert patchtst.series_per_problem(8, 6, x) == 4

    def run(per_problem: int) -> tuple[torch.Tensor, torch.Tensor]:
        monkeypatch.setattr(patchtst, "series_per_problem", lambda *a: per_problem)
        x.grad = None
        y = attn(x, keep)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        return y.detach(), x.grad.clone()

    (folded, folded_grad), (alone, alone_grad) = run(4), run(1)
    assert torch.allclose(folded, alone, atol=1e-6)
    assert torch.allclose(folded_grad, alone_grad, atol=1e-6)
    changed = x.detach().clone()
    changed[1] += 10.0  # series 1 shares a problem with series 0, 2 and 3
    monkeypatch.setattr(patchtst, "series_per_problem", lambda *a: 4)
    with torch.no_grad():
        after = attn(changed, keep)
    assert torch.equal(after[[0, 2, 3]], folded[[0, 2, 3]])
    assert not torch.allclose(after[1], folded[1])


def test_series_per_problem_folds_short_fp32_series_on_cpu_only():
    from core.timeseries.patchtst import series_per_problem
    qkv = torch.zeros(1)  # only its device and dtype matter
    assert series_per_problem(1216, 6, qkv) == 4
    assert series_per_problem(1218, 6, qkv) == 2  # the largest of 4, 2, 1 that divides S
    assert series_per_problem(1217, 6, qkv) == 1
    assert series_per_problem(1216, 10, qkv) == 2  # at most 24 tokens a problem
    assert series_per_problem(1216, 38, qkv) == 1  # long enough: SDPA's own cost per token
    assert series_per_problem(1216, 6, qkv.to(torch.bfloat16)) == 1  # a slow masked path
    assert series_per_problem(1216, 6, torch.zeros(1, device="meta")) == 1  # not a CPU


# ---------------------------------------------------------------- cross-channel block


def test_channel_mixer_keeps_the_shape_and_mixes_only_when_on():
    """Off, channels stay independent: changing channel 1 leaves channel 0's output alone. On,
    the cross-channel block carries it over."""
    x = torch.randn(4, 32, 3)
    changed = x.clone()
    changed[:, :, 1] += 5.0
    for on in (False, True):
        model = tiny_model(n_channels=3, window=32, cross_channel=on).eval()
        assert (model.mixer is not None) == on
        with torch.no_grad():
            a, b = model(x), model(changed)
        assert a.shape == (4, 32, 3)
        assert torch.equal(a[..., 0], b[..., 0]) != on
        assert torch.equal(a[..., 2], b[..., 2]) != on


def test_cross_channel_predicts_a_hidden_patch_from_a_copied_channel():
    """Channel 1 copies channel 0, and both are white noise: its own past says nothing about a
    hidden patch, the other channel says everything. Only the cross-channel model learns that."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(256, 32, 1, generator=g)
    data = torch.cat([noise, noise], dim=2)  # (256, 32, 2)

    def trained_loss(on: bool) -> float:
        model = tiny_model(n_channels=2, window=32, cross_channel=on, variance_head=False)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for step in range(120):
            batch = data[(step * 32) % 256:(step * 32) % 256 + 32]
            loss = model.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.manual_seed(5)
        with torch.no_grad():
            return model.loss(data).item()

    independent, mixed = trained_loss(False), trained_loss(True)
    assert independent > 0.8  # white noise: no better than predicting zero
    assert mixed < 0.6 * independent


# ---------------------------------------------------------------- checkpoints


def test_a_checkpoint_from_before_the_visible_only_encoder_is_refused_by_name(tmp_path):
    """Its weights have no decoder: loading says so and what to do, instead of a state-dict
    traceback; a current checkpoint loads."""
    from core.config import to_dict
    from core.errors import DataError
    from core.timeseries.files import SeriesFiles
    from core.timeseries.stages import load_model
    from core.training import save_checkpoint
    checkpoint = SeriesFiles(tmp_path).checkpoint
    model = tiny_model(n_channels=2, window=32)
    cfg = to_dict(defaults("patchtst"))
    cfg["model"] |= to_dict(model.cfg)
    cfg["data"]["window"] = 32
    save_checkpoint(checkpoint, {"model": model.state_dict(), "extra": {
        "config": cfg, "n_channels": 2}})
    loaded, _ = load_model(tmp_path)
    x = torch.randn(3, 32, 2)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    for key in ("decoder_dim", "decoder_depth", "decoder_heads"):
        del cfg["model"][key]
    save_checkpoint(checkpoint, {"model": {}, "extra": {"config": cfg, "n_channels": 2}})
    with pytest.raises(DataError, match=r"best.pt: trained by an earlier PatchTST.*train the "
                                        r"model again"):
        load_model(tmp_path)


def test_a_checkpoint_from_before_the_variance_head_loads_without_it(tmp_path):
    """Its saved config has no `variance_head` and its weights no such head: it loads as it was
    trained, and its errors stay plain squared errors, whatever today's default."""
    from core.config import to_dict
    from core.timeseries.files import SeriesFiles
    from core.timeseries.stages import load_model
    from core.training import save_checkpoint
    model = tiny_model(n_channels=2, window=32, variance_head=False).eval()
    cfg = to_dict(defaults("patchtst"))
    cfg["model"] |= to_dict(model.cfg)
    cfg["data"]["window"] = 32
    del cfg["model"]["variance_head"]
    save_checkpoint(SeriesFiles(tmp_path).checkpoint, {"model": model.state_dict(), "extra": {
        "config": cfg, "n_channels": 2}})
    loaded, _ = load_model(tmp_path)
    assert loaded.log_var_head is None
    x = torch.randn(3, 32, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.errors(x), (model(x) - x).pow(2))


def test_variance_loss_is_zero_at_the_errors_own_variance_with_the_nll_gradient():
    squared = torch.tensor([0.0, 1e-6, 0.04, 1.0, 30.0, 1e5])
    best = squared.clamp(math.exp(-8), math.exp(8)).log()  # within the head's bounds
    assert torch.allclose(variance_loss(squared, best), torch.zeros(6), atol=1e-5)
    log_var = torch.linspace(-8, 8, 6).requires_grad_()
    loss = variance_loss(squared, log_var)
    assert (loss >= -1e-5).all() and (loss > 1e-3).sum() >= 4
    loss.sum().backward()  # d/dlv of the Gaussian NLL  s·exp(-lv) + lv
    torch.testing.assert_close(log_var.grad, 1 - squared * torch.exp(-log_var.detach()))


def regime_windows(n: int, noise: float, seed: int) -> torch.Tensor:
    """(n, 32, 1) sines with white noise of the given std: one noise regime per window."""
    g = torch.Generator().manual_seed(seed)
    return sines(n, 32, 1, seed=seed) + noise * torch.randn(n, 32, 1, generator=g)


@pytest.fixture(scope="module")
def two_regime_model() -> PatchTST:
    """A tiny model with the variance head, trained on windows of a quiet (noise 0.05) and a
    noisy (0.5) regime, each visible in a window's own patches (about 2 s on one thread)."""
    model = tiny_model(n_channels=1, window=32)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    data = torch.cat([regime_windows(256, 0.05, 0), regime_windows(256, 0.5, 1)])
    g = torch.Generator().manual_seed(0)
    for _ in range(600):
        batch = data[torch.randint(len(data), (64,), generator=g)]
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_variance_head_learns_which_windows_are_noisy(two_regime_model):
    """Hidden patches of noisy windows get a far larger predicted variance than those of quiet
    ones (the noise's ratio is 100), so their errors, divided by it, come out alike, where the
    squared errors differ by over 10 times."""
    model = two_regime_model
    mask = torch.zeros(128, 8, dtype=torch.bool)
    mask[:, 3:5] = True  # (S, N): patches 3 and 4 hidden
    quiet, noisy = regime_windows(128, 0.05, 2), regime_windows(128, 0.5, 3)
    with torch.no_grad():
        def spread(x):
            return model.log_variance(model.features(patchify(x, 4), mask)).exp()[mask].mean()

        def both_errors(x):
            hidden = mask.repeat_interleave(4, dim=1)[..., None]  # (B, L, 1)
            squared = (model(x, mask) - x).pow(2)[hidden].mean()
            return squared, model.errors(x, mask)[hidden].mean()

        assert spread(noisy) > 5 * spread(quiet)
        (sq_quiet, z_quiet), (sq_noisy, z_noisy) = both_errors(quiet), both_errors(noisy)
    assert sq_noisy > 10 * sq_quiet
    assert z_noisy < 3 * z_quiet


def test_variance_head_scores_a_deviation_higher_where_the_series_was_quiet(two_regime_model):
    """The same +1 deviation on a hidden patch: far more unusual in a quiet window than in a
    noisy one, and the scored error says so (a plain squared error would rank them alike)."""
    model = two_regime_model
    mask = torch.zeros(64, 8, dtype=torch.bool)
    mask[:, 4] = True
    quiet, noisy = regime_windows(64, 0.05, 4), regime_windows(64, 0.5, 5)
    with torch.no_grad():
        def deviation_score(x):
            bumped = x.clone()
            bumped[:, 16:20] += 1.0  # patch 4
            return (model.errors(bumped, mask) - model.errors(x, mask))[:, 16:20].mean()

        assert deviation_score(quiet) > 5 * deviation_score(noisy)


def regime_series(n_rows: int, noise: float, seed: int) -> np.ndarray:
    """(n_rows, 1) float32 sine of period 8 with white noise of the given std."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows)[:, None]
    return (np.sin(2 * np.pi * t / 8) + noise * rng.standard_normal((n_rows, 1))).astype(np.float32)


def test_the_variance_ceiling_stops_the_head_excusing_what_normal_data_never_showed(
        two_regime_model):
    """Set from quiet normal rows, the ceiling lets the head discount an error no more than it
    did there: on a noisy stretch (unlike any normal row) the scored error rises many times,
    while on quiet rows like the normal ones it barely moves."""
    from core.config import defaults
    from core.timeseries.scoring import channel_errors, set_log_var_ceiling
    model = two_regime_model
    cfg = defaults("patchtst.score", stride=4)
    quiet, noisy = regime_series(400, 0.05, 6), regime_series(400, 0.5, 7)
    model.log_var_ceiling = None
    before = [channel_errors(model, x, cfg, torch.device("cpu")).mean() for x in (quiet, noisy)]
    ceiling = set_log_var_ceiling(model, regime_series(400, 0.05, 8), cfg, torch.device("cpu"))
    assert ceiling.shape == (1,) and torch.equal(model.log_var_ceiling, torch.from_numpy(ceiling))
    after = [channel_errors(model, x, cfg, torch.device("cpu")).mean() for x in (quiet, noisy)]
    model.log_var_ceiling = None  # the fixture is shared
    assert after[1] > 4 * before[1]
    assert after[0] < 1.5 * before[0]
    assert set_log_var_ceiling(model, quiet, defaults("patchtst.score", variance_ceiling=0.0),
                               torch.device("cpu")) is None and model.log_var_ceiling is None
    plain = tiny_model(n_channels=1, window=32, variance_head=False)
    assert set_log_var_ceiling(plain, quiet, cfg, torch.device("cpu")) is None
