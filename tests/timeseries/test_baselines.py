"""PCA and random baselines: shapes, no NaN, and the PCA score separating off-subspace points."""

import numpy as np
import pytest

from core.timeseries import baselines
from core.timeseries.baselines import pca_scores, random_scores


def _subspace_data(n: int, rng: np.random.Generator, basis: np.ndarray) -> np.ndarray:
    """(n, 5) float32 points on the 2-D span of `basis` (2, 5), plus noise of std 0.01."""
    coeffs = rng.normal(size=(n, 2))
    return (coeffs @ basis + 0.01 * rng.normal(size=(n, 5))).astype(np.float32)


def test_pca_scores_off_subspace_point_scores_far_higher():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(5, 2)))[0].T  # (2, 5) orthonormal rows
    train = _subspace_data(2_000, rng, basis)
    on = _subspace_data(100, rng, basis)
    normal_dir = np.linalg.svd(basis)[2][-1]  # (5,) orthogonal to both basis rows
    off = (on[:1] + 2.0 * normal_dir).astype(np.float32)  # (1, 5), 2 units off the plane
    on_scores, off_scores = pca_scores(train, [on, off])
    assert on_scores.shape == (100,) and off_scores.shape == (1,)
    assert on_scores.dtype == np.float64
    # Off-plane residual: 2^2 / 5 channels = 0.8; on-plane: ~3 x 0.01^2 / 5 = 6e-5.
    assert off_scores[0] == pytest.approx(0.8, rel=0.05)
    assert off_scores[0] > 100 * on_scores.max()
    per_channel = baselines.fit_pca(train).channel_residuals(off)  # (1, 5): (2 * normal_dir)²
    np.testing.assert_allclose(per_channel[0], (2.0 * normal_dir) ** 2, rtol=0.05, atol=1e-3)
    np.testing.assert_allclose(per_channel.mean(axis=1), off_scores, rtol=1e-12)


def test_pca_scores_chunked_equals_unchunked(monkeypatch):
    rng = np.random.default_rng(1)
    train = rng.normal(size=(300, 6)).astype(np.float32)
    test = rng.normal(size=(250, 6)).astype(np.float32)
    (whole,) = pca_scores(train, [test])
    monkeypatch.setattr(baselines, "CHUNK_ROWS", 7)
    (chunked,) = pca_scores(train, [test])
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)


def test_pca_scores_constant_column_and_single_channel_have_no_nan():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(200, 4)).astype(np.float32)
    train[:, 2] = 0.0  # a constant (normalised, dead) sensor
    test = rng.normal(size=(50, 4)).astype(np.float32)
    (scores,) = pca_scores(train, [test])
    assert np.isfinite(scores).all()

    one = rng.normal(size=(200, 1)).astype(np.float32)
    (scores,) = pca_scores(one, [np.array([[0.0], [3.0]], dtype=np.float32)])
    assert np.isfinite(scores).all()
    assert scores[1] > scores[0]  # C == 1: squared distance to the training mean

    flat = np.ones((50, 3), dtype=np.float32)  # every column constant
    (scores,) = pca_scores(flat, [np.array([[1, 1, 1], [1, 1, 4]], dtype=np.float32)])
    np.testing.assert_allclose(scores, [0.0, 3.0])  # residual (0, 0, 3)^2 / 3


def test_pca_scores_errors_name_expected_and_found():
    train = np.zeros((10, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="expected 3 channels .* found 4"):
        pca_scores(train, [np.zeros((5, 4), dtype=np.float32)])
    with pytest.raises(ValueError, match=r"found shape \(10,\)"):
        pca_scores(np.zeros(10), [])
    with pytest.raises(ValueError, match="found 1.5"):
        pca_scores(train, [], variance=1.5)


def test_random_scores_reproducible_per_seed():
    a = random_scores([5, 3], seed=7)
    b = random_scores([5, 3], seed=7)
    c = random_scores([5, 3], seed=8)
    assert [x.shape for x in a] == [(5,), (3,)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert all(((x >= 0) & (x < 1)).all() for x in a)
