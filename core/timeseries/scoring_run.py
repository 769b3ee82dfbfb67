"""The time-series stream of a scoring run: the model of a finished run (`pipeline.from_run`)
scores new data (`pipeline.ts_data`) with that run's normaliser, channel scales and threshold.

Outputs in `<run>/patchtst/`, as a training run's: data_summary.json, scores.csv,
channel_scores.npz, scoring.json, metrics.json (when the data is labelled; the model only: the
baselines need the training data, see the model run)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import metrics
from core.config import RunConfig
from core.devices import explain_oom, resolve_device
from core.errors import DataError
from core.fileio import atomic_path, read_json, write_json
from core.runner import Context, Skip
from core.timeseries.channels import (constant_channels, constant_notes, out_of_range,
                                      out_of_range_note)
from core.timeseries.files import SeriesFiles
from core.timeseries.data import Series, check_channels, load_scored_series, scored_summary
from core.timeseries.stages import write_scores
from core.timeseries.trained import STREAM, TrainedSeries, load_trained

NO_BASELINES = ("a scoring run scores the model only: the PCA and random baselines are fitted "
                "on the training data, see the model run")


@dataclass
class Prepared:
    trained: TrainedSeries
    target: Series  # the rows to score, raw


def load(cfg: RunConfig) -> tuple[Prepared, dict, list[str]]:
    """The model run's model and the new data, checked against it before anything is
    computed: (prepared, data_summary.json, lines for the log)."""
    trained = load_trained(Path(cfg.pipeline.from_run))
    target, notes = load_scored_series(cfg.pipeline.ts_data)
    check_channels(target, trained.channels,
                   f"the data run {trained.run_dir.name} trained on")
    if len(target.values) < trained.window:
        raise DataError(f"{Path(target.source).name}: {len(target.values)} rows are fewer than "
                        f"the model's window of {trained.window} rows; expected at least "
                        f"{trained.window}")
    lines = [f"{len(target.values)} rows of {len(target.channels)} channels to score with the "
             f"model of run {trained.run_dir.name}", *notes]
    return Prepared(trained, target), scored_summary(target, notes), lines


def score(ctx: Context) -> None:
    data, out = ctx.state[STREAM], SeriesFiles(ctx.stream_dir(STREAM))
    trained, device = data.trained, resolve_device(ctx.cfg.pipeline.device)
    normalised = trained.normalizer(data.target.values)  # (T, C), training statistics
    with explain_oom("scoring PatchTST", "lower patchtst.score.batch_size in the model run"):
        errors = trained.errors(normalised, device, ctx.should_stop)  # (T, C)
    parts = trained.parts(normalised, errors)  # each (T,) point-wise
    scores = trained.score(parts)  # (T,) post-processed
    threshold = trained.threshold
    write_scores(out.scores, data.target, scores, threshold)
    with atomic_path(out.channels) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, errors=errors.astype(np.float32), scale=trained.scale,
                            channels=np.array(trained.channels))
    # a constant training channel normalises to ~0: its training range is taken as 0 here
    constant = constant_channels(trained.normalizer.std, np.zeros((1, len(trained.channels))),
                                 normalised, trained.channels)
    far = out_of_range(normalised, trained.channels, constant)
    source = read_json(SeriesFiles(trained.run_dir / STREAM).scoring, {})
    write_json(out.scoring, {
        "threshold": threshold, "percentile": trained.percentile,
        "mode": trained.cfg.score.mode, "smooth": trained.cfg.score.smooth,
        "smooth_long": trained.long_window,
        "variance_head": trained.model.log_var_head is not None,
        "log_var_ceiling": source.get("log_var_ceiling"),
        "parts": list(parts), "log_units": source.get("log_units", {}),
        "fusion": trained.fusion.to_dict(),
        "rows": len(scores), "flagged": int((scores > threshold).sum()),
        "channel_scale": dict(zip(trained.channels, trained.scale.tolist())),
        "channel_normal": trained.normal,
        "constant_in_training": constant, "out_of_range": far,
        "scored_file": data.target.source, "from_run": str(trained.run_dir),
        "val_score_quantiles": source.get("val_score_quantiles")})
    ctx.state[f"{STREAM}.scores"] = scores
    ctx.log.info("    %d rows scored, %d above the threshold %.4g of run %s", len(scores),
                 int((scores > threshold).sum()), threshold, trained.run_dir.name)
    for line in constant_notes(constant) + out_of_range_note(far, len(trained.channels)):
        ctx.log.warning("    %s", line)


def evaluate(ctx: Context) -> None:
    """metrics.json of the model's scores against the data's labels, at the model run's
    threshold, after its post-processing."""
    data, out = ctx.state[STREAM], SeriesFiles(ctx.stream_dir(STREAM))
    if data.target.labels is None:
        raise Skip("no labels for the scored data")
    scores, threshold = ctx.state[f"{STREAM}.scores"], data.trained.threshold
    result = metrics.evaluate(scores, data.target.labels, threshold) | {
        "baselines": {}, "postprocess": {"smooth": data.trained.cfg.score.smooth,
                                         "smooth_long": data.trained.long_window,
                                         "fuse_floor": data.trained.fusion.floor},
        "notes": {"baselines": NO_BASELINES}}
    write_json(out.metrics, result)
    ctx.log.info("    auprc %s, auroc %s, f1 at the threshold %s",
                 *(("n/a" if v is None else f"{v:.3f}")
                   for v in (result["auprc"], result["auroc"], result["f1"])))
