"""The Runs page's chart: loss curves of several runs overlaid, one subplot per stream (their
losses are on different scales), one colour per run."""
from __future__ import annotations

import math
from collections.abc import Mapping

import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.streams import STREAMS

LOSS_TITLE = "loss (normalised units)"


def overlay_loss_figure(curves: Mapping[str, Mapping[str, Mapping]], log_y: bool = False
                        ) -> go.Figure:
    """{run_id: {stream: core.curves.loss_curves arrays}} → train (solid) and validation (dashed)
    loss per epoch: one subplot per stream that any run trained, one colour per run (the same in
    every subplot, one legend entry per run and kind). Epochs, not steps, are the x axis: runs
    with different batch sizes or data lengths take different steps per epoch."""
    palette = plotly.colors.qualitative.Plotly
    streams = [s for s in STREAMS if any(s in by_stream for by_stream in curves.values())]
    fig = make_subplots(rows=max(len(streams), 1), cols=1, vertical_spacing=0.12,
                        subplot_titles=[STREAMS[s].title for s in streams] or None)
    last_epoch, in_legend = 1, set()
    for i, (run_id, by_stream) in enumerate(curves.items()):
        colour = palette[i % len(palette)]
        for row, stream in enumerate(streams, 1):
            c = by_stream.get(stream)
            if c is None:
                continue
            last_epoch = max([last_epoch, *c["epoch"]])
            for key, kind, dash in (("epoch_train_loss", "train", "solid"),
                                    ("val_loss", "val", "dash")):
                name = f"{run_id} · {kind}"
                fig.add_trace(go.Scatter(
                    x=c["epoch"], y=c[key], name=name, legendgroup=run_id,
                    showlegend=name not in in_legend, mode="lines+markers",
                    line=dict(color=colour, dash=dash),
                    hovertemplate=f"{run_id} {stream} {kind}, epoch %{{x}}: %{{y:.4g}}"
                                  "<extra></extra>"), row=row, col=1)
                in_legend.add(name)
    fig.update_xaxes(title_text="epoch", tick0=1, dtick=math.ceil(last_epoch / 10))
    fig.update_yaxes(title_text=LOSS_TITLE, type="log" if log_y else "linear")
    fig.update_layout(height=160 + 300 * max(len(streams), 1),
                      margin=dict(l=10, r=10, t=110, b=10),  # room for legend and titles
                      legend=dict(orientation="h", yref="container", y=1.0, yanchor="top",
                                  x=0))
    return fig
