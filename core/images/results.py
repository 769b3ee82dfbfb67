"""What the Results page shows for the image stream (Swin MAE), computed from a run folder only.

- `load_image_results`: the scores, anomaly maps, threshold and metrics of a scored run, and
  where its images live (run.yaml's `pipeline.img_data`).
- `image_metrics_table`, `image_baseline_verdict`: the model beside the mean-image baseline.
- The threshold slider and its counts are every stream's (`core.results`).
- `gallery`: the images to show, each with a heatmap overlay made on the fly from the image,
  its stored map and, when the dataset has one, its ground-truth mask.

Pure functions of the run folder (and the dataset it names), so a page can cache them by path.
No torch and no streamlit here: the Results page imports this at load."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core.config import run_settings
from core.errors import DataError
from core.fileio import read_json
from core.images.files import ImageFiles
from core.images.data import IMAGE_SUFFIXES, dataset_root, load_image, load_mask
from core.images.overlays import outlined, overlay, side_by_side
from core.results import (ResultsError, load_arrays,
                          metrics_frame)

STREAM = "swinmae"  # core.images.stages.STREAM (that module imports torch)
IMAGE_METRIC_LABELS = {"image_auroc": "image AUROC", "image_auprc": "image AUPRC",
                       "f1": "F1 at threshold", "pixel_auroc": "pixel AUROC"}
SHOW = {"all": "all images", "defects": "defect images", "normal": "normal images"}
ORDERS = ("score", "file")  # highest score first; by file name
VMAX_QUANTILE = 0.999  # heat saturates here, as in the overlays the score stage saves


@dataclass
class ImageResults:
    """Everything the Results page shows for the image stream of one run."""
    run_id: str
    stream: str
    stream_dir: Path
    scores: pd.DataFrame  # scores.csv: file, defect_type, score, is_anomaly, label; N rows
    maps: np.ndarray  # (N, S, S) float16 anomaly maps, rows in the order of `scores`
    threshold: float  # the run's threshold (score > threshold is flagged)
    percentile: float | None  # the percentile of held-out normal scores it sits at
    metrics: dict | None  # metrics.json (with baselines); None when the images were unlabelled
    data_root: Path | None  # the folder `scores.file` is relative to; None when unreadable
    data_note: str | None  # why `data_root` is None, to show the user
    image_size: int  # S
    resize: str  # "resize" | "pad", as the run read its images
    channels: int  # 1 | 3, as the run read its images
    vmax: float  # map value at which the heat colours saturate (the same for every image)
    score_title: str  # the score's axis title, with its unit
    method: str  # what made the maps: "reconstruction", "head" or "knn" (scoring.json's)
    coarse: dict | None = None  # the maps' coarse scale {"sigma": pixels, "weight": w,
    # "neighbours": k, "two_sided": bool} (keys absent from older runs); None: the fine scale only
    head_knn: bool = False  # the head's maps add its features' distance to normal ones

    @property
    def maps_caption(self) -> str:
        """One line above the gallery: what made the maps, and at which scales."""
        what = METHOD_CAPTIONS.get(self.method, f"Maps made by method {self.method}.")
        if self.head_knn:
            what += (" Added alike: how far the heads' deepest features at each place lie from "
                     "the nearest normal place's (score.head_knn).")
        if not self.coarse:
            return what
        near = self.coarse.get("neighbours")  # absent before coarse_neighbours
        against = f"its {near} nearest normal images'" if near else "normal images'"
        # two-sided (|z|) before the coarse scale counted only a rise
        where = "against" if self.coarse.get("two_sided", True) else "where it rises above"
        return (f"{what} Shown at two scales: {self.coarse['weight']:g} × the heads' map "
                f"smoothed at {self.coarse['sigma']:g} px, {where} {against} smoothed "
                "alike, is added, so large faint areas show; the image score reads the fine map "
                "only (score.coarse_sigma).")

    @property
    def score(self) -> np.ndarray:  # (N,)
        return self.scores["score"].to_numpy(dtype=float)

    @property
    def labels(self) -> np.ndarray | None:  # (N,) 0/1; None when there is no label column
        return self.scores["label"].to_numpy(dtype=int) if "label" in self.scores else None

    @property
    def checkpoint(self) -> Path | None:
        path = ImageFiles(self.stream_dir).checkpoint
        return path if path.is_file() else None


METHOD_CAPTIONS = {
    "reconstruction": "Maps: Swin MAE's reconstruction error (score.method: reconstruction).",
    "head": "Maps: Swin MAE's reconstruction error plus the mean segmentation of the defect "
            "heads (head.ensemble) trained on synthetic defects, each in units of normal "
            "images' maps (score.method: head).",
    "knn": "Maps: each patch's distance to the nearest normal patch in Swin MAE's encoder "
           "features (score.method: knn).",
}


def load_image_results(run_dir: Path, stream: str = STREAM) -> ImageResults:
    """Read the scored image stream of a run (ResultsError when it was never scored, or when
    maps.npz and scores.csv disagree). The dataset need not exist any more: then `data_root` is
    None, `data_note` says why, and the gallery falls back to the overlays the run saved."""
    run_dir = Path(run_dir)
    out = ImageFiles(run_dir / stream)
    scoring = read_json(out.scoring)
    if not scoring or not out.scores.is_file() or not out.maps.is_file():
        raise ResultsError(f"run {run_dir.name}: expected {stream}/{ImageFiles.scores}, "
                           f"{stream}/{ImageFiles.maps} and {stream}/{ImageFiles.scoring}, found "
                           f"some missing; was the run scored?")
    scores = pd.read_csv(out.scores)
    arrays = load_arrays(out.maps, ("maps", "files"))
    maps, files = arrays["maps"], [str(f) for f in arrays["files"]]
    if files != scores["file"].astype(str).tolist():
        raise ResultsError(f"run {run_dir.name}: {ImageFiles.maps} lists {len(files)} images "
                           f"and {ImageFiles.scores} {len(scores)}; expected the same files in "
                           "the same order")
    cfg = run_settings(run_dir)
    section = cfg.get(stream) or {}
    summary = read_json(out.summary) or {}
    root, note = _data_root((cfg.get("pipeline") or {}).get("img_data"), files)
    return ImageResults(
        run_dir.name, stream, out.dir, scores, maps, float(scoring["threshold"]),
        scoring.get("percentile"), read_json(out.metrics), root, note,
        int(scoring.get("image_size") or maps.shape[-1]),
        (section.get("data") or {}).get("resize") or "resize",
        int(summary.get("channels_used") or summary.get("channels") or 3),
        _vmax(maps),
        _score_title(scoring, section.get("score") or {}),
        scoring.get("method", "reconstruction"),  # runs from before the head: reconstruction
        scoring.get("coarse"), bool(scoring.get("head_knn")))


def _vmax(maps: np.ndarray) -> float:
    """One colour scale for every image: a quantile of all map values (1 when all are 0)."""
    if not maps.size:
        return 1.0
    return float(np.quantile(maps.astype(np.float32), VMAX_QUANTILE)) or 1.0


def _data_root(img_data: str | None, files: list[str]) -> tuple[Path | None, str | None]:
    """(folder the scored file names are relative to, None) or (None, why there is none)."""
    if not img_data:
        return None, "run.yaml names no image dataset: showing the overlays the run saved"
    path = Path(img_data)
    if not path.is_dir():
        what = "is a zip archive (extracted only while the run ran)" if path.is_file() \
            else "is gone"
        return None, f"the image dataset {path} {what}: showing the overlays the run saved"
    root = dataset_root(path)  # a folder wrapping the dataset, as the run read it
    if files and not (root / files[0]).is_file():
        return None, (f"the image dataset {path} changed since it was scored ({files[0]} is "
                      "gone): showing the overlays the run saved")
    return root, None


def _score_title(scoring: dict, score_cfg: dict) -> str:
    """The image score's meaning and unit, from how the run scored."""
    how = scoring.get("image_score") or score_cfg.get("image_score")
    topk = score_cfg.get("topk")
    what = {"max": "map maximum",
            "topk_mean": f"mean of the map's top {topk:.0%}" if topk else "mean of the map's top"
            }.get(how, "image score")
    method = scoring.get("method")
    error = "squared error + gradient term" if score_cfg.get("error") == "l2_grad" \
        else "squared error"
    unit = "pixels in [0, 1]"
    if method == "head":
        knn = " and their features' distance to normal ones" if scoring.get("head_knn") else ""
        cap = scoring.get("map_cap")
        added = f"their z-scores, each capped at {cap:g}, added" if cap else "their z-scores added"
        error = f"{error} and the defect heads' mean defect probability{knn}, {added}"
    elif method == "knn":
        error, unit = "distance to the nearest normal patch's features", "feature units"
    if scoring.get("normalized_by"):
        near = scoring.get("neighbours")
        value = {"head": "maps", "knn": "distance"}.get(method, "error")
        unit = (f"in units of normal images' {value} at each pixel" if not near else
                f"in units of the {value} at each pixel of the {near} normal images most like "
                "it" + (" in shape" if scoring.get("match_shape") else "")
                + (" and in what its defect heads see" if scoring.get("match_head") else "")) \
            + (", above or below it" if scoring.get("two_sided") else "")
    return f"anomaly score ({what}; {error}, {unit})"


