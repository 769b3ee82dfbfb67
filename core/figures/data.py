"""Data preview: a split of a time-series dataset thinned to a few thousand points and drawn as
one small chart row per channel (channels differ in scale: rpm beside %), with the anomaly labels
as a last row when the split has them.

Thinning keeps each bucket's minimum and maximum (in time order) instead of its mean, so a
3-row spike in a million rows still shows (`core.downsample`); the labels row shows, per bucket,
whether any row in it is an anomaly."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.downsample import bucket_size, minmax_indices

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


def thin_split(values: np.ndarray, channels: list[str], timestamps: np.ndarray | None = None,
               labels: np.ndarray | None = None, max_points: int = MAX_POINTS) -> SeriesPreview:
    """A (T, C) split with optional (T,) timestamps and 0/1 labels, thinned for drawing."""
    values = np.asarray(values, dtype=float)
    rows = minmax_indices(values, max_points)  # (P, C)
    y = np.take_along_axis(values, rows, axis=0)
    x = np.asarray(timestamps)[rows] if timestamps is not None else rows
    preview = SeriesPreview(list(channels), x, y, "time" if timestamps is not None else "row",
                            len(values))
    if labels is not None:
        starts = np.arange(0, len(values), bucket_size(len(values), max_points))  # (L,)
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
