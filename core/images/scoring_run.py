"""The image stream of a scoring run: the model of a finished run (`pipeline.from_run`) scores
new images (`pipeline.img_data`: their test/ images, else all) with that run's normal-image
statistics and threshold.

Outputs in `<run>/swinmae/`, as a training run's: data_summary.json, scores.csv, maps.npz,
overlays/, scoring.json, metrics.json (when labelled defect images are scored; the model only:
the mean-image baseline is fitted on the training images, see the model run)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import RunConfig
from core.devices import explain_oom, resolve_device
from core.fileio import write_json
from core.images.files import ImageFiles
from core.images.data import ImageItem, load_image_dataset, summarize_images
from core.images.stages import image_metrics, measured_as, score_items, scored_size, \
    write_maps, write_overlays, write_scores
from core.images.trained import STREAM, TrainedImages, load_trained
from core.runner import Context, Skip

NO_BASELINE = ("a scoring run scores the model only: the mean-image baseline is fitted on the "
               "training images, see the model run")


@dataclass
class Prepared:
    trained: TrainedImages
    target: list[ImageItem]  # the images to score
    channels: int  # as the model takes them (the data loader reads this)
    root: Path  # the dataset folder, for names relative to it


def load(cfg: RunConfig) -> tuple[Prepared, dict, list[str]]:
    """The model run's model and the new images, listed and checked against it before anything
    is computed: (prepared, data_summary.json, lines for the log)."""
    trained = load_trained(Path(cfg.pipeline.from_run))
    data = trained.cfg.data
    ds = load_image_dataset(cfg.pipeline.img_data, on_corrupt=data.on_corrupt,
                            max_pixels=data.max_pixels)
    target, root = ds.test or ds.train, Path(ds.root or cfg.pipeline.img_data)
    trained.check(target, root)
    summary = summarize_images(ds) | {"scored": "test" if ds.test else "train",
                                      "channels_used": trained.channels}
    lines = [f"{len(target)} images to score with the model of run {trained.run_dir.name}",
             *ds.warnings]
    return Prepared(trained, target, trained.channels, root), summary, lines


def score(ctx: Context) -> None:
    data, out = ctx.state[STREAM], ImageFiles(ctx.stream_dir(STREAM))
    trained = data.trained
    detector = trained.detector.to(resolve_device(ctx.cfg.pipeline.device))
    with explain_oom("scoring images", "lower swinmae.score.batch_size in the model run"):
        scored = score_items(ctx, detector, None, data.target, trained.normal)
    threshold = trained.threshold
    names = [item.path.relative_to(data.root).as_posix() for item in data.target]
    write_scores(out.scores, data.target, names, scored.scores, threshold)
    write_maps(out.maps, scored.maps, names)
    write_overlays(out.overlays, scored, names, trained.cfg.score.overlays)
    flagged = int((scored.scores > threshold).sum())
    write_json(out.scoring, measured_as(trained.detector, trained.normal) | {
        "threshold": threshold, "percentile": trained.percentile,
        "rows": len(names), "normalized_by": trained.normalized_by,
        "coarse": scored.coarse, "flagged": flagged, "image_size": scored_size(trained.cfg),
        "from_run": str(trained.run_dir)})
    ctx.state[f"{STREAM}.scored"] = scored
    ctx.log.info("    %d images scored, %d above the threshold %.4g of run %s", len(names),
                 flagged, threshold, trained.run_dir.name)


def evaluate(ctx: Context) -> None:
    data, out = ctx.state[STREAM], ImageFiles(ctx.stream_dir(STREAM))
    if any(it.label is None for it in data.target) or not any(it.label for it in data.target):
        raise Skip("no labelled defect images among the scored images")
    scored = ctx.state[f"{STREAM}.scored"]
    labels = np.array([it.label for it in data.target])
    result = image_metrics(scored.scores, scored.maps, labels, scored, data.trained.threshold)
    write_json(out.metrics, result | {"baselines": {},
                                      "notes": {"baselines": NO_BASELINE}})
    ctx.log.info("    image AUROC %s, pixel AUROC %s", *(
        "n/a" if v is None else f"{v:.3f}" for v in (result["image_auroc"],
                                                     result["pixel_auroc"])))