# ---------------------------------------------------------------- metrics beside the baseline

def image_metrics_table(m: dict) -> pd.DataFrame:
    """Rows model, mean_image (the baselines present); columns image AUROC, image AUPRC, F1 at
    threshold, pixel AUROC, rounded to 3 decimals. None (undefined) shows as NaN."""
    return metrics_frame({"model": m, **(m.get("baselines") or {})}, IMAGE_METRIC_LABELS)


def image_baseline_verdict(m: dict) -> str:
    """One sentence: does the model beat the mean-image baseline on image AUROC?"""
    model = m.get("image_auroc")
    base = ((m.get("baselines") or {}).get("mean_image") or {}).get("image_auroc")
    if model is None:
        return "Image AUROC is undefined: the labels hold one class only."
    if base is None:
        return (f"The model's image AUROC is {model:.3f}; there is no mean-image baseline to "
                "compare with.")
    verb = "beats" if model > base else "does not beat"
    return (f"The model {verb} the mean-image baseline on image AUROC: {model:.3f} against "
            f"{base:.3f} ({model - base:+.3f}).")


# ---------------------------------------------------------------- the gallery

@dataclass
class GalleryItem:
    file: str  # relative to the dataset root, e.g. "test/scratch/003.png"
    defect_type: str  # "good" for normal images
    label: int | None  # 0 normal, 1 defect; None when unknown
    score: float
    flagged: bool  # score > the threshold asked for
    overlay: np.ndarray | None  # (S, S, 3) uint8 heatmap over the image; None when unavailable
    mask_known: bool  # the overlay outlines the ground-truth mask (green)
    # (S, S, 3) uint8 the image itself, outlining the map's pixels above the threshold (blue) and
    # the mask (green); None when the dataset's image cannot be read
    image: np.ndarray | None = None

    @property
    def tile(self) -> np.ndarray | None:
        """What the gallery draws: the image beside its overlay, or whichever one exists."""
        if self.image is None or self.overlay is None:
            return self.overlay if self.image is None else self.image
        return side_by_side(self.image, self.overlay)

    @property
    def caption(self) -> str:
        return (f"{self.file} · {self.defect_type} · score {self.score:.4g} · "
                f"{'flagged' if self.flagged else 'not flagged'}")


