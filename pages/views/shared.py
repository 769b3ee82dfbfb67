"""Results-view parts every stream's section uses. They take any stream's view model that has
the fields of `StreamResults`, so this module knows no stream."""
from pathlib import Path
from typing import Protocol

import numpy as np
import streamlit as st

from core import results
from core.run_files import StreamFiles


class StreamResults(Protocol):
    """What the shared parts read of a stream's view model (`TSResults`, `ImageResults`)."""
    run_id: str
    stream: str
    stream_dir: Path
    threshold: float
    percentile: float | None
    metrics: dict | None

    @property
    def score(self) -> np.ndarray: ...

    @property
    def checkpoint(self) -> Path | None: ...


def downloads(res: StreamResults, key: str) -> None:
    left, right = st.columns(2)
    left.download_button("Download scores.csv", StreamFiles(res.stream_dir).scores.read_bytes,
                         file_name=f"{res.run_id}-{res.stream}-scores.csv", mime="text/csv",
                         key=f"{key}_dl_scores", on_click="ignore",
                         help="is_anomaly uses the run's threshold, not the slider's")
    ckpt = res.checkpoint
    right.download_button("Download model checkpoint (best.pt)", ckpt.read_bytes if ckpt else b"",
                          file_name=f"{res.run_id}-{res.stream}-best.pt", key=f"{key}_dl_ckpt",
                          on_click="ignore", disabled=ckpt is None)


def threshold_control(res: StreamResults, key: str, box, unit: str,
                      shares: tuple[float, float]) -> float:
    """A slider over the share of `unit` (rows, images) flagged, every share in `shares` a
    position however heavy the score's tail (`core.results.threshold_grid`), and a box to type
    the threshold; the two follow each other. Returns the threshold."""
    grid = results.threshold_grid(res.score, res.threshold, shares=shares)
    value, slider, typed = f"{key}_threshold_value", f"{key}_threshold", f"{key}_threshold_typed"
    st.session_state.setdefault(value, res.threshold)

    def from_slider() -> None:
        st.session_state[value] = st.session_state[typed] = st.session_state[slider]

    def from_box() -> None:
        st.session_state[value] = st.session_state[typed]
        st.session_state[slider] = results.nearest(grid, st.session_state[typed])

    current = st.session_state[value]
    st.session_state.setdefault(slider, results.nearest(grid, current))
    st.session_state.setdefault(typed, current)
    box.select_slider(
        f"Threshold, by share of {unit} flagged", options=grid, key=slider, on_change=from_slider,
        format_func=lambda t: f"{results.flagged_share(res.score, t):.2%}",
        help=f"The run's threshold {res.threshold:.4g} is the {res.percentile}th percentile "
             f"of scores on held-out normal training {unit}.")
    box.number_input(f"Threshold ({unit} scoring above it are flagged)", key=typed,
                     on_change=from_box, format="%.6g", step=None)
    return float(st.session_state[value])


def label_metrics(cols, res: StreamResults, now: dict) -> None:
    """F1 (with its change from the run's threshold), precision and recall of `now`
    (`core.results.at_threshold`) in three columns."""
    base = (res.metrics or {}).get("f1")  # at the run's threshold
    cols[0].metric("F1", f"{now['f1']:.3f}", delta=f"{now['f1'] - base:+.3f}"
                   if base is not None and now["threshold"] != res.threshold else None)
    cols[1].metric("Precision", f"{now['precision']:.3f}")
    cols[2].metric("Recall", f"{now['recall']:.3f}")
