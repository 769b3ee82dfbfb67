"""The Runs page's chart: loss curves of several runs overlaid, one colour per run."""
from __future__ import annotations

import math
from collections.abc import Mapping

import plotly.colors
import plotly.graph_objects as go

LOSS_TITLE = "loss (MSE on masked patches, normalised units)"


def overlay_loss_figure(curves: Mapping[str, Mapping[str, Mapping]], log_y: bool = False
                        ) -> go.Figure:
    """{run_id: {stream: core.curves.loss_curves arrays}} → train (solid) and validation (dashed)
    loss per epoch, one colour per run. Epochs, not steps, are the x axis: runs with different
    batch sizes or data lengths take different steps per epoch, so steps would not line up."""
    palette = plotly.colors.qualitative.Plotly
    fig, last_epoch = go.Figure(), 1
    for i, (run_id, streams) in enumerate(curves.items()):
        colour = palette[i % len(palette)]
        for stream, c in streams.items():
            last_epoch = max([last_epoch, *c["epoch"]])
            tag = run_id if len(streams) == 1 else f"{run_id} {stream}"
            for key, kind, dash in (("epoch_train_loss", "train", "solid"),
                                    ("val_loss", "val", "dash")):
                fig.add_trace(go.Scatter(x=c["epoch"], y=c[key], name=f"{tag} · {kind}",
                                         legendgroup=tag, mode="lines+markers",
                                         line=dict(color=colour, dash=dash)))
    fig.update_layout(height=400, margin=dict(l=10, r=10, t=60, b=10), hovermode="x unified",
                      xaxis=dict(title="epoch", tick0=1, dtick=math.ceil(last_epoch / 10)),
                      yaxis=dict(title=LOSS_TITLE, type="log" if log_y else "linear"),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0))
    return fig
