"""Tests of core/timeseries/windows.py and core/timeseries/scoring.py: window positions and
batches, the normaliser, the train/validation split, per-step errors averaged over overlapping
windows (checked against a slow reference), and a trained tiny PatchTST that finds a spike."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from core.config import defaults
from core.errors import DataError, StopRequested
from core.timeseries.config import TSScoreConfig
from core.timeseries.patchtst import PatchTST, staggered_masks
from core.timeseries.scoring import channel_errors, score_batch_size, step_scores, window_errors
from core.timeseries.windows import (STD_FLOOR, Normalizer, epoch_order, n_batches_of,
                                     split_train_val, window_batches, window_starts)

CPU = torch.device("cpu")
WINDOW, PATCH = 32, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def score_cfg(**changes) -> TSScoreConfig:
    return defaults("patchtst.score", **changes)


def sine_series(n_rows: int, n_channels: int = 2, seed: int = 0) -> np.ndarray:
    """(T, C) float32 sines with per-channel periods and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows)[:, None]
    periods = np.array([8.0, 12.0, 16.0])[:n_channels]
    x = np.sin(2 * np.pi * t / periods + rng.uniform(0, 2 * np.pi, n_channels))
    return (x + 0.02 * rng.standard_normal(x.shape)).astype(np.float32)


def tiny_model(seed: int = 0, n_channels: int = 2, variance_head: bool = False) -> PatchTST:
    """Without the variance head unless asked: these tests are about squared errors."""
    torch.manual_seed(seed)
    cfg = defaults("patchtst.model", patch_len=PATCH, d_model=16, n_heads=2, n_layers=1,
                   d_ff=32, mask_ratio=0.25, variance_head=variance_head)
    return PatchTST(cfg, n_channels, WINDOW)


@pytest.fixture(scope="module")
def trained() -> PatchTST:
    """A tiny PatchTST trained briefly (well under a second) on clean sine windows."""
    model = tiny_model(seed=0)
    series = torch.from_numpy(sine_series(2000, seed=1))
    starts = window_starts(len(series), WINDOW, 7)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for epoch in range(20):
        for x in window_batches(series, starts[epoch_order(len(starts), epoch, 0)], WINDOW, 32):
            loss = model.loss(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


# ---------------------------------------------------------------- window_starts / batches


@pytest.mark.parametrize("n_rows, window, stride", [
    (100, 10, 10), (101, 10, 10), (95, 10, 7), (10, 10, 3), (37, 8, 1), (50, 20, 20)])
def test_window_starts_cover_every_row_and_end_at_the_last(n_rows, window, stride):
    starts = window_starts(n_rows, window, stride)
    assert starts[0] == 0 and starts[-1] == n_rows - window
    assert (np.diff(starts) > 0).all()
    gaps = np.diff(starts)
    assert (gaps[:-1] == stride).all()  # stride respected, bar the last (added) window
    assert len(gaps) == 0 or 0 < gaps[-1] <= stride
    covered = np.zeros(n_rows, bool)
    for s in starts:
        covered[s:s + window] = True
    assert covered.all()


@pytest.mark.parametrize("n_rows, window, stride", [(50, 20, 100), (100, 32, 40)])
def test_window_starts_cover_every_row_when_stride_exceeds_window(n_rows, window, stride):
    """The config lets `score.stride` exceed `data.window` (only min=1 is checked); the
    docstring promises that every row is covered all the same."""
    covered = np.zeros(n_rows, bool)
    for s in window_starts(n_rows, window, stride):
        covered[s:s + window] = True
    assert covered.all(), np.flatnonzero(~covered)


def test_window_starts_exact_values():
    assert window_starts(25, 10, 5).tolist() == [0, 5, 10, 15]
    assert window_starts(27, 10, 5).tolist() == [0, 5, 10, 15, 17]
    with pytest.raises(ValueError, match="9 rows"):
        window_starts(9, 10, 1)


def test_window_batches_shapes_and_content():
    series = torch.arange(50 * 3, dtype=torch.float32).reshape(50, 3)
    starts = window_starts(50, 10, 4)  # 11 windows
    batches = list(window_batches(series, starts, 10, 4))
    assert [b.shape for b in batches] == [(4, 10, 3), (4, 10, 3), (len(starts) - 8, 10, 3)]
    assert len(batches) == n_batches_of(len(starts), 4)
    windows = torch.cat(batches)
    for s, w in zip(starts, windows):
        assert torch.equal(w, series[s:s + 10])


def test_window_batches_follow_the_given_order_and_limit():
    series = torch.arange(60, dtype=torch.float32)[:, None]
    starts = window_starts(60, 5, 1)
    shuffled = starts[epoch_order(len(starts), epoch=0, seed=0)]
    firsts = torch.cat(list(window_batches(series, shuffled, 5, 8)))[:, 0, 0].long().tolist()
    assert firsts == shuffled.tolist() and sorted(firsts) == starts.tolist() \
        and firsts != starts.tolist()
    limited = list(window_batches(series, starts, 5, 8, limit=2))
    assert len(limited) == 2 == n_batches_of(len(starts), 8, 2)


def test_epoch_order_reshuffles_each_epoch_and_is_reproducible():
    first, again, second = (epoch_order(50, e, seed=3) for e in (0, 0, 1))
    assert sorted(first.tolist()) == list(range(50))
    assert first.tolist() == again.tolist() and first.tolist() != second.tolist()


def test_epoch_order_shards_are_equal_and_disjoint_across_ranks():
    shards = [epoch_order(51, epoch=2, seed=0, rank=r, world=3) for r in range(3)]
    assert [len(s) for s in shards] == [17, 17, 17]
    assert len(set(np.concatenate(shards).tolist())) == 51  # every window once, none twice
    two = [epoch_order(51, epoch=2, seed=0, rank=r, world=2) for r in range(2)]
    assert [len(s) for s in two] == [25, 25]  # drop_last: equal shares, so ranks step together
    assert not set(two[0].tolist()) & set(two[1].tolist())


# ---------------------------------------------------------------- Normalizer


def test_normalizer_fit_apply_and_std_floor():
    values = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 10.0], [5.0, 5.0, 20.0]], np.float64)
    norm = Normalizer.fit(values)
    assert norm.mean.dtype == norm.std.dtype == np.float32
    np.testing.assert_allclose(norm.mean, [3.0, 5.0, 10.0])
    np.testing.assert_allclose(norm.std, [np.sqrt(8 / 3), STD_FLOOR, np.sqrt(200 / 3)], rtol=1e-6)
    out = norm(values)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(out[:, 0].std(), 1.0, rtol=1e-5)
    assert (out[:, 1] == 0).all()  # the constant column maps to zero ...
    # ... and a later deviation in it is large but finite (divided by the floor, not by 0)
    np.testing.assert_allclose(norm(np.array([[3.0, 5.01, 10.0]]))[0, 1], 0.01 / STD_FLOOR,
                               rtol=1e-3)


