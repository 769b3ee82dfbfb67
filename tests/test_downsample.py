"""core.downsample: the one chart downsampler keeps at most max_points rows per channel, in
order, with the first and last rows and every bucket's extremes, so a one-row spike survives."""
from __future__ import annotations

import numpy as np

from core.downsample import bucket_size, minmax_indices


def test_a_series_keeps_its_ends_and_a_one_row_spike_within_the_budget():
    score = np.random.default_rng(0).random(50_000)
    score[31_337] = 40.0
    score[12_345] = -40.0  # a dip too
    idx = minmax_indices(score, 3000)
    assert len(idx) <= 3000 and np.all(np.diff(idx) > 0)
    assert {0, 12_345, 31_337, 49_999} <= set(idx.tolist())


def test_each_channel_keeps_its_own_spike_and_the_same_number_of_rows():
    values = np.zeros((100_000, 2))
    values[54_321, 1] = 9.0
    values[777, 0] = -3.0
    rows = minmax_indices(values, 2000)  # (P, 2)
    assert rows.shape[0] <= 2000 and rows.shape[1] == 2
    assert np.all(np.diff(rows, axis=0) >= 0)
    assert 54_321 in rows[:, 1] and 777 in rows[:, 0]
    assert rows[0].tolist() == [0, 0] and rows[-1].tolist() == [99_999, 99_999]


def test_a_short_series_is_kept_whole():
    assert minmax_indices(np.arange(10.0), 2000).tolist() == list(range(10))
    assert minmax_indices(np.zeros((10, 3)), 2000).shape == (10, 3)


def test_buckets_by_hand():
    # 10 rows, 6 points: first, last and 2 buckets of 5 rows, each its min and max
    y = np.array([5, 1, 9, 5, 5, 5, 5, 0, 5, 7], dtype=float)
    assert bucket_size(10, 6) == 5 and bucket_size(10, 10) == 1
    assert minmax_indices(y, 6).tolist() == [0, 1, 2, 7, 9]  # bucket 2's max: row 9, the last


def test_the_last_bucket_padding_never_points_past_the_end():
    for y in (np.arange(1001.0), -np.arange(1001.0), np.full(1001, np.nan)):
        idx = minmax_indices(y, 1000)  # buckets of 3 rows: the last one padded
        assert idx.max() == 1000 and len(idx) <= 1000
