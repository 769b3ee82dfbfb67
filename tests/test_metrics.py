"""Metrics on hand-computed cases, cross-checked against scikit-learn."""

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from core.errors import AtcError
from core.metrics import best_f1, evaluate, point_adjust, threshold_from_normal


def test_point_adjust_hand_made_example():
    labels = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 1])
    pred = np.array([1, 0, 1, 0, 0, 0, 0, 0, 1, 0])
    # Segment 1..3 partly hit -> all of it; segment 6..7 not hit -> stays 0; segment 9 not hit;
    # normal points 0 and 8 predicted -> stay predicted (false positives are not adjusted).
    expected = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
    out = point_adjust(pred, labels)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, expected)


def test_point_adjust_segments_at_both_ends_and_bool_input():
    labels = np.array([True, True, False, True, True])
    pred = np.array([False, True, False, True, False])
    np.testing.assert_array_equal(point_adjust(pred, labels), [1, 1, 0, 1, 1])


def test_point_adjust_large_input_matches_loop():
    rng = np.random.default_rng(0)
    labels = (rng.random(5_000) < 0.1).astype(int)
    pred = (rng.random(5_000) < 0.05).astype(int)
    expected = pred.copy()
    t = 0
    while t < len(labels):  # reference: plain loop over segments
        if labels[t]:
            end = t
            while end < len(labels) and labels[end]:
                end += 1
            if pred[t:end].any():
                expected[t:end] = 1
            t = end
        else:
            t += 1
    np.testing.assert_array_equal(point_adjust(pred, labels), expected)


def test_point_adjust_rejects_non_binary_and_mismatched():
    with pytest.raises(ValueError, match="0/1"):
        point_adjust(np.array([0, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="3 and 2"):
        point_adjust(np.array([0, 1, 0]), np.array([0, 1]))


def test_evaluate_perfect_separation():
    m = evaluate(np.array([0.1, 0.9, 0.2, 0.8]), np.array([0, 1, 0, 1]), threshold=0.5)
    assert m["auroc"] == 1.0
    assert m["auprc"] == 1.0
    assert m["f1"] == 1.0 and m["precision"] == 1.0 and m["recall"] == 1.0
    assert m["best_f1"] == 1.0
    assert m["n"] == 4 and m["n_anomalies"] == 2 and m["threshold"] == 0.5


def test_evaluate_hand_computed_precision_recall():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    labels = np.array([1, 0, 1, 0, 0, 1, 0, 0])
    # threshold 0.55: predicted = items 0..3 -> TP 2 (items 0, 2), FP 2, FN 1 (item 5).
    m = evaluate(scores, labels, threshold=0.55)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))  # 4/7
    # AUROC: of 3 x 5 (anomaly, normal) pairs, anomaly 0.9 beats 5, 0.7 beats 4, 0.4 beats 2.
    assert m["auroc"] == pytest.approx(11 / 15)
    # AP: precision at each true anomaly in rank order: 1/1, 2/3, 3/6 -> mean.
    assert m["auprc"] == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)


def test_evaluate_threshold_is_strict():
    m = evaluate(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0]), threshold=0.5)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_best_f1_hand_computed_optimum():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    labels = np.array([1, 0, 1, 0, 0, 1, 0, 0])
    # Flagging the top k, F1 = 2 TP / (k + 3) for k = 1..8: 2/4, 2/5, 4/6, 4/7, 4/8, 6/9, 6/10,
    # 6/11. Best = 2/3, tied at k = 3 and k = 6: the tie goes to the higher threshold (k = 3).
    f1, threshold = best_f1(scores, labels)
    assert f1 == pytest.approx(2 / 3)
    assert 0.6 <= threshold < 0.7  # flags exactly the top 3 under score > threshold
    assert evaluate(scores, labels, threshold)["f1"] == pytest.approx(f1)


def test_best_f1_threshold_reproduces_f1_on_random_data():
    rng = np.random.default_rng(1)
    labels = (rng.random(500) < 0.2).astype(int)
    scores = rng.random(500).astype(np.float32) + labels * 0.3
    m = evaluate(scores, labels, threshold=0.5)
    assert m["f1"] <= m["best_f1"]
    assert evaluate(scores, labels, m["best_f1_threshold"])["f1"] == pytest.approx(m["best_f1"])


def test_auroc_auprc_match_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    labels = (rng.random(2_000) < 0.1).astype(int)
    scores = rng.normal(size=2_000) + labels
    m = evaluate(scores, labels, threshold=1.0)
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert m["auprc"] == pytest.approx(average_precision_score(labels, scores))
    assert all(type(v) in (float, int) for v in m.values())


def test_pa_f1_at_least_f1():
    labels = np.array([0, 1, 1, 1, 1, 0, 0, 1, 1, 0])
    scores = np.array([0.1, 0.2, 0.9, 0.3, 0.2, 0.1, 0.6, 0.2, 0.1, 0.1])
    m = evaluate(scores, labels, threshold=0.5)
    # Predicted: items 2 and 6. Point-wise: TP 1, FP 1, FN 5 -> F1 = 2/8.
    assert m["f1"] == pytest.approx(2 / 8)
    # Adjusted: segment 1..4 fully hit -> TP 4, FP 1, FN 2 -> F1 = 8/11.
    assert m["pa_f1"] == pytest.approx(8 / 11)
    assert m["pa_f1"] >= m["f1"]


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [1, 1, 1, 1]])
def test_one_class_labels_give_none_and_json(labels):
    m = evaluate(np.array([0.1, 0.9, 0.2, 0.8]), np.array(labels), threshold=0.5)
    assert m["auroc"] is None and m["auprc"] is None
    assert m["best_f1"] is None and m["best_f1_threshold"] is None
    assert m["n_anomalies"] == sum(labels)
    expected_f1 = 0.0 if sum(labels) == 0 else 2 * 1.0 * 0.5 / 1.5  # all-ones: P 1, R 1/2
    assert m["f1"] == pytest.approx(expected_f1)
    text = json.dumps(m, allow_nan=False)
    assert json.loads(text)["auroc"] is None


def test_nan_scores_error_counts_them():
    scores = np.array([0.1, np.nan, 0.3, np.nan])
    with pytest.raises(ValueError, match="2 NaN scores"):
        evaluate(scores, np.array([0, 1, 0, 1]), threshold=0.5)


def test_length_mismatch_error_names_both_lengths():
    with pytest.raises(ValueError, match="3 scores and 4 labels") as info:
        evaluate(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 0, 1]), threshold=0.5)
    assert isinstance(info.value, AtcError)


def test_best_f1_needs_both_classes():
    with pytest.raises(ValueError, match="both"):
        best_f1(np.array([0.1, 0.2]), np.array([0, 0]))


def test_threshold_from_normal():
    scores = np.arange(1, 101, dtype=float)  # 1..100
    assert threshold_from_normal(scores, 100) == 100.0
    assert threshold_from_normal(scores, 50) == pytest.approx(50.5)
    assert isinstance(threshold_from_normal(scores, 99), float)
    # With score > threshold, the 100th percentile flags no normal item.
    assert not (scores > threshold_from_normal(scores, 100)).any()


@pytest.mark.parametrize("percentile", [0, -5, 100.5, float("nan")])
def test_threshold_from_normal_rejects_percentile(percentile):
    with pytest.raises(ValueError, match=f"found {percentile}"):
        threshold_from_normal(np.array([1.0, 2.0]), percentile)
