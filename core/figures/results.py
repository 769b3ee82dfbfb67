"""The Results page's charts: the signal over the anomaly score, flagged and labelled segments
shaded across both, downsampled so a long series stays fast to draw (peaks kept,
`core.downsample`); the channels' contributions over time; the score histogram (normal vs
defect) with the threshold."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.downsample import minmax_indices
from core.results import segments

MAX_POINTS = 3000  # per trace
MAX_BANDS = 300  # shaded segments per kind (flagged, labelled)
FLAG_COLOUR, LABEL_COLOUR = "rgba(214, 39, 40, 0.22)", "rgba(117, 60, 170, 0.22)"
SCORE_COLOUR, THRESHOLD_COLOUR = "#1f3b5c", "#d62728"
NORMAL_COLOUR, DEFECT_COLOUR = "#4c9be8", "#ff7f0e"  # histogram of scores by label

SCORE_AXIS = "anomaly score"  # the score axis when the view names no unit


def time_axis(timestamps: np.ndarray | None, n: int) -> tuple[np.ndarray, str]:
    """(x values, axis title): parsed datetimes when every timestamp parses, else row numbers."""
    if timestamps is not None:
        parsed = pd.to_datetime(pd.Series(timestamps), errors="coerce")
        if len(parsed) == n and not parsed.isna().any():
            return parsed.to_numpy(), "time"
    return np.arange(n), "row"


def display_segments(mask: np.ndarray, max_points: int = MAX_POINTS,
                     max_bands: int = MAX_BANDS) -> list[tuple[int, int]]:
    """`segments(mask)` as bands to draw: segments closer than one display bucket merge (on a
    long series they would draw as one band anyway), then, while more than `max_bands` remain,
    the closest neighbours merge (thousands of shapes make the chart crawl). A short series
    with few segments keeps them all."""
    segs = np.array(segments(mask), dtype=int).reshape(-1, 2)  # (S, 2) half-open
    if len(segs) < 2:
        return [tuple(s) for s in segs.tolist()]
    gaps = segs[1:, 0] - segs[:-1, 1]  # (S-1,) rows between neighbours, >= 1
    min_gap = len(mask) // max_points  # 0 for short series
    if len(segs) > max_bands:  # keep only the max_bands - 1 widest gaps as splits
        min_gap = max(min_gap, int(np.sort(gaps)[::-1][max_bands - 1]))
    first = np.flatnonzero(np.concatenate(([True], gaps > min_gap)))  # a band starts here
    stops = np.maximum.reduceat(segs[:, 1], first)  # per band: the last segment's stop
    return list(zip(segs[first, 0].tolist(), stops.tolist()))


def _bands(x: np.ndarray, segs: list[tuple[int, int]], colour: str, name: str) -> list[dict]:
    """One rectangle per segment spanning both subplots; the first carries the legend entry."""
    half = pd.Series(x).diff().median() / 2 if len(x) > 1 else 0
    return [dict(type="rect", xref="x", yref="paper", x0=x[start] - half, x1=x[stop - 1] + half,
                 y0=0, y1=1, fillcolor=colour, line_width=0, layer="below", name=name,
                 legendgroup=name, showlegend=i == 0) for i, (start, stop) in enumerate(segs)]


def ranges_differ(values: list[np.ndarray], ratio: float = 10.0) -> bool:
    """True when the channels' value ranges (peak to peak) differ by more than `ratio`: on one
    raw-unit axis the small ones would look flat, so the page standardises them by default."""
    spans = [float(np.ptp(v)) for v in values if len(v)]
    return len(spans) > 1 and max(spans) > ratio * max(min(spans), 1e-12)


def _standardise(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    std = values.std()
    return (values - values.mean()) / (std if std > 0 else 1.0)


def signal_score_figure(score: np.ndarray, threshold: float,
                        signal: dict[str, np.ndarray] | None = None,
                        labels: np.ndarray | None = None,
                        timestamps: np.ndarray | None = None,
                        standardise: bool = False, log_score: bool = False,
                        score_title: str = SCORE_AXIS,
                        max_points: int = MAX_POINTS) -> go.Figure:
    """Two stacked subplots sharing x: the selected channels of the raw signal (top; omitted
    when `signal` is None or empty; z-scored per channel with `standardise`) and the score (T,)
    with the threshold line (bottom; log axis with `log_score`). Rows with score > threshold are
    shaded in one colour, true-label rows (T,) in another."""
    score = np.asarray(score, dtype=float)
    x, x_title = time_axis(timestamps, len(score))
    two = bool(signal)
    fig = make_subplots(rows=2 if two else 1, cols=1, shared_xaxes=True,
                        vertical_spacing=0.06, row_heights=[0.55, 0.45] if two else None)
    score_row = 2 if two else 1
    for name, values in (signal or {}).items():
        values = _standardise(values) if standardise else np.asarray(values)
        keep = minmax_indices(values, max_points)
        fig.add_trace(go.Scattergl(x=x[keep], y=values[keep], name=name,
                                   mode="lines", line_width=1), row=1, col=1)
    keep = minmax_indices(score, max_points)
    fig.add_trace(go.Scattergl(x=x[keep], y=score[keep], name="anomaly score", mode="lines",
                               line=dict(color=SCORE_COLOUR, width=1)), row=score_row, col=1)
    fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[threshold, threshold], mode="lines",
                             name=f"threshold {threshold:.4g}",
                             line=dict(color=THRESHOLD_COLOUR, dash="dash", width=1.5)),
                  row=score_row, col=1)
    shapes = _bands(x, display_segments(score > threshold, max_points), FLAG_COLOUR,
                    "flagged (score > threshold)")
    if labels is not None:
        shapes += _bands(x, display_segments(np.asarray(labels) == 1, max_points),
                         LABEL_COLOUR, "true anomaly (label)")
    fig.update_layout(shapes=shapes)  # at once: add_shape one by one is quadratic
    if two:
        fig.update_yaxes(title_text="value (z-score per channel)" if standardise
                         else "value (raw units)", row=1, col=1)
    fig.update_yaxes(title_text=score_title, type="log" if log_score else "linear",
                     row=score_row, col=1)
    fig.update_xaxes(title_text=x_title, row=score_row, col=1)
    fig.update_layout(height=580 if two else 380, margin=dict(l=10, r=10, t=30, b=10),
                      hovermode="x unified", legend=dict(orientation="h", y=1.08, x=0))
    return fig


LOG_FLOOR = 0.1  # contributions at or below it share the heatmap's palest colour


def bucket_max(values: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(T, C) → (first row of each bucket (B,), each bucket's max (B, C)): at most `max_points`
    buckets of consecutive rows, so a one-row peak survives on a long series."""
    starts = np.arange(0, len(values), max(1, -(-len(values) // max_points)))  # (B,)
    return starts, np.maximum.reduceat(values, starts, axis=0)


def contributions_figure(contributions: np.ndarray, channels: list[str], shown: list[str],
                         timestamps: np.ndarray | None = None,
                         max_points: int = MAX_POINTS) -> go.Figure:
    """A heatmap of the `shown` channels' contributions (T, C) over time, one row per channel in
    the order given (first on top), each bucket of rows drawn at its max, on a log colour scale
    (contributions span orders of magnitude; 0.1 and below share the palest colour)."""
    x, x_title = time_axis(timestamps, len(contributions))
    columns = [channels.index(name) for name in shown]
    starts, peaks = bucket_max(np.asarray(contributions, dtype=float)[:, columns], max_points)
    logs = np.log10(np.maximum(peaks.T, LOG_FLOOR))  # (len(shown), B)
    decades = np.arange(-1, max(int(np.ceil(logs.max())), 0) + 1)
    fig = go.Figure(go.Heatmap(
        x=x[starts], y=shown, z=logs, colorscale="Reds", zmin=-1, customdata=peaks.T,
        hovertemplate="%{y}: %{customdata:.3g}<extra></extra>",
        colorbar=dict(title="above normal", tickvals=decades,
                      ticktext=[f"{10.0 ** d:g}" for d in decades])))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=120 + 24 * len(shown), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis_title=x_title)
    return fig


def score_histogram(scores: np.ndarray, labels: np.ndarray | None, threshold: float,
                    score_title: str = SCORE_AXIS, unit: str = "rows",
                    bins: int = 40) -> go.Figure:
    """Distribution of the scores (N,) with the threshold marked (a dashed vertical line, the
    layout's only shape). With labels (N,) 0/1, normal and defect scores are two overlaid
    histograms on the same bins; without, one. `unit` names what is counted ("images")."""
    scores = np.asarray(scores, dtype=float)
    lo = min(float(scores.min()), threshold) if scores.size else threshold
    hi = max(float(scores.max()), threshold) if scores.size else threshold
    xbins = dict(start=lo, end=hi + 1e-12, size=(hi - lo) / bins if hi > lo else 1.0)
    groups = [("scores", scores, SCORE_COLOUR)] if labels is None else [
        ("normal (label 0)", scores[np.asarray(labels) == 0], NORMAL_COLOUR),
        ("defect (label 1)", scores[np.asarray(labels) == 1], DEFECT_COLOUR)]
    fig = go.Figure([go.Histogram(x=x, xbins=xbins, name=name, marker_color=colour,
                                  opacity=0.65 if labels is not None else 1.0)
                     for name, x, colour in groups])
    fig.add_vline(x=threshold, line_dash="dash", line_color=THRESHOLD_COLOUR,
                  annotation_text=f"threshold {threshold:.4g}")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), barmode="overlay",
                      showlegend=labels is not None, xaxis_title=score_title,
                      yaxis_title=f"{unit} (count)", legend=dict(orientation="h", y=1.12, x=0))
    return fig