def gallery(res: ImageResults, threshold: float, k: int, order: str = "score",
            show: str = "all") -> list[GalleryItem]:
    """The k images to show: `show` one of SHOW (all, defects = label 1, normal = label 0),
    ordered by `order` (ORDERS: "score" highest first, ties by file; "file" by name)."""
    if order not in ORDERS:
        raise ValueError(f"order: expected one of {ORDERS}, found {order!r}")
    if show not in SHOW:
        raise ValueError(f"show: expected one of {tuple(SHOW)}, found {show!r}")
    frame = res.scores.assign(row=np.arange(len(res.scores)))
    if show != "all" and "label" in frame:
        frame = frame[frame["label"] == (1 if show == "defects" else 0)]
    by, ascending = (["score", "file"], [False, True]) if order == "score" else (["file"], True)
    frame = frame.sort_values(by, ascending=ascending, kind="stable").head(k)
    items = []
    for r in frame.itertuples(index=False):
        label = int(r.label) if "label" in frame and pd.notna(r.label) else None
        shown, known, image = _overlay_of(res, r.row, str(r.file), str(r.defect_type),
                                          threshold)
        items.append(GalleryItem(str(r.file), str(r.defect_type), label, float(r.score),
                                 bool(r.score > threshold), shown, known, image))
    return items


def _overlay_of(res: ImageResults, row: int, file: str, defect_type: str, threshold: float
                ) -> tuple[np.ndarray | None, bool, np.ndarray | None]:
    """(overlay (S, S, 3) uint8, mask shown, outlined image (S, S, 3) uint8): made from the
    image when it can be read, else the overlay the score stage saved for it (only the top
    images have one) and no image, else (None, False, None). The flagged region is the map's
    pixels above `threshold`: the image score is the map's maximum or top-k mean, in the same
    units, so an image is flagged when some of its pixels are."""
    path = res.data_root / file if res.data_root is not None else None
    if path is not None and path.is_file():
        try:
            image = load_image(path, res.image_size, res.channels, res.resize)  # (C, S, S)
            mask_path = find_mask(res.data_root, file, defect_type)
            mask = load_mask(mask_path, res.image_size, res.resize) if mask_path else None
        except DataError:
            pass  # the file changed and no longer reads: fall back to the saved overlay
        else:
            amap = res.maps[row].astype(np.float32)  # (S, S)
            return (overlay(image, amap, res.vmax, mask), mask is not None,
                    outlined(image, amap > threshold, mask))
    saved = saved_overlay(res.stream_dir, file)
    if saved is None:
        return None, False, None
    with Image.open(saved) as im:  # whether it outlines a mask is unknown
        return np.asarray(im.convert("RGB")), False, None


def find_mask(root: Path, file: str, defect_type: str) -> Path | None:
    """The ground-truth mask of a test image, as the dataset loader pairs them:
    ground_truth/<defect_type>/<stem>_mask.<ext> or <stem>.<ext>; None when there is none."""
    folder = Path(root) / "ground_truth" / defect_type
    if defect_type == "good" or not folder.is_dir():
        return None
    stem = Path(file).stem
    masks = {p.stem: p for p in sorted(folder.iterdir())
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    return masks.get(f"{stem}_mask") or masks.get(stem)


def saved_overlay(stream_dir: Path, file: str) -> Path | None:
    """The overlay the score stage saved for `file` (`overlays/NNN_<folder>_<stem>.png`)."""
    folder = ImageFiles(stream_dir).overlays
    if not folder.is_dir():
        return None
    tail = f"{Path(file).parent.name}_{Path(file).stem}.png"
    for path in sorted(folder.iterdir()):
        rank, _, rest = path.name.partition("_")
        if rank.isdigit() and rest == tail:
            return path
    return None
