"""Trivial baselines scored in the same run, on the same data, as the model, so a user always sees
whether the model beats them: PCA reconstruction error and uniform random scores.

Inputs are already-normalised (T, C) float arrays (T time steps, C channels). Scores are per time
step, higher = more anomalous, as `core.metrics` expects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

from core.errors import AtcError

CHUNK_ROWS = 65_536  # rows scored at once: 65,536 x 38 float64 is ~20 MB, whatever T is


class BaselineError(AtcError, ValueError):
    """A baseline's input or argument cannot be used. Also a ValueError."""


def _check_2d(name: str, x: np.ndarray, channels: int | None = None) -> np.ndarray:
    """Validate a finite (T, C) array, with C == channels when given; return it as an array."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise BaselineError(f"{name}: expected a 2-D (T, C) array, found shape {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise BaselineError(
            f"{name}: expected {channels} channels like the training data, found {x.shape[1]}"
        )
    n_bad = int(np.count_nonzero(~np.isfinite(x)))
    if n_bad:
        raise BaselineError(f"{name}: expected finite values, found {n_bad} NaN or infinite")
    return x


def _principal_axes(train: np.ndarray, variance: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean (C,) and the kept principal axes (k, C), float64, of train (T, C).

    Keeps the fewest components explaining `variance` of the variance, but at most C - 1: keeping
    all C leaves a residual of exactly zero (only rounding noise) for every point, which would make
    the baseline meaningless. With C == 1, or when train is constant, k = 0 and the score is the
    squared distance to the training mean.
    """
    c = train.shape[1]
    mean = train.mean(axis=0, dtype=np.float64)  # (C,)
    if c == 1 or not np.any(train.var(axis=0) > 0):  # PCA's variance ratios would be 0/0
        return mean, np.zeros((0, c))
    pca = PCA(n_components=variance, svd_solver="full").fit(train)
    k = min(int(pca.n_components_), c - 1)
    return pca.mean_.astype(np.float64), pca.components_[:k].astype(np.float64)


def _squared_residuals(x: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """(t, C) rows → (t, C) float64 squared PCA reconstruction error per channel. mean: (C,),
    axes: (k, C) orthonormal rows."""
    centred = x.astype(np.float64) - mean  # (t, C)
    return (centred - (centred @ axes.T) @ axes) ** 2


def _residual_scores(x: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Mean over channels of the squared PCA reconstruction error of x (T, C), in chunks of
    CHUNK_ROWS rows. Returns (T,) float64."""
    out = np.empty(x.shape[0], dtype=np.float64)
    for start in range(0, x.shape[0], CHUNK_ROWS):
        out[start : start + CHUNK_ROWS] = _squared_residuals(
            x[start : start + CHUNK_ROWS], mean, axes).mean(axis=1)
    return out


@dataclass(frozen=True)
class PCAFit:
    """A PCA fitted on normal data: mean (C,) and kept principal axes (k, C), float64."""
    mean: np.ndarray
    axes: np.ndarray

    def scores(self, x: np.ndarray, name: str = "series") -> np.ndarray:
        """(T, C) → (T,) float64: the mean squared PCA reconstruction error per time step."""
        return _residual_scores(_check_2d(name, x, len(self.mean)), self.mean, self.axes)

    def channel_residuals(self, x: np.ndarray, name: str = "series") -> np.ndarray:
        """(T, C) → (T, C) float64: each channel's squared PCA reconstruction error."""
        return _squared_residuals(_check_2d(name, x, len(self.mean)), self.mean, self.axes)


def fit_pca(train: np.ndarray, variance: float = 0.90) -> PCAFit:
    """scikit-learn PCA(n_components=variance, svd_solver="full") on train (T, C), keeping at most
    C - 1 components (see `_principal_axes`), so C == 1 and constant columns give finite,
    meaningful scores."""
    if not 0 < variance < 1:
        raise BaselineError(f"variance: expected a fraction in (0, 1), found {variance}")
    train = _check_2d("train", train)
    if train.shape[0] < 2:
        raise BaselineError(f"train: expected at least 2 time steps, found {train.shape[0]}")
    return PCAFit(*_principal_axes(train, variance))


def pca_scores(
    train: np.ndarray, series: list[np.ndarray], variance: float = 0.90
) -> list[np.ndarray]:
    """PCA reconstruction-error baseline: `fit_pca` on train (T, C), then for each (T_i, C) array
    in `series` the per-time-step squared reconstruction error averaged over channels: a list of
    (T_i,) float64."""
    fit = fit_pca(train, variance)
    return [fit.scores(x, f"series[{i}]") for i, x in enumerate(series)]


def random_scores(lengths: list[int], seed: int) -> list[np.ndarray]:
    """Uniform [0, 1) random scores: one (n,) float64 array per n in `lengths`, drawn in order from
    np.random.default_rng(seed), so the same seed gives the same scores."""
    bad = [n for n in lengths if int(n) != n or n < 0]
    if bad:
        raise BaselineError(f"lengths: expected non-negative integers, found {bad}")
    rng = np.random.default_rng(seed)
    return [rng.random(int(n)) for n in lengths]
