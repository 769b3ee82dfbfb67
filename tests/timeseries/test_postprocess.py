"""Tests of the step score's post-processing (core/timeseries/scoring.py): the channel scale's
floor, the per-channel cap, the top channels' part, the moving mean and its second time scale,
the fusion of several parts, and the constant-channel facts (core/timeseries/channels.py)."""
from __future__ import annotations

import numpy as np
import pytest

from core.config import defaults
from core.timeseries.channels import (constant_channels, constant_notes, out_of_range,
                                      out_of_range_note)
from core.timeseries.config import TSScoreConfig
from core.timeseries.scoring import (LONG_WINDOWS_NEEDED, Fusion, channel_scale,
                                     detector_scores, log_standard, reconstruction_parts, smooth,
                                     smoothed_terms, standardised, step_scores,
                                     top_channel_scores, usable_long_window)
from core.timeseries.windows import Normalizer

DEFAULT = defaults("patchtst.score")


def errors_with_a_constant_channel(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Validation and test errors (T, 38), as many channels as an SMD machine, ~1 per channel,
    except channel 0, which was constant in training (validation error ~1e-6). Test rows
    100-104: channel 0 moves (error 2500, what a 0.05 change becomes after a 1e-3 std floor);
    rows 200-204: a real anomaly in channels 1-10 (error 30 each)."""
    rng = np.random.default_rng(seed)
    val = rng.exponential(1.0, (2000, 38))
    val[:, 0] = 1e-6
    test = rng.exponential(1.0, (1000, 38))
    test[:, 0] = 1e-6
    test[100:105, 0] = 2500.0
    test[200:205, 1:11] = 30.0
    return val, test


def scored(val: np.ndarray, test: np.ndarray, cfg: TSScoreConfig) -> tuple[np.ndarray, np.ndarray]:
    scale = channel_scale(val, cfg.normalize_channels, cfg.scale_floor)
    return step_scores(test / scale, cfg.channel_cap), test / scale


def test_a_constant_training_channel_cannot_dominate_the_score():
    val, test = errors_with_a_constant_channel()
    naive, _ = scored(val, test, defaults("patchtst.score", scale_floor=0.0, channel_cap=0.0))
    assert naive[100:105].min() > 1e6 * naive[200:205].max()  # the failure this guards against
    score, errors = scored(val, test, DEFAULT)
    normal = np.delete(score, np.r_[100:105, 200:205])
    assert score[100:105].min() > normal.max()  # still visible
    assert score[200:205].min() > 0.2 * score[100:105].max()  # but not drowning a real anomaly
    assert score[100:105].max() <= (DEFAULT.channel_cap + 37 * 2) / 38  # bounded by the cap
    share = errors[100:105, 0] / errors[100:105].sum(axis=1)
    assert share.max() < 1.0 and np.isfinite(score).all()


def test_channel_scale_floor_is_a_share_of_the_median_channel():
    val = np.array([[1e-9, 1.0, 2.0, 4.0]] * 3)
    assert channel_scale(val, True, 0.1) == pytest.approx([0.15, 1.0, 2.0, 4.0])
    assert channel_scale(val, True, 0.0)[0] == pytest.approx(1e-8)  # never zero
    assert (channel_scale(val, False, 0.1) == 1).all()


def test_step_scores_cap_each_channel():
    errors = np.array([[1.0, 1000.0], [3.0, 5.0]])
    assert step_scores(errors).tolist() == [500.5, 4.0]
    assert step_scores(errors, cap=10.0).tolist() == [5.5, 4.0]


def test_the_top_channels_part_counts_how_far_several_channels_are():
    """The capped mean stops counting at the cap; the top channels' part (a quantile over
    channels, uncapped) tells 10 channels at 30,000 from 10 at 3,000, and one channel alone
    cannot raise it on 38 channels."""
    val, test = errors_with_a_constant_channel()
    test[300:305, 1:11] = 3000.0
    test[400:405, 1:11] = 30000.0
    scale = channel_scale(val, DEFAULT.normalize_channels, DEFAULT.scale_floor)
    parts = reconstruction_parts(test / scale, DEFAULT.channel_cap, DEFAULT.top_quantile)
    mean, top = parts["reconstruction"], parts["top_channels"]
    assert list(parts) == ["reconstruction", "top_channels"]
    assert mean[300] == pytest.approx(mean[400], rel=0.01)  # past the cap: the mean cannot tell
    assert top[400] == pytest.approx(10 * top[300], rel=1e-3)  # the top part can
    normal = np.delete(top, np.r_[100:105, 200:205, 300:305, 400:405])
    assert top[100:105].max() < normal.max()  # the constant channel alone: no rise
    assert top[200:205].min() > 4 * normal.max()  # ten channels at 30: a rise
    assert top_channel_scores(np.array([[1.0, 2.0, 3.0, 4.0, 100.0]]), 0.5).tolist() == [3.0]
    assert list(reconstruction_parts(test, 0.0, 0.0)) == ["reconstruction"]  # 0: no part


def test_a_constant_training_channel_stays_visible_in_the_fused_score():
    """Fused with the top channels' part (which does not rise for one channel), the capped mean
    still shows the constant channel's move above every normal row, below the real anomaly."""
    val, test = errors_with_a_constant_channel()
    scale = channel_scale(val, DEFAULT.normalize_channels, DEFAULT.scale_floor)
    val_parts, test_parts = (reconstruction_parts(e / scale, DEFAULT.channel_cap,
                                                  DEFAULT.top_quantile) for e in (val, test))
    _, score, _ = detector_scores({k: (val_parts[k], test_parts[k]) for k in test_parts}, 1)
    normal = np.delete(score, np.r_[100:105, 200:205])
    assert normal.max() < score[100:105].min() < score[200:205].min()


