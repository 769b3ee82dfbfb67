"""Anomaly-detection metrics shared by every stream (time series, images): threshold-free scores
(AUROC, AUPRC, best F1), scores at a chosen threshold, and point-adjusted F1 for comparison with
published tables. Inputs are per-item scores (higher = more anomalous) and 0/1 labels (1 = anomaly).

Convention used throughout: an item is predicted anomalous when `score > threshold` (strictly), so
a threshold set at the 100th percentile of normal scores flags no normal item.

The library metrics come from scikit-learn; this module only validates inputs, applies the
convention above and returns plain Python numbers (JSON has no NaN, so undefined values are None).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)

from core.errors import AtcError


class MetricsError(AtcError, ValueError):
    """Scores, labels or a metric argument cannot be used. Also a ValueError, so callers that only
    know numpy conventions can catch it."""


def _check_binary(name: str, values: np.ndarray) -> np.ndarray:
    """Validate a (T,) array of 0/1 (or bool) values; return it as bool (T,)."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise MetricsError(f"{name}: expected a 1-D array, found shape {values.shape}")
    bad = ~np.isin(values, (0, 1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise MetricsError(
            f"{name}: expected only 0/1 values, found {int(bad.sum())} other values "
            f"(first at index {first}: {values[first]!r})"
        )
    return values.astype(bool)


def _check_scores(scores: np.ndarray) -> np.ndarray:
    """Validate a (T,) array of finite scores; return it as float64 (T,)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise MetricsError(f"scores: expected a 1-D array, found shape {scores.shape}")
    n_nan = int(np.isnan(scores).sum())
    n_inf = int(np.isinf(scores).sum())
    if n_nan or n_inf:
        raise MetricsError(
            f"scores: expected finite values, found {n_nan} NaN scores and {n_inf} infinite "
            f"scores out of {scores.size}"
        )
    return scores


def _check_pair(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate scores (T,) and labels (T,) together; return (float64 scores, bool labels)."""
    scores, labels = _check_scores(scores), _check_binary("labels", labels)
    if scores.shape != labels.shape:
        raise MetricsError(
            f"scores and labels: expected the same length, found {scores.size} scores "
            f"and {labels.size} labels"
        )
    if scores.size == 0:
        raise MetricsError("scores: expected at least one item, found none")
    return scores, labels


def _both_classes(labels: np.ndarray) -> bool:
    """True when bool labels (T,) hold at least one normal and one anomalous item."""
    return bool(labels.any() and not labels.all())


def point_adjust(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Point adjustment (Xu et al. 2018, "Unsupervised Anomaly Detection via Variational
    Auto-Encoder for Seasonal KPIs"; the protocol behind published SMD tables).

    Inside each contiguous true anomaly segment, if any point is predicted, every point of the
    segment counts as predicted. Predictions outside segments are left as they are.

    pred, labels: (T,) 0/1 arrays. Returns (T,) int8.
    Example: pred [0,1,0,0,1,0], labels [1,1,0,1,1,0] -> [1,1,0,1,1,0]; pred [1,0,0],
    labels [0,1,1] -> [1,0,0].
    """
    pred, labels = _check_binary("pred", pred), _check_binary("labels", labels)
    if pred.shape != labels.shape:
        raise MetricsError(
            f"pred and labels: expected the same length, found {pred.size} and {labels.size}"
        )
    # Segment id: 1, 2, ... for points inside the k-th anomaly segment, 0 outside any segment.
    starts = labels & ~np.concatenate(([False], labels[:-1]))  # (T,) first point of each segment
    seg_id = np.where(labels, np.cumsum(starts), 0)  # (T,)
    hit = np.zeros(int(starts.sum()) + 1, dtype=bool)  # (n_segments + 1,), index 0 = "no segment"
    hit[seg_id[labels & pred]] = True
    hit[0] = False
    return (pred | hit[seg_id]).astype(np.int8)


def best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Best point-wise F1 over all thresholds (from precision_recall_curve), and a threshold that
    achieves it under this module's `score > threshold` convention.

    scores, labels: (T,) arrays; labels must hold both classes. Returns (f1, threshold); among
    thresholds with equal F1, the highest (fewest alarms).
    scikit-learn's thresholds mean `score >= t`; we return the largest float64 below t, so
    `evaluate(scores, labels, threshold)["f1"]` reproduces the best F1 exactly.
    """
    scores, labels = _check_pair(scores, labels)
    if not _both_classes(labels):
        raise MetricsError(
            f"labels: expected both normal (0) and anomalous (1) items for best F1, "
            f"found only {int(labels[0])}"
        )
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    # The last (precision, recall) pair is (1, 0) with no threshold: drop it.
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    # Thresholds ascend; ties (up to rounding) go to the highest threshold (fewest alarms).
    i = int(np.flatnonzero(f1 >= f1.max() - 1e-12)[-1])
    return float(f1[i]), float(np.nextafter(thresholds[i], -np.inf))


def _scores_at(pred: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, f1) of bool predictions (T,) against bool labels (T,); 0 when
    undefined (no predicted or no true anomalies)."""
    p, r, f, _ = precision_recall_fscore_support(
        labels, pred, average="binary", zero_division=0, labels=[False, True], pos_label=True
    )
    return float(p), float(r), float(f)


def evaluate(
    scores: np.ndarray, labels: np.ndarray, threshold: float
) -> dict[str, float | int | None]:
    """All metrics of one set of scores, as JSON-able Python numbers.

    scores: (T,) finite floats, higher = more anomalous. labels: (T,) 0/1. threshold: predicted
    anomalous = score > threshold.
    Returns auroc, auprc (average precision), best_f1, best_f1_threshold (None when labels hold
    one class only), f1, precision, recall and pa_f1 at `threshold`, n, n_anomalies, threshold.
    pa_f1 is F1 after point adjustment: only for comparison with published tables, since point
    adjustment flatters every detector (one hit per segment counts the whole segment).
    """
    scores, labels = _check_pair(scores, labels)
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise MetricsError(f"threshold: expected a finite number, found {threshold}")
    pred = scores > threshold  # (T,)
    precision, recall, f1 = _scores_at(pred, labels)
    _, _, pa_f1 = _scores_at(point_adjust(pred, labels).astype(bool), labels)

    auroc = auprc = best = best_threshold = None
    if _both_classes(labels):
        auroc = float(roc_auc_score(labels, scores))
        auprc = float(average_precision_score(labels, scores))
        best, best_threshold = best_f1(scores, labels)
    return {
        "auroc": auroc,
        "auprc": auprc,
        "best_f1": best,
        "best_f1_threshold": best_threshold,
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "pa_f1": pa_f1,
        "n": int(labels.size),
        "n_anomalies": int(labels.sum()),
        "threshold": threshold,
    }


def threshold_from_normal(scores_normal: np.ndarray, percentile: float) -> float:
    """Threshold at the given percentile of scores on normal data (e.g. a validation split).

    scores_normal: (T,) finite floats. percentile: in (0, 100]; with `score > threshold`, 99 flags
    about 1% of normal items, 100 flags none. Returns a Python float.
    """
    percentile = float(percentile)
    if not 0 < percentile <= 100:
        raise MetricsError(f"percentile: expected a value in (0, 100], found {percentile}")
    scores_normal = _check_scores(scores_normal)
    if scores_normal.size == 0:
        raise MetricsError("scores_normal: expected at least one score, found none")
    return float(np.percentile(scores_normal, percentile))
