"""Figures of the Train page's live panel: the stage graph and the loss curves.

Both take plain data (`core.train_view.StageView`-like objects, `core.curves.loss_curves`
output) and return plotly figures with fixed axes: a live panel redraws every second, and plotly's zoom does
not survive a redraw, so the page offers log scale and smoothing controls instead."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import plotly.graph_objects as go

from core.streams import stage_names

STATE_COLOURS = {  # stage state → node colour; every state has its own, and a legend entry
    "idle": "#9ca3af",
    "running": "#2563eb",
    "done": "#16a34a",
    "failed": "#dc2626",
    "stopped": "#f97316",
    "skipped": "#e5e7eb",
}
STREAM_COLOURS = ("#2563eb", "#9333ea", "#0d9488", "#b45309")  # one per stream, in order
LOSS_AXIS = "loss (normalised units)"  # MSE, plus the variance term of a model with one
STEP_AXIS = "optimizer step"


def _node_text(stage) -> str:
    """Stage name broken after its first underscore (long names stay readable side by side),
    plus the time spent when there is one."""
    name = stage.name.replace("_", "_<br>", 1)
    if stage.seconds is not None and stage.status != "skipped":
        secs = stage.seconds
        name += f"<br><i>{secs:.1f} s</i>" if secs < 60 else f"<br><i>{secs / 60:.1f} min</i>"
    return name


def stage_graph(stages: Iterable[Any]) -> go.Figure:
    """Stages left to right in pipeline order, joined by arrows; one trace per state (so the
    legend lists all six states, with the colour each node of that state has). Skipped stages
    are pale, and the edges touching them dotted. `stages` items need `.name`, `.status`,
    `.seconds` and may have `.message`."""
    order = {name: i for i, name in enumerate(stage_names())}
    stages = sorted(stages, key=lambda s: order.get(s.name, len(order)))
    x_of = {s.name: i for i, s in enumerate(stages)}
    fig = go.Figure()
    for a, b in zip(stages, stages[1:]):
        dotted = "skipped" in (a.status, b.status)
        fig.add_annotation(x=x_of[b.name] - 0.17, y=0, ax=x_of[a.name] + 0.17, ay=0,
                           xref="x", yref="y", axref="x", ayref="y", text="", showarrow=True,
                           arrowhead=2, arrowsize=1.2, arrowwidth=1.5,
                           arrowcolor="#d1d5db" if dotted else "#6b7280")
    for state, colour in STATE_COLOURS.items():
        members = [s for s in stages if s.status == state]
        fig.add_trace(go.Scatter(
            x=[x_of[s.name] for s in members] or [None], y=[0] * len(members) or [None],
            mode="markers+text", name=state, legendgroup=state,
            marker=dict(symbol="square", size=30, color=colour,
                        line=dict(width=2, color="#9ca3af" if state == "skipped" else colour)),
            text=[_node_text(s) for s in members], textposition="bottom center",
            textfont=dict(size=12, color="#9ca3af" if state == "skipped" else "#111827"),
            customdata=[[s.name, s.status, getattr(s, "message", None) or ""] for s in members],
            hovertemplate="%{customdata[0]}: %{customdata[1]}<br>%{customdata[2]}<extra></extra>",
        ))
    n = max(len(stages), 1)
    fig.update_layout(
        height=190, margin=dict(l=10, r=10, t=30, b=10), plot_bgcolor="rgba(0,0,0,0)",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, title_text="stage state: "),
        xaxis=dict(visible=False, range=[-0.6, n - 0.4], fixedrange=True),
        yaxis=dict(visible=False, range=[-1.3, 0.5], fixedrange=True),
        dragmode=False, showlegend=True)
    return fig


MARKED_POINTS = 30  # a training curve this short also gets markers (a lone point has no line)


def loss_figure(curves: Mapping[str, Mapping[str, Any]], log_y: bool = False,
                revision: str = "") -> go.Figure:
    """Training loss by optimizer step (line) and validation loss per epoch (markers) for each
    stream. A validation point sits at the step where its epoch ended (`val_step`, from
    `core.train_view`); without `val_step` it falls back to epoch × steps-per-epoch.
    `revision` (the run id) becomes plotly's `uirevision`: while it and the scale stay the same,
    a redraw with new points keeps the user's zoom."""
    fig = go.Figure()
    for i, (stream, c) in enumerate(curves.items()):
        colour = STREAM_COLOURS[i % len(STREAM_COLOURS)]
        steps, train = c.get("step", []), c.get("train_loss", [])
        if len(steps):
            mode = "lines+markers" if len(steps) <= MARKED_POINTS else "lines"
            fig.add_trace(go.Scatter(x=steps, y=train, mode=mode, name=f"{stream} train",
                                       line=dict(color=colour, width=1.5),
                                       marker=dict(size=5, color=colour),
                                       hovertemplate="step %{x:.0f}: %{y:.4g}<extra></extra>"))
        val, epochs = c.get("val_loss", []), c.get("epoch", [])
        if len(val):
            x = c.get("val_step")
            if x is None or len(x) != len(val):
                per_epoch = (steps[-1] / epochs[-1]) if len(steps) and len(epochs) else 1.0
                x = [e * per_epoch for e in epochs]
            fig.add_trace(go.Scatter(
                x=x, y=val, mode="lines+markers", name=f"{stream} validation",
                line=dict(color=colour, width=1.5, dash="dash"),
                marker=dict(size=8, symbol="diamond", color=colour),
                customdata=epochs,
                hovertemplate="epoch %{customdata:.0f} (step %{x:.0f}): %{y:.4g}<extra></extra>"))
    if not fig.data:
        fig.add_annotation(text="no loss logged yet", x=0.5, y=0.5, xref="paper", yref="paper",
                           showarrow=False, font=dict(size=14, color="#6b7280"))
    fig.update_layout(
        height=340, margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0),
        xaxis=dict(title=dict(text=STEP_AXIS), rangemode="tozero"),
        yaxis=dict(title=dict(text=LOSS_AXIS + (", log scale" if log_y else "")),
                   type="log" if log_y else "linear"),
        hovermode="x unified", uirevision=f"{revision}|{'log' if log_y else 'linear'}")
    return fig
