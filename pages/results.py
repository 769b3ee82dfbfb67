"""Results: pick a finished run; per stream, its metrics beside the baselines, the signal over
the anomaly score with a live threshold, the top anomalies and downloads."""
from pathlib import Path

import streamlit as st

from core import results
from core.figures.results import ranges_differ, signal_score_figure
from core.runs import runs_dir, workspace

PICK = "results_pick"  # the selectbox; "results_run": the choice, which other pages may set


@st.cache_data(show_spinner="Reading the run's results…", max_entries=8)
def load(run_dir: str, stream: str, stamp: int) -> results.TSResults:
    return results.load_ts_results(Path(run_dir), stream)  # stamp: reload when re-scored


def remember() -> None:  # the choice outlives the widget (it is dropped off this page)
    st.session_state["results_run"] = st.session_state[PICK]


def pick_run(ws: Path) -> Path:
    entries = results.finished_runs(ws)
    if not entries:
        st.info("No finished run yet. Start one on the **Train** page; its results show here.")
        st.stop()
    names = {e["run_id"]: f"{e['run_id']}  {e.get('name') or ''}" for e in entries}
    wanted = st.session_state.get("results_run")
    st.session_state[PICK] = wanted if wanted in names else next(iter(names))
    run_id = st.selectbox("Run (finished runs, newest first)", list(names), key=PICK,
                          format_func=names.get, on_change=remember)
    return runs_dir(ws) / run_id


def metrics_block(res: results.TSResults) -> None:
    if res.metrics is None:
        st.info("The scored data had no labels: no metrics. The scores are below.")
        return
    st.dataframe(results.metrics_table(res.metrics).style.format("{:.3f}", na_rep="n/a"),
                 width="stretch")
    st.markdown(results.baseline_verdict(res.metrics))
    st.caption("PA-F1 (point-adjusted) flatters every detector: only for published tables.")


def controls(res: results.TSResults, key: str) -> tuple[list[str], float, bool, bool]:
    lo, hi, step = results.threshold_range(res.score, res.threshold)
    default = results.top_channels(res.errors, res.channels, res.score > res.threshold)
    left, right = st.columns(2)
    picked = left.multiselect("Channels to plot", res.channels, default=default,
                              key=f"{key}_channels", disabled=res.signal is None)
    threshold = right.slider(
        "Threshold (rows scoring above it are flagged)", lo, hi, value=res.threshold,
        step=step, format="%.4f", key=f"{key}_threshold",
        help=f"The run's threshold {res.threshold:.4f} is the {res.percentile}th percentile "
             "of scores on held-out normal training data.")
    standardise = left.toggle("Standardise channels (z-score)", key=f"{key}_zscore",
                              value=ranges_differ(list(res.signal_of(default).values())),
                              help="On by default when the channels' ranges differ over 10x.")
    log_score = right.toggle("Log score axis", key=f"{key}_log")
    return picked, threshold, standardise, log_score


def live_counts(res: results.TSResults, threshold: float) -> None:
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


def timeseries_view(res: results.TSResults) -> None:
    key = f"results_{res.run_id}_{res.stream}"
    metrics_block(res)
    if res.signal_note:
        st.warning(res.signal_note)
    picked, threshold, standardise, log_score = controls(res, key)
    live_counts(res, threshold)
    st.plotly_chart(signal_score_figure(res.score, threshold, res.signal_of(picked), res.labels,
                                        res.timestamps, standardise, log_score, res.score_title),
                    key=f"{key}_chart")
    st.markdown("**Top anomalies** (flagged segments by peak score)")
    st.dataframe(results.top_anomalies(res.score, res.errors, res.channels, threshold,
                                       timestamps=res.timestamps), width="stretch")
    st.caption("Top channels: each channel's share of the segment's summed error (as scored).")
    downloads(res, key)


def downloads(res: results.TSResults, key: str) -> None:
    left, right = st.columns(2)
    left.download_button("Download scores.csv", (res.stream_dir / results.SCORES).read_bytes,
                         file_name=f"{res.run_id}-{res.stream}-scores.csv", mime="text/csv",
                         key=f"{key}_dl_scores", on_click="ignore",
                         help="is_anomaly uses the run's threshold, not the slider's")
    ckpt = res.checkpoint
    right.download_button("Download model checkpoint (best.pt)", ckpt.read_bytes if ckpt else b"",
                          file_name=f"{res.run_id}-{res.stream}-best.pt", key=f"{key}_dl_ckpt",
                          on_click="ignore", disabled=ckpt is None)


st.title("Results")
run_dir = pick_run(workspace())
streams = results.result_streams(run_dir)
if not streams:
    st.info("This run scored no stream: there are no results to show.")
for stream in streams:
    st.subheader(stream.title)
    if stream.kind != "timeseries":
        st.info(f"The {stream.title} results view is not built yet.")
        continue
    stamp = (run_dir / stream.name / results.SCORING).stat().st_mtime_ns
    try:
        timeseries_view(load(str(run_dir), stream.name, stamp))
    except results.ResultsError as e:
        st.error(str(e))
