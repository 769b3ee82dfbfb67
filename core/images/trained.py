"""A finished run's image model as scoring needs it: the checkpoint's training config and
channels, the per-pixel statistics of normal training images' maps, the threshold, and what the
training images looked like (sizes, modes), so that new images that do not fit are refused. A
scoring run and an export both read it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.config import from_dict
from core.errors import DataError
from core.fileio import read_json
from core.images.config import SwinMAEConfig
from core.images.data import GRAY_MODES, ImageItem
from core.images.scoring import AnomalyMaps, NormalReference
from core.images.files import ImageFiles
from core.images.knn import MemoryBank
from core.images.stages import load_head, load_model, load_normal_reference

STREAM = "swinmae"


@dataclass
class TrainedImages:
    run_dir: Path
    cfg: SwinMAEConfig  # the training config: image size, resize, score settings (its
    # score.method is the one the run scored with)
    detector: AnomalyMaps  # the model (and defect head) as scoring calls them
    channels: int  # 1 (grayscale) or 3 (RGB), as the model takes them
    normal: NormalReference | None  # None when the run scored raw errors (score.normalize off)
    normalized_by: int | None  # how many normal training images gave `normal`
    threshold: float
    percentile: float
    width: tuple[int, int]  # [min, max] width of the training images, in pixels
    height: tuple[int, int]
    gray: set[bool]  # whether the training images were grayscale (a mix: both)

    def check(self, items: list[ImageItem], root: Path) -> None:
        """DataError naming the first image whose size lies outside the training images' or
        whose mode (grayscale or colour) none of them had."""
        for item in items:
            name = item.path.relative_to(root).as_posix()
            (w, h), trained = item.size, f"the images of run {self.run_dir.name}"
            if not (self.width[0] <= w <= self.width[1] and self.height[0] <= h <= self.height[1]):
                raise DataError(f"{name} is {w}×{h} (width×height); expected {_span(self.width)}"
                                f"×{_span(self.height)} like {trained}")
            if (item.mode in GRAY_MODES) not in self.gray:
                found = "grayscale" if item.mode in GRAY_MODES else "colour"
                raise DataError(f"{name} is {found} (mode {item.mode}); expected "
                                f"{'colour' if found == 'grayscale' else 'grayscale'} images "
                                f"like {trained}")


def _span(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}–{r[1]}"


def load_trained(run_dir: Path) -> TrainedImages:
    """The image model of the finished run `run_dir`, on the CPU; DataError naming the file
    when the run trained no image model or predates what scoring new images needs."""
    run_dir = Path(run_dir)
    out = ImageFiles(run_dir / STREAM)
    scoring, summary = read_json(out.scoring), read_json(out.summary)
    if not out.checkpoint.is_file() or not isinstance(scoring, dict) \
            or not isinstance(summary, dict):
        raise DataError(f"run {run_dir.name}: expected a trained and scored image model "
                        f"({STREAM}/{ImageFiles.checkpoint}, {ImageFiles.scoring}, "
                        f"{ImageFiles.summary}), found none")
    model, extra = load_model(out.dir)
    cfg = from_dict(SwinMAEConfig, extra["config"], STREAM)
    # runs scored before the defect head existed made their maps from the reconstruction error;
    # runs scored before head matching found neighbours by their thumbnails alone
    method = scoring.get("method", "reconstruction")
    cfg = cfg.model_copy(update={"score": cfg.score.model_copy(update={
        "method": method, "match_head": float(scoring.get("match_head") or 0.0)})})
    head = load_head(out.dir) if method == "head" else None
    bank = MemoryBank.load(out.knn_bank) \
        if method == "knn" or (head is not None and scoring.get("head_knn")) else None
    normal = None
    if scoring.get("normalized_by"):
        if not out.normal_stats.is_file():
            raise DataError(f"run {run_dir.name}: {STREAM}/{ImageFiles.normal_stats} is missing "
                            "(the run predates it); expected the normal images' map statistics, "
                            "which runs save since scoring runs exist: train again to use this "
                            "model")
        # runs from before two-sided maps set their threshold on signed ones, runs from
        # before the cap on uncapped sums, runs from before shape matching on neighbours
        # matched by the thumbnails themselves
        normal = load_normal_reference(out.normal_stats, bool(scoring.get("two_sided", False)),
                                       float(scoring.get("map_cap") or 0.0),
                                       bool(scoring.get("match_shape", False)),
                                       cfg.score.match_head)
    if head is not None and (normal is None or normal.maps_per_image != 2 + (bank is not None)):
        raise DataError(f"run {run_dir.name}: its defect head made the maps alone (before they "
                        "were added to the reconstruction error's); train again to use this "
                        "model")
    gray = {mode in GRAY_MODES for mode in summary.get("modes") or {}}
    return TrainedImages(run_dir, cfg, AnomalyMaps(model, cfg.score, head, bank),
                         int(extra["channels"]), normal,
                         scoring.get("normalized_by"),
                         float(scoring["threshold"]), float(scoring["percentile"]),
                         tuple(summary["width"]), tuple(summary["height"]), gray)
