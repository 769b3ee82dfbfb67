"""The time-series stream's Results section: metrics beside the baselines, a threshold by share
of rows flagged, the signal over the anomaly score, the top anomalies and downloads."""
from pathlib import Path

import numpy as np
import streamlit as st

from core import results
from core.figures.results import ranges_differ, signal_score_figure
from core.streams import Stream
from core.timeseries import results as ts_results
from pages.views.shared import downloads


@st.cache_data(show_spinner="Reading the run's results…", max_entries=8)
def load(run_dir: str, stream: str, stamp: int) -> ts_results.TSResults:
    return ts_results.load_ts_results(Path(run_dir), stream)  # stamp: reload when re-scored


def metrics_block(res: ts_results.TSResults) -> None:
    if res.metrics is None:
        st.info("The scored data had no labels: no metrics. The scores are below.")
        return
    st.dataframe(ts_results.metrics_table(res.metrics).style.format("{:.3f}", na_rep="n/a"),
                 width="stretch")
    st.markdown(ts_results.baseline_verdict(res.metrics))
    caption = ts_results.postprocess_caption(res.metrics)
    st.caption((caption + " " if caption else "") +
               "PA-F1 (point-adjusted) flatters every detector: only for published tables.")


def threshold_control(res: ts_results.TSResults, key: str, box) -> float:
    """A slider over the share of rows flagged (every share from 0.01 % to 50 % is a position,
    however heavy the score's tail) and a box to type the threshold; the two follow each other."""
    grid = results.threshold_grid(res.score, res.threshold)
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
        "Threshold, by share of rows flagged", options=grid, key=slider, on_change=from_slider,
        format_func=lambda t: f"{results.flagged_share(res.score, t):.2%}",
        help=f"The run's threshold {res.threshold:.4g} is the {res.percentile}th percentile "
             "of scores on held-out normal training data.")
    box.number_input("Threshold (rows scoring above it are flagged)", key=typed,
                     on_change=from_box, format="%.6g", step=None)
    return float(st.session_state[value])


def controls(res: ts_results.TSResults, key: str) -> tuple[list[str], float, bool, bool]:
    default = ts_results.top_channels(res.errors, res.channels, res.score > res.threshold)
    left, right = st.columns(2)
    picked = left.multiselect("Channels to plot", res.channels, default=default,
                              key=f"{key}_channels", disabled=res.signal is None)
    threshold = threshold_control(res, key, right)
    standardise = left.toggle("Standardise channels (z-score)", key=f"{key}_zscore",
                              value=ranges_differ(list(res.signal_of(default).values())),
                              help="On by default when the channels' ranges differ over 10x.")
    positive = bool(np.all(res.score > 0))
    log_score = right.toggle("Log score axis", key=f"{key}_log", disabled=not positive,
                             help=None if positive else "The score is already a log score.") and positive
    return picked, threshold, standardise, log_score


def live_counts(res: ts_results.TSResults, threshold: float) -> None:
    now = results.at_threshold(res.score, res.labels, threshold)
    cols = st.columns(6 if res.labels is not None else 3)
    cols[0].metric("Flagged rows", f"{now['flagged']:,}")
    cols[1].metric("Share flagged", f"{now['share']:.1%}")
    cols[2].metric("Flagged segments", f"{now['segments']:,}")
    if res.labels is not None:
        base = (res.metrics or {}).get("f1")  # at the run's threshold
        cols[3].metric("F1", f"{now['f1']:.3f}", delta=f"{now['f1'] - base:+.3f}"
                       if base is not None and threshold != res.threshold else None)
        cols[4].metric("Precision", f"{now['precision']:.3f}")
        cols[5].metric("Recall", f"{now['recall']:.3f}")


def view(res: ts_results.TSResults) -> None:
    key = f"results_{res.run_id}_{res.stream}"
    metrics_block(res)
    for note in res.notes:
        st.warning(note)
    if res.signal_note:
        st.warning(res.signal_note)
    picked, threshold, standardise, log_score = controls(res, key)
    live_counts(res, threshold)
    st.plotly_chart(signal_score_figure(res.score, threshold, res.signal_of(picked), res.labels,
                                        res.timestamps, standardise, log_score, res.score_title),
                    key=f"{key}_chart")
    st.markdown("**Top anomalies** (flagged segments by peak score)")
    st.dataframe(ts_results.top_anomalies(res.score, res.errors, res.channels, threshold,
                                       timestamps=res.timestamps), width="stretch")
    st.caption("Top channels: each channel's share of the segment's summed error (as scored).")
    downloads(res, key)


def section(run_dir: Path, stream: Stream) -> None:
    stamp = (run_dir / stream.name / results.SCORING).stat().st_mtime_ns
    view(load(str(run_dir), stream.name, stamp))
