"""Results: pick a finished run; per stream, its metrics beside the baselines, a live threshold
and downloads; for time series the signal over the anomaly score and the top anomalies, for
images the score histogram and a gallery of heatmap overlays."""
from pathlib import Path

import numpy as np
import streamlit as st

from core import image_results as img
from core import results
from core.figures.results import ranges_differ, score_histogram, signal_score_figure
from core.errors import AtcError
from core.export import export_zip, exportable_streams
from core.runs import runs_dir, workspace
from core.scoring_runs import model_run_of, start_scoring
from core.stages import STREAMS, Stream
from core.uploads import list_datasets

PICK = "results_pick"  # the selectbox; "results_run": the choice, which other pages may set


PER_ROW, GALLERY_SIZE = 4, 16  # gallery images per row, images shown


@st.cache_data(show_spinner="Reading the run's results…", max_entries=8)
def load(run_dir: str, stream: str, stamp: int) -> results.TSResults:
    return results.load_ts_results(Path(run_dir), stream)  # stamp: reload when re-scored


@st.cache_data(show_spinner="Reading the run's image results…", max_entries=4)
def load_images(run_dir: str, stream: str, stamp: int) -> img.ImageResults:
    return img.load_image_results(Path(run_dir), stream)


@st.cache_data(show_spinner="Drawing the overlays…", max_entries=32)
def gallery(run_dir: str, stream: str, stamp: int, threshold: float,
            show: str) -> list[img.GalleryItem]:
    return img.gallery(load_images(run_dir, stream, stamp), threshold, GALLERY_SIZE, show=show)


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
    caption = results.postprocess_caption(res.metrics)
    st.caption((caption + " " if caption else "") +
               "PA-F1 (point-adjusted) flatters every detector: only for published tables.")


def threshold_control(res: results.TSResults, key: str, box) -> float:
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


def controls(res: results.TSResults, key: str) -> tuple[list[str], float, bool, bool]:
    default = results.top_channels(res.errors, res.channels, res.score > res.threshold)
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
    st.dataframe(results.top_anomalies(res.score, res.errors, res.channels, threshold,
                                       timestamps=res.timestamps), width="stretch")
    st.caption("Top channels: each channel's share of the segment's summed error (as scored).")
    downloads(res, key)


def downloads(res: results.TSResults | img.ImageResults, key: str) -> None:
    left, right = st.columns(2)
    left.download_button("Download scores.csv", (res.stream_dir / results.SCORES).read_bytes,
                         file_name=f"{res.run_id}-{res.stream}-scores.csv", mime="text/csv",
                         key=f"{key}_dl_scores", on_click="ignore",
                         help="is_anomaly uses the run's threshold, not the slider's")
    ckpt = res.checkpoint
    right.download_button("Download model checkpoint (best.pt)", ckpt.read_bytes if ckpt else b"",
                          file_name=f"{res.run_id}-{res.stream}-best.pt", key=f"{key}_dl_ckpt",
                          on_click="ignore", disabled=ckpt is None)


def image_counts(res: img.ImageResults, labels: np.ndarray | None, threshold: float) -> None:
    now = img.images_at_threshold(res.score, labels, threshold)
    cols = st.columns(5 if "f1" in now else 2)
    cols[0].metric("Flagged images", f"{now['flagged']:,} of {len(res.score):,}")
    cols[1].metric("Share flagged", f"{now['share']:.1%}")
    if "f1" in now:
        base = (res.metrics or {}).get("f1")  # at the run's threshold
        cols[2].metric("F1", f"{now['f1']:.3f}", delta=f"{now['f1'] - base:+.3f}"
                       if base is not None and threshold != res.threshold else None)
        cols[3].metric("Precision", f"{now['precision']:.3f}")
        cols[4].metric("Recall", f"{now['recall']:.3f}")


def image_gallery(run_dir: Path, res: img.ImageResults, stamp: int, threshold: float,
                  key: str) -> None:
    show = st.selectbox("Gallery: show", list(img.SHOW), format_func=img.SHOW.get,
                        key=f"{key}_show")
    items = gallery(str(run_dir), res.stream, stamp, threshold, show)
    st.caption(f"Up to {GALLERY_SIZE} {img.SHOW[show]}, highest score first. Left: the image; "
               "blue outline: the pixels above the threshold (what is flagged); green outline: "
               "the ground-truth defect mask, where the dataset has one. Right: the anomaly map "
               "over the image (black, red, yellow, white as the error grows; one scale for all "
               "images). **Open** shows an image large.")
    if not items:
        st.info(f"The run scored no {img.SHOW[show]}.")
    for start in range(0, len(items), PER_ROW):
        for i, (col, item) in enumerate(zip(st.columns(PER_ROW), items[start:start + PER_ROW]),
                                        start):
            if item.tile is None:
                col.caption(f"{item.caption} (image unavailable)")
                continue
            col.image(item.tile, caption=item.caption, width="stretch",
                      output_format="PNG")  # PNG: JPEG smears the thin outlines
            if col.button("Open", key=f"{key}_open_{i}", icon=":material/zoom_in:"):
                enlarged(item)


