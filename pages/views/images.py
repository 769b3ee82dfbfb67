"""The image stream's Results section: metrics beside the mean-image baseline, a threshold, the
score histogram and a gallery of heatmap overlays, and downloads."""
from pathlib import Path

import numpy as np
import streamlit as st

from core import results
from core.figures.results import score_histogram
from core.images import results as img
from core.run_files import RunFiles
from core.streams import Stream
from pages.views.shared import downloads, label_metrics, threshold_control

PER_ROW, GALLERY_SIZE = 4, 16  # gallery images per row, images shown


@st.cache_data(show_spinner="Reading the run's image results…", max_entries=4)
def load_images(run_dir: str, stream: str, stamp: int) -> img.ImageResults:
    return img.load_image_results(Path(run_dir), stream)


@st.cache_data(show_spinner="Drawing the overlays…", max_entries=32)
def gallery(run_dir: str, stream: str, stamp: int, threshold: float,
            show: str) -> list[img.GalleryItem]:
    return img.gallery(load_images(run_dir, stream, stamp), threshold, GALLERY_SIZE, show=show)


def image_counts(res: img.ImageResults, labels: np.ndarray | None, threshold: float) -> None:
    now = results.at_threshold(res.score, labels, threshold)
    cols = st.columns(5 if "f1" in now else 2)
    cols[0].metric("Flagged images", f"{now['flagged']:,} of {len(res.score):,}")
    cols[1].metric("Share flagged", f"{now['share']:.1%}")
    if "f1" in now:
        label_metrics(cols[2:], res, now)


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


def section(run_dir: Path, stream: Stream) -> None:
    stamp = RunFiles(run_dir).stream(stream.name).scoring.stat().st_mtime_ns
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
    # up to every image flagged: a test set is often half defects, so useful thresholds lie
    # below the median too
    threshold = threshold_control(res, key, st, "images", shares=(0.0, 1.0))
    labels = res.labels if res.labels is not None and len(np.unique(res.labels)) == 2 else None
    image_counts(res, labels, threshold)
    st.plotly_chart(score_histogram(res.score, labels, threshold, res.score_title, "images"),
                    key=f"{key}_histogram")
    st.caption(res.maps_caption)
    image_gallery(run_dir, res, stamp, threshold, key)
    downloads(res, key)