def test_normalizer_dict_round_trip_through_a_checkpoint(tmp_path):
    norm = Normalizer.fit(np.random.default_rng(0).normal(3, 2, (40, 4)).astype(np.float32))
    d = norm.to_dict()
    assert all(isinstance(v, torch.Tensor) for v in d.values())
    torch.save({"normalizer": d}, tmp_path / "n.pt")
    again = Normalizer.from_dict(torch.load(tmp_path / "n.pt", weights_only=True)["normalizer"])
    np.testing.assert_array_equal(again.mean, norm.mean)
    np.testing.assert_array_equal(again.std, norm.std)
    x = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(again(x), norm(x))


# ---------------------------------------------------------------- split_train_val


def test_split_train_val_sizes_and_order():
    values = np.arange(100, dtype=np.float32).reshape(100, 1)
    train, val = split_train_val(values, 0.2, 10, "train.csv")
    assert train.shape == (80, 1) and val.shape == (20, 1)
    assert train[0, 0] == 0 and train[-1, 0] == 79 and val[0, 0] == 80 and val[-1, 0] == 99


def test_split_train_val_too_few_rows_names_file_and_needed_rows():
    values = np.zeros((40, 2), np.float32)
    with pytest.raises(DataError) as e:
        split_train_val(values, 0.2, 10, "machine.csv")
    msg = str(e.value)
    assert "machine.csv" in msg and "40 rows" in msg and "window 10" in msg
    assert "at least 50 rows" in msg
    train, val = split_train_val(np.zeros((50, 2), np.float32), 0.2, 10, "machine.csv")
    assert len(train) == 40 and len(val) == 10  # the needed rows are indeed enough


# ---------------------------------------------------------------- channel_errors


def reference_errors(model: PatchTST, values: np.ndarray, mode: str, stride: int) -> np.ndarray:
    """One window at a time: sum each window's error into its rows, divide by the count."""
    T, C = values.shape
    total, count = np.zeros((T, C)), np.zeros(T)
    for s in window_starts(T, WINDOW, stride):
        x = torch.from_numpy(values[s:s + WINDOW])[None]
        with torch.no_grad():
            total[s:s + WINDOW] += window_errors(model, x, mode)[0].double().numpy()
        count[s:s + WINDOW] += 1
    return total / count[:, None]


@pytest.mark.parametrize("mode", ["masked", "full"])
def test_channel_errors_shape_and_overlap_average(mode):
    model = tiny_model(seed=3).eval()
    values = sine_series(101, seed=4)  # 101: the last window is an extra, overlapping one
    cfg = score_cfg(mode=mode, stride=5, batch_size=3)
    errors = channel_errors(model, values, cfg, CPU)
    assert errors.shape == (101, 2) and errors.dtype == np.float32
    assert np.isfinite(errors).all() and (errors >= 0).all() and errors.max() > 0
    np.testing.assert_allclose(errors, reference_errors(model, values, mode, 5),
                               rtol=1e-4, atol=1e-6)
    scores = step_scores(errors)
    assert scores.shape == (101,)
    np.testing.assert_allclose(scores, errors.mean(axis=1), rtol=1e-6)


