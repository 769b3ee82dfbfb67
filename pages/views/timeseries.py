"""The time-series stream's Results section: metrics beside the baselines, a threshold by share
of rows flagged, the signal over the anomaly score, the channels' contributions over time, the
top anomalies and downloads."""
from pathlib import Path

import numpy as np
import streamlit as st

from core import results
from core.figures.results import contributions_figure, ranges_differ, signal_score_figure
from core.run_files import RunFiles
from core.streams import Stream
from core.timeseries import results as ts_results
from pages.views.shared import downloads, label_metrics, threshold_control


@st.cache_data(show_spinner="Reading the run's results…", max_entries=8)
def load(run_dir: str, stream: str, stamp: int) -> ts_results.TSResults:
    return ts_results.load_ts_results(Path(run_dir), stream)  # stamp: reload when re-scored


CONTRIBUTION_ROWS = 10  # channels in the contributions heatmap
CONTRIBUTIONS_CAPTION = ("Each channel's reconstruction error above its mean error on normal data; "
                         "the channels with the most over the flagged rows, most first.")
TOP_CHANNELS_CAPTION = ("Top channels: each channel's share of the segment's reconstruction error "
                        "above that channel's mean error on normal data.")


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


def controls(res: ts_results.TSResults, key: str) -> tuple[list[str], float, bool, bool]:
    default = ts_results.top_channels(res.contributions, res.channels, res.score > res.threshold)
    left, right = st.columns(2)
    picked = left.multiselect("Channels to plot", res.channels, default=default,
                              key=f"{key}_channels", disabled=res.signal is None)
    threshold = threshold_control(res, key, right, "rows", shares=(1e-4, 0.5))
    standardise = left.toggle("Standardise channels (z-score)", key=f"{key}_zscore",
                              value=ranges_differ(list(res.signal_of(default).values())),
                              help="On by default when the channels' ranges differ over 10x.")
    positive = bool(np.all(res.score > 0))
    log_score = right.toggle("Log score axis", key=f"{key}_log", disabled=not positive,
                             help=None if positive else "The score is already a log score.") and positive
    return picked, threshold, standardise, log_score


def live_counts(res: ts_results.TSResults, threshold: float) -> None:
    now = results.at_threshold(res.score, res.labels, threshold)
    cols = st.columns(6 if "f1" in now else 3)
    cols[0].metric("Flagged rows", f"{now['flagged']:,}")
    cols[1].metric("Share flagged", f"{now['share']:.1%}")
    cols[2].metric("Flagged segments", f"{len(results.segments(res.score > threshold)):,}")
    if "f1" in now:
        label_metrics(cols[3:], res, now)


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
    st.caption(res.score_meaning)
    with st.expander("Channel contributions over time"):
        shown = ts_results.top_channels(res.contributions, res.channels,
                                        res.score > threshold, n=CONTRIBUTION_ROWS)
        st.plotly_chart(contributions_figure(res.contributions, res.channels, shown,
                                             res.timestamps), key=f"{key}_contributions")
        st.caption(CONTRIBUTIONS_CAPTION if res.channel_normal else
                   "Each channel's reconstruction error (as scored); the channels with the most "
                   "over the flagged rows, most first.")
    st.markdown("**Top anomalies** (flagged segments by peak score)")
    st.dataframe(ts_results.top_anomalies(res.score, res.contributions, res.channels, threshold,
                                       timestamps=res.timestamps), width="stretch")
    st.caption(TOP_CHANNELS_CAPTION if res.channel_normal else
               "Top channels: each channel's share of the segment's summed error (as scored).")
    downloads(res, key)


def section(run_dir: Path, stream: Stream) -> None:
    stamp = RunFiles(run_dir).stream(stream.name).scoring.stat().st_mtime_ns
    view(load(str(run_dir), stream.name, stamp))