def test_smooth_is_a_centred_moving_mean_that_keeps_the_length():
    x = np.zeros(50)
    x[25] = 10.0
    y = smooth(x, 5)
    assert y.shape == (50,) and y.sum() == pytest.approx(10.0)
    assert np.flatnonzero(y).tolist() == [23, 24, 25, 26, 27]  # centred on the spike
    assert smooth(x, 1).tolist() == x.tolist()
    assert smooth(np.full(7, 3.0), 4).tolist() == [3.0] * 7  # edges repeat, no fall-off


def test_constant_channels_say_which_change_in_the_scored_data():
    raw_train = np.array([[1.0, 0.2, 5.0], [2.0, 0.2, 5.0004], [3.0, 0.2, 5.0]])
    raw_target = np.array([[1.0, 0.2, 5.0], [9.0, 0.2, 5.05]])
    norm = Normalizer.fit(raw_train)  # b and c are floored: (nearly) constant
    facts = constant_channels(norm.std, norm(raw_train), norm(raw_target), ["a", "b", "c"])
    assert facts == {"b": False, "c": True}
    notes = constant_notes(facts)
    assert len(notes) == 1 and notes[0].startswith("c was constant in training and changes here")


def test_out_of_range_names_channels_far_from_the_training_range():
    rng = np.random.default_rng(0)
    target = rng.standard_normal((500, 4))  # normalised with training statistics
    target[:, 1] -= 39.0  # another operating point, as SKAB's valve1 runs against anomaly-free
    target[:, 3] += 100.0  # a constant channel: said by constant_notes instead
    far = out_of_range(target, ["a", "b", "c", "d"], {"d": True})
    assert list(far) == ["b"] and far["b"] == pytest.approx(39.0, abs=0.3)
    (note,) = out_of_range_note(far, 4)
    assert note.startswith("The scored data is far from the training data in 1 of 4 channels (b 39")
    assert out_of_range_note({}, 4) == []


def test_one_part_is_its_own_smoothed_score():
    rng = np.random.default_rng(0)
    val, target = rng.random(50), rng.random(80)
    fused_val, fused, units = detector_scores({"reconstruction": (val, target)}, 5)
    np.testing.assert_allclose(fused, smooth(target, 5))
    np.testing.assert_allclose(fused_val, smooth(val, 5))
    assert units == {}


def test_fused_parts_weigh_alike_whatever_their_units():
    """Part b is part a in other units (x 1000): standardised on their validation scores both
    count the same, so an anomaly seen by only one part still stands out."""
    rng = np.random.default_rng(1)
    val = rng.lognormal(size=500)
    target = rng.lognormal(size=300)
    target[[100, 200]] = 1.0  # where the other part sees nothing, both look alike
    seen_by_a = target.copy()
    seen_by_a[100] = 1e3  # only part a sees row 100
    seen_by_b = target.copy()
    seen_by_b[200] = 1e3  # only part b sees row 200
    _, fused, units = detector_scores(
        {"a": (val, seen_by_a), "b": (val * 1000, seen_by_b * 1000)}, 1)
    assert units["a"][1] == pytest.approx(units["b"][1])  # same spread of log scores
    assert fused[100] == pytest.approx(fused[200])
    assert set(np.argsort(fused)[-2:]) == {100, 200}
    unit = log_standard(val)
    np.testing.assert_allclose(fused, (standardised(seen_by_a, unit)
                                       + standardised(seen_by_b * 1000, units["b"])) / 2)