def test_channel_errors_finite_when_score_stride_exceeds_window():
    """patchtst.score.stride=40 with window 32 is a valid config; no row may come back NaN."""
    model = tiny_model().eval()
    errors = channel_errors(model, sine_series(100), score_cfg(stride=40), CPU)
    assert errors.shape == (100, 2)
    assert np.isfinite(errors).all(), np.flatnonzero(~np.isfinite(errors).all(axis=1))


def test_channel_errors_do_not_depend_on_batch_size():
    model = tiny_model(seed=5).eval()
    values = sine_series(90, seed=6)
    a = channel_errors(model, values, score_cfg(stride=3, batch_size=1), CPU)
    b = channel_errors(model, values, score_cfg(stride=3, batch_size=256), CPU)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variance_head", [False, True])
def test_masked_window_errors_count_each_step_once(variance_head):
    """In masked mode a step's error comes from the one mask that hides its patch in its
    channel, so it equals the error of a forward pass with that mask: the squared error, or
    with the variance head that error over its predicted variance."""
    model = tiny_model(seed=7, variance_head=variance_head).eval()
    if variance_head:  # variances other than the head's starting 1, so the division shows
        torch.nn.init.normal_(model.log_var_head[-1].weight)
    x = torch.from_numpy(sine_series(WINDOW, seed=8))[None]  # (1, L, C)
    with torch.no_grad():
        err = window_errors(model, x, "masked")
        masks = staggered_masks(model.n_patches, model.cfg.mask_ratio, 2)  # (K, C, N)
        assert (masks.sum(dim=0) == 1).all()  # each (channel, patch) hidden exactly once
        for mask in masks:
            pred_err = model.errors(x, mask)[0]  # (L, C)
            if not variance_head:
                torch.testing.assert_close(pred_err, (model(x, mask) - x).pow(2)[0])
            for c, i in mask.nonzero().tolist():
                rows = slice(i * PATCH, (i + 1) * PATCH)
                torch.testing.assert_close(err[0, rows, c], pred_err[rows, c])


def test_channel_errors_stop_request():
    model = tiny_model().eval()
    with pytest.raises(StopRequested):
        channel_errors(model, sine_series(64), score_cfg(), CPU, should_stop=lambda: True)


SPIKES = [(157, 0), (300, 1), (60, 0), (220, 1), (15, 0), (390, 1)]  # edges included


def spiked(k: int, channel: int, size: float) -> np.ndarray:
    values = sine_series(400, seed=9)
    values[k, channel] += size
    return values


@pytest.mark.parametrize("k, channel", SPIKES)
def test_trained_model_scores_a_small_spike_highest(trained, k, channel):
    """A spike of 1.5 (normalised units, the sines' amplitude is 1) is found only after training
    (the untrained model's peak lands elsewhere for most of these): the masked score peaks
    within a patch of it and clearly stands out from every row farther away."""
    errors = channel_errors(trained, spiked(k, channel, 1.5), score_cfg(mode="masked", stride=4),
                            CPU)
    scores = step_scores(errors)
    peak = int(scores.argmax())
    assert abs(peak - k) <= PATCH, (peak, k)
    far = np.abs(np.arange(len(scores)) - k) > PATCH
    assert scores[~far].max() > 1.5 * scores[far].max()
    assert errors[peak, channel] > errors[peak, 1 - channel]  # the spiked channel carries it


@pytest.mark.parametrize("mode", ["masked", "full"])
@pytest.mark.parametrize("k, channel", SPIKES[:2])
def test_trained_model_scores_a_large_spike_highest_in_both_modes(trained, mode, k, channel):
    errors = channel_errors(trained, spiked(k, channel, 4.0), score_cfg(mode=mode, stride=4),
                            CPU)
    peak = int(step_scores(errors).argmax())
    assert abs(peak - k) <= PATCH, (peak, k)
    assert errors[peak, channel] > errors[peak, 1 - channel]


def test_trained_model_fits_clean_data_better_than_untrained(trained):
    """The training in the fixture did something: clean sines reconstruct much better."""
    values = sine_series(200, seed=10)
    cfg = score_cfg(mode="masked", stride=8)
    assert channel_errors(trained, values, cfg, CPU).mean() < \
        0.5 * channel_errors(tiny_model(seed=0).eval(), values, cfg, CPU).mean()


def test_score_batch_size_follows_the_device_unless_set():
    assert score_batch_size(score_cfg(batch_size=0), torch.device("cpu")) == 32
    assert score_batch_size(score_cfg(batch_size=0), torch.device("cuda")) == 256
    assert score_batch_size(score_cfg(batch_size=100), torch.device("cuda")) == 100
