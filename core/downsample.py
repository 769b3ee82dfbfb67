"""Chart downsampling: which rows of a long series to draw so that a chart stays fast and still
shows every peak. The one downsampler of the console: the Data page's preview, the Results page's
signal and score, and the Train page's loss curves all draw the rows `minmax_indices` keeps.

The series is cut into equal buckets of consecutive rows; each bucket keeps its minimum and its
maximum (in time order), and the first and last rows are kept, so the x range is whole. A mean
per bucket, or every k-th row, would flatten a one-row spike, and an anomaly chart must not
smooth the anomalies away. Numpy only: no plotly, no torch."""
from __future__ import annotations

import numpy as np


def bucket_size(n_rows: int, max_points: int) -> int:
    """Rows per bucket: the smallest size whose buckets' minima and maxima, with the first and
    last rows, are at most `max_points` points (1 when all rows fit)."""
    if n_rows <= max_points:
        return 1
    return -(-n_rows // max(1, (max_points - 2) // 2))  # ceil


def minmax_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Row indices to draw of `values`, (T,) or (T, C), at most `max_points` per channel.

    Every row when T <= max_points; else the first and last rows and each bucket's argmin and
    argmax (`bucket_size` rows per bucket). A (T,) series gets (P,) sorted, distinct indices;
    a (T, C) one gets (P, C), each column ascending, the same P for every channel (a row may
    repeat where a bucket's minimum and maximum coincide), as `np.take_along_axis` wants."""
    values = np.asarray(values, dtype=float)
    flat = values.ndim == 1
    grid = values[:, None] if flat else values  # (T, C)
    t, c = grid.shape
    if t <= max_points:
        rows = np.repeat(np.arange(t)[:, None], c, axis=1)  # (T, C)
    else:
        size = bucket_size(t, max_points)
        n = -(-t // size)
        padded = np.concatenate([grid, np.repeat(grid[-1:], n * size - t, axis=0)])
        # (n, size, C): the last bucket padded with copies of the last row, which argmin and
        # argmax never pick (they return the first of equal values: the real row)
        buckets = padded.reshape(n, size, c)
        start = (np.arange(n) * size)[:, None]  # (n, 1)
        ends = np.broadcast_to(np.array([[0], [t - 1]]), (2, c))
        picks = np.concatenate([ends, buckets.argmin(1) + start, buckets.argmax(1) + start])
        rows = np.sort(picks, axis=0)  # (2n + 2, C)
    return np.unique(rows[:, 0]) if flat else rows