def test_a_flat_validation_score_does_not_divide_by_zero():
    mean, std = log_standard(np.full(10, 2.0))
    assert mean == pytest.approx(np.log(2.0)) and std == 1e-6
    assert np.isfinite(standardised(np.array([0.0, 2.0, 3.0]), (mean, std))).all()


def test_a_second_time_scale_lifts_a_sustained_rise_and_keeps_short_spikes():
    """A point-wise score ~|N(0, 1)| + 1; test rows 1000-1299 sit 40 % higher (sustained,
    mild), rows 300, 2000 and 2500 start 5-row spikes at 3x (short, strong)."""
    rng = np.random.default_rng(0)
    val, test = (np.abs(rng.normal(size=n)) + 1 for n in (2000, 3000))
    test[1000:1300] *= 1.4
    spikes = (300, 2000, 2500)
    for s in spikes:
        test[s:s + 5] *= 3
    normal = np.r_[0:250, 400:900, 1400:1900, 2100:2400, 2600:3000]  # away from both
    shares = {}
    for windows in ((10,), (10, 50)):
        _, score, units = detector_scores({"reconstruction": (val, test)}, *windows)
        top = score[normal].max()
        shares[windows] = (score[1000:1300] > top).mean()
        assert all(score[s:s + 5].max() > top for s in spikes), windows
    assert list(units) == ["reconstruction", "reconstruction@50"]  # each scale in its units
    assert shares[10, 50] > 0.85 and shares[10,] < 0.75


def test_the_second_time_scale_needs_enough_validation_rows():
    assert usable_long_window(50, LONG_WINDOWS_NEEDED * 50) == 50
    assert usable_long_window(50, LONG_WINDOWS_NEEDED * 50 - 1) == 0  # too few: one scale
    assert usable_long_window(0, 10 ** 6) == 0


def test_a_term_quieter_than_usual_cannot_cancel_anothers_evidence():
    """At row 100 part a is far above normal while part b is far below it (reconstructed
    better than ever): the plain mean lets b cancel a, a floor keeps a's evidence on top."""
    rng = np.random.default_rng(2)
    val = {name: rng.lognormal(size=500) for name in "ab"}
    target = {name: rng.lognormal(size=300) for name in "ab"}
    target["a"][100], target["b"][100] = 1e2, 1e-4
    parts = {name: (val[name], target[name]) for name in "ab"}
    _, plain, units = detector_scores(parts, 1)
    _, floored, _ = detector_scores(parts, 1, fusion=Fusion(floor=0.5))
    assert plain[100] < np.quantile(plain, 0.9)  # cancelled
    assert floored.argmax() == 100
    z = np.array([standardised(target[name], units[name]) for name in "ab"])
    np.testing.assert_allclose(floored, np.maximum(z, 0.5).mean(axis=0))


def test_a_parts_weight_counts_for_each_of_its_terms():
    rng = np.random.default_rng(3)
    parts = {name: (rng.lognormal(size=600), rng.lognormal(size=400))
             for name in ("reconstruction", "pca")}
    _, weighted, units = detector_scores(parts, 10, 50, Fusion(weights={"pca": 0.5}))
    assert list(units) == ["reconstruction", "pca", "reconstruction@50", "pca@50"]
    terms = smoothed_terms({name: t for name, (_, t) in parts.items()}, 10, 50)
    z = {name: standardised(terms[name], units[name]) for name in units}
    expect = (z["reconstruction"] + z["reconstruction@50"]
              + 0.5 * (z["pca"] + z["pca@50"])) / 3
    np.testing.assert_allclose(weighted, expect)
    # one part alone: its weight cancels out, as for the PCA baseline beside a fused model
    alone = {"pca": parts["pca"]}
    np.testing.assert_allclose(detector_scores(alone, 10, 50, Fusion(weights={"pca": 0.5}))[1],
                               detector_scores(alone, 10, 50)[1])


def test_the_fusion_comes_from_the_config_and_a_run_from_before_it_fuses_plainly():
    sc = defaults("patchtst.score", fuse_floor=0.5, pca_weight=0.7)
    assert Fusion.of_config(sc) == Fusion(0.5, {"pca": 0.7})
    assert Fusion.of_config(defaults("patchtst.score", fuse_floor=None, pca_weight=1.0)) \
        == Fusion(None, {"pca": 1.0})  # weighs as the plain mean
    assert Fusion.from_dict(None) == Fusion()  # scoring.json before `fusion`
    assert Fusion.from_dict(Fusion(0.5, {"pca": 0.7}).to_dict()) == Fusion(0.5, {"pca": 0.7})
