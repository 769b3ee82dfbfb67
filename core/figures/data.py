"""Data preview: a split of a time-series dataset thinned to a few thousand points and drawn as
one small chart row per channel (channels differ in scale: rpm beside %), with the anomaly labels
as a last row when the split has them.

Thinning keeps each bucket's minimum and maximum (in time order) instead of its mean, so a
3-row spike in a million rows still shows: a preview of anomaly data must not smooth the
anomalies away (`core.curves.downsample` averages, which suits loss curves, not this)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

MAX_POINTS = 2000
ROW_PX, LABEL_PX, MARGIN_PX = 140, 70, 90


@dataclass
class SeriesPreview:
    """One split, thinned for drawing. P kept points per channel, L label points."""

    channels: list[str]  # C names
    x: np.ndarray  # (P, C) timestamps (str) or row numbers (int) of the kept points
    y: np.ndarray  # (P, C) float values
    x_title: str  # "time" or "row"
    n_rows: int  # T, rows in the split
    label_x: np.ndarray | None = None  # (L,) bucket starts, same kind as x
    label_y: np.ndarray | None = None  # (L,) 0/1: any anomaly in the bucket


def _buckets(n_rows: int, max_points: int) -> tuple[int, int]:
    """(bucket size b, bucket count n) with n * 2 <= max_points and the last bucket non-empty."""
    b = int(np.ceil(n_rows / max(1, max_points // 2)))
    return b, int(np.ceil(n_rows / b))


def minmax_rows(values: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """(P, C) row indices to keep per channel, ascending: every row when T <= max_points, else
    the rows of each bucket's min and max (P <= max_points). `values` is (T, C)."""
    t, c = values.shape
    if t <= max_points:
        return np.repeat(np.arange(t)[:, None], c, axis=1)
    b, n = _buckets(t, max_points)
    padded = np.full((n * b, c), np.nan)
    padded[:t] = values
    grouped = padded.reshape(n, b, c)  # (n, b, C); only the last bucket has NaN padding
    start = (np.arange(n) * b)[:, None]  # (n, 1)
    lo = np.nanargmin(grouped, axis=1) + start  # (n, C)
    hi = np.nanargmax(grouped, axis=1) + start
    return np.sort(np.concatenate([lo, hi]), axis=0)  # (2n, C)


def thin_split(values: np.ndarray, channels: list[str], timestamps: np.ndarray | None = None,
               labels: np.ndarray | None = None, max_points: int = MAX_POINTS) -> SeriesPreview:
    """A (T, C) split with optional (T,) timestamps and 0/1 labels, thinned for drawing."""
    values = np.asarray(values, dtype=float)
    rows = minmax_rows(values, max_points)  # (P, C)
    y = np.take_along_axis(values, rows, axis=0)
    x = np.asarray(timestamps)[rows] if timestamps is not None else rows
    preview = SeriesPreview(list(channels), x, y, "time" if timestamps is not None else "row",
                            len(values))
    if labels is not None:
        b, n = _buckets(len(values), max_points) if len(values) > max_points else (1, len(values))
        starts = np.arange(n) * b
        preview.label_y = np.maximum.reduceat(np.asarray(labels, dtype=np.int8), starts)
        preview.label_x = np.asarray(timestamps)[starts] if timestamps is not None else starts
    return preview


def draw_preview(preview: SeriesPreview, channels: list[str] | None = None,
                 max_channels: int = 4) -> go.Figure:
    """One row per channel (the given ones, else the first `max_channels`), shared x axis,
    a legend, and a filled `label` row when the preview has labels."""
    names = [c for c in (channels or preview.channels[:max_channels]) if c in preview.channels]
    has_labels = preview.label_y is not None
    n_rows = max(1, len(names)) + has_labels
    heights = [1.0] * max(1, len(names)) + ([0.4] if has_labels else [])
    fig = make_subplots(rows=n_rows, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=heights)
    for i, name in enumerate(names, 1):
        j = preview.channels.index(name)
        # SVG, not Scattergl: a page of previews would exhaust the browser's WebGL contexts
        fig.add_trace(go.Scatter(x=preview.x[:, j], y=preview.y[:, j], mode="lines", name=name,
                                 line={"width": 1.2}), row=i, col=1)
        fig.update_yaxes(title_text=_short(name), row=i, col=1)
    if has_labels:
        fig.add_trace(go.Scatter(x=preview.label_x, y=preview.label_y, mode="lines",
                                 line={"shape": "hv", "width": 0, "color": "#d62728"},
                                 fill="tozeroy", name="anomaly (label)"), row=n_rows, col=1)
        fig.update_yaxes(title_text="label", range=[0, 1.05], tickvals=[0, 1], row=n_rows, col=1)
    fig.update_xaxes(title_text=preview.x_title, row=n_rows, col=1)
    fig.update_layout(height=MARGIN_PX + ROW_PX * max(1, len(names)) + LABEL_PX * has_labels,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=True,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0})
    return fig


def preview_figure(values: np.ndarray, channels: list[str], timestamps: np.ndarray | None = None,
                   max_channels: int = 4, max_points: int = MAX_POINTS,
                   labels: np.ndarray | None = None) -> go.Figure:
    """Lines of the first `max_channels` channels of a (T, C) split, at most `max_points` points
    each; x is "time" when timestamps are given, else "row"."""
    k = min(max_channels, len(channels))
    preview = thin_split(np.asarray(values)[:, :k], channels[:k], timestamps, labels, max_points)
    return draw_preview(preview, max_channels=k)


def _short(name: str, width: int = 18) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