@st.dialog("Image and anomaly map", width="large")
def enlarged(item: img.GalleryItem) -> None:
    st.image(item.tile, caption=item.caption, width="stretch", output_format="PNG")


def images_section(run_dir: Path, stream: Stream) -> None:
    stamp = (run_dir / stream.name / results.SCORING).stat().st_mtime_ns
    res = load_images(str(run_dir), stream.name, stamp)
    key = f"results_{res.run_id}_{res.stream}"
    if res.metrics is None:
        st.info("The scored images had no labels: no metrics. The scores are below.")
    else:
        st.dataframe(img.image_metrics_table(res.metrics).style.format("{:.3f}", na_rep="n/a"),
                     width="stretch")
        st.markdown(img.image_baseline_verdict(res.metrics))
    if res.data_note:
        st.warning(res.data_note)
    lo, hi, step = img.image_threshold_range(res.score, res.threshold)
    threshold = st.slider(
        "Threshold (images scoring above it are flagged)", lo, hi, value=res.threshold,
        step=step, format="%.4f", key=f"{key}_threshold",
        help=f"The run's threshold {res.threshold:.4f} is the {res.percentile}th percentile "
             "of scores on held-out normal training images.")
    labels = res.labels if res.labels is not None and len(np.unique(res.labels)) == 2 else None
    image_counts(res, labels, threshold)
    st.plotly_chart(score_histogram(res.score, labels, threshold, res.score_title, "images"),
                    key=f"{key}_histogram")
    image_gallery(run_dir, res, stamp, threshold, key)
    downloads(res, key)


def timeseries_section(run_dir: Path, stream: Stream) -> None:
    stamp = (run_dir / stream.name / results.SCORING).stat().st_mtime_ns
    timeseries_view(load(str(run_dir), stream.name, stamp))


NONE = "none"  # the dataset choice that leaves a stream out of a scoring


def score_new_data(ws: Path, run_dir: Path, streams: list[str]) -> None:
    """Pick an uploaded dataset per trained stream and start a scoring run with this run's
    models; the Train page's live panel follows it."""
    chosen = {}
    for col, stream in zip(st.columns(len(streams)), streams):
        datasets = {d.name: d for d in list_datasets(ws, STREAMS[stream].kind)}
        pick = col.selectbox(f"{STREAMS[stream].title}: data to score", [NONE, *datasets],
                             key=f"results_score_{stream}",
                             format_func=lambda n: "(none)" if n == NONE else n)
        chosen[stream] = datasets[pick].path if pick != NONE else None
    if st.button("Score new data", key="results_score", disabled=not any(chosen.values()),
                 help="A scoring run of its own: this run's model, normalisation and "
                      "threshold; the data must have the same channels (or image size and "
                      "mode)"):
        try:
            with st.spinner("Checking the data against the model, then starting…"):
                scoring = start_scoring(ws, run_dir, chosen)
        except AtcError as e:
            st.error(str(e))
        else:
            st.session_state["train_toast"] = f"Started scoring run {scoring.name}"
            st.switch_page("pages/train.py")


def use_model(ws: Path, run_dir: Path) -> None:
    """Score new data with this run's models, or download them to run elsewhere; a scoring
    run names the run whose models it used."""
    model_run = model_run_of(run_dir)
    if model_run:
        st.caption(f"A scoring run: the data was scored with the model of run {model_run}.")
        return
    streams = exportable_streams(run_dir)
    if not streams:
        return
    with st.expander("Use this model: score new data, or download it to run elsewhere"):
        score_new_data(ws, run_dir, streams)
        export_button(run_dir)


def export_button(run_dir: Path) -> None:
    st.download_button(
        "Download the model export (zip)", lambda: export_zip(run_dir),
        file_name=f"{run_dir.name}-export.zip", mime="application/zip", key="results_export",
        on_click="ignore", help="Per stream: model.onnx, model.json and predict.py, which "
        "needs only numpy, pandas, pillow and onnxruntime (built on first download, ~1 min)")


VIEWS = {"timeseries": timeseries_section, "images": images_section}  # by Stream.kind

st.title("Results")
ws = workspace()
run_dir = pick_run(ws)
use_model(ws, run_dir)
streams = results.result_streams(run_dir)
if not streams:
    st.info("This run scored no stream: there are no results to show.")
for stream in streams:
    st.subheader(stream.title)
    view = VIEWS.get(stream.kind)
    if view is None:
        st.info(f"The {stream.title} results view is not built yet.")
        continue
    try:
        view(run_dir, stream)
    except results.ResultsError as e:
        st.error(str(e))
