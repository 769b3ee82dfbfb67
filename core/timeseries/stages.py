"""The time-series stream's stages: prepare (load, check, normalise), train PatchTST, score the
test data (or the training data when there is no test file), evaluate against labels.

Outputs in `<run>/patchtst/`: data_summary.json, best.pt / last.pt, scores.csv (the step score
after post-processing), channel_scores.npz (per-channel errors of the scored and the validation
rows, in units of `scale`), scoring.json (threshold), metrics.json (model and baselines after the
same post-processing and point-wise, when labelled)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core import metrics
from core.config import RunConfig, to_dict
from core.devices import explain_oom, resolve_device, seed_everything
from core.distributed import group_of
from core.errors import DataError
from core.fileio import atomic_path, write_json
from core.runner import Context, Skip, TrainReporter, stream_runtime
from core.timeseries.baselines import fit_pca, pca_scores, random_scores
from core.timeseries.channels import (constant_channels, constant_notes, out_of_range,
                                      out_of_range_note)
from core.timeseries.data import Series, TSDataset, load_ts_dataset, summarize
from core.timeseries.patchtst import PatchTST
from core.timeseries.scoring import (Fusion, channel_errors, channel_scale, detector_scores,
                                     paired_reconstruction_parts, score_batch_size,
                                     set_log_var_ceiling, usable_long_window)
from core.timeseries.windows import (Normalizer, epoch_order, n_batches_of, split_train_val,
                                     window_batches, window_starts)
from core.timeseries.files import SeriesFiles
from core.training import fit, load_checkpoint

STREAM = "patchtst"
POSTPROCESS_NOTE = ("the headline metrics and `baselines` are after a centred moving mean of "
                    "`postprocess.smooth` steps and, when `postprocess.smooth_long` is above 0, "
                    "one of that many steps fused beside it (each in its validation units, "
                    "counting at least `postprocess.fuse_floor` of them when that is set), "
                    "applied alike to every detector; `pointwise` has all of them without it")
PARTS_NOTE = ("the model's score fuses `parts` (the reconstruction error averaged over channels, "
              "its quantile over channels (`top_channels`) and a PCA fitted on the training "
              "data, those the config turns on); each part is also scored alone, with the same "
              "post-processing")
PA_F1_NOTE = ("pa_f1 is point-adjusted F1, only for comparison with published tables: point "
              "adjustment flatters every detector (random scores reach ~0.7 in published studies)")


@dataclass
class Prepared:
    """The stream's data after `prepare`, normalised with the train statistics."""
    train: np.ndarray  # (T_fit, C) first rows of train.csv, for fitting
    val: np.ndarray  # (T_val, C) last rows of train.csv: normal data for early stopping/threshold
    target: Series  # what is scored: test.csv, or train.csv itself when there is no test file
    target_values: np.ndarray  # (T, C) normalised target values
    normalizer: Normalizer


def load(cfg: RunConfig) -> tuple[Prepared, TSDataset]:
    """Read and check the stream's data, split train/validation, normalise."""
    ts, pipe = cfg.patchtst, cfg.pipeline
    ds = load_ts_dataset(pipe.ts_data, pipe.ts_test)
    train_raw, val_raw = split_train_val(ds.train.values, ts.data.val_fraction, ts.data.window,
                                         Path(ds.train.source).name)
    target = ds.test or ds.train
    if len(target.values) < ts.data.window:
        raise DataError(f"{Path(target.source).name}: {len(target.values)} rows are fewer than "
                        f"one window ({ts.data.window} rows); add rows or lower "
                        "patchtst.data.window")
    norm = Normalizer.fit(train_raw)
    return Prepared(norm(train_raw), norm(val_raw), target, norm(target.values), norm), ds


def describe(data: Prepared, ds: TSDataset) -> list[str]:
    """What the run will use, for the log and the dry run."""
    lines = [f"{len(ds.train.channels)} channels, {len(ds.train.values)} train rows "
             f"({len(data.val)} for validation), {len(data.target.values)} rows to score",
             *ds.warnings]
    if ds.test is None:
        lines.append("no test data: the training data itself will be scored")
    return lines


def summary(data: Prepared, ds: TSDataset) -> dict:
    return summarize(ds) | {"scored": "test" if ds.test else "train"}


def train(ctx: Context) -> None:
    """Train on the fitting part of train.csv (on a torchrun rank: its share of each epoch)."""
    cfg, data, group = ctx.cfg.patchtst, ctx.state[STREAM], group_of(ctx)
    rt = stream_runtime(ctx.cfg, STREAM)
    seed = ctx.cfg.pipeline.seed or 0
    seed_everything(seed)
    window, n_channels = cfg.data.window, data.train.shape[1]
    model = PatchTST(cfg.model, n_channels, window)
    # the series are small (T × C): on the GPU, windows are gathered there, with no copies
    fit_series = torch.from_numpy(data.train).to(rt.device)
    val_series = torch.from_numpy(data.val).to(rt.device)
    fit_starts = window_starts(len(data.train), window, cfg.data.stride)
    val_starts = window_starts(len(data.val), window, cfg.data.stride)
    t = cfg.train

    def train_batches(epoch: int):
        order = epoch_order(len(fit_starts), epoch, seed, group.rank, group.world)
        return window_batches(fit_series, fit_starts[order], window, t.batch_size,
                              t.max_steps_per_epoch)

    extra = {"config": to_dict(cfg), "channels": data.target.channels, "n_channels": n_channels,
             "normalizer": data.normalizer.to_dict()}
    ctx.log.info("    %d training windows, %d validation windows, %s parameters; %s",
                 len(fit_starts), len(val_starts), f"{sum(p.numel() for p in model.parameters()):,}",
                 rt.describe())
    out = ctx.stream_dir(STREAM)
    last = SeriesFiles(out).last
    if ctx.resume and last.is_file():
        require_visible_encoder(load_checkpoint(last)["extra"]["config"], last)
    reporter = TrainReporter(ctx, "train_patchtst", STREAM)
    with explain_oom("training PatchTST", f"lower patchtst.train.batch_size (now {t.batch_size})"):
        result = fit(
            model, train_batches=train_batches,
            n_batches=n_batches_of(len(fit_starts) // group.world, t.batch_size,
                                   t.max_steps_per_epoch),
            val_batches=lambda: window_batches(val_series, val_starts, window,
                                               score_batch_size(cfg.score, rt.device)),
            cfg=t, rt=rt, out_dir=out, extra=extra,
            reporter=reporter, resume=ctx.resume, group=group)
    reporter.finished(result)


def require_visible_encoder(saved: dict, path: Path) -> None:
    """DataError naming `path` when its checkpoint config (`extra["config"]`) predates the
    visible-only encoder: those weights have no decoder to load into."""
    if "decoder_dim" not in saved["model"]:
        raise DataError(f"{path}: trained by an earlier PatchTST, whose encoder took hidden "
                        "patches as zeros; this version's encoder sees visible patches only and "
                        "has a decoder, so it cannot use those weights: train the model again "
                        "(a new run on the same data)")


def load_model(stream_dir: Path, device: torch.device | str = "cpu") -> tuple[PatchTST, dict]:
    """The best checkpoint as a ready model, and its `extra` (config, channels, normaliser)."""
    from core.config import from_dict
    from core.timeseries.config import PatchTSTConfig
    checkpoint = SeriesFiles(stream_dir).checkpoint
    ckpt = load_checkpoint(checkpoint, device)
    saved = ckpt["extra"]["config"]
    require_visible_encoder(saved, checkpoint)
    # trained before the variance head existed: the weights have none, and the run scored without
    saved = {**saved, "model": {"variance_head": False, **saved["model"]}}
    cfg = from_dict(PatchTSTConfig, saved, "patchtst")
    model = PatchTST(cfg.model, ckpt["extra"]["n_channels"], cfg.data.window)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt["extra"]


def score(ctx: Context) -> None:
    cfg, data, out = ctx.cfg.patchtst, ctx.state[STREAM], SeriesFiles(ctx.stream_dir(STREAM))
    sc, device = cfg.score, resolve_device(ctx.cfg.pipeline.device)
    model, _ = load_model(out.dir, device)
    with explain_oom("scoring PatchTST", f"lower patchtst.score.batch_size (now "
                                         f"{score_batch_size(sc, device)})"):
        ceiling = set_log_var_ceiling(model, data.val, sc, device, ctx.should_stop)  # (C,)
        val_errors = channel_errors(model, data.val, sc, device, ctx.should_stop)  # (T_val, C)
        errors = channel_errors(model, data.target_values, sc, device, ctx.should_stop)  # (T, C)
    scale = channel_scale(val_errors, sc.normalize_channels, sc.scale_floor)  # (C,)
    val_errors, errors = val_errors / scale, errors / scale
    parts = paired_reconstruction_parts(val_errors, errors, sc)  # {name: ((T_val,), (T,))}
    if sc.fuse_pca:
        pca = fit_pca(data.train)
        parts["pca"] = (pca.scores(data.val), pca.scores(data.target_values))  # (T_val,), (T,)
        with atomic_path(out.pca) as tmp, open(tmp, "wb") as f:
            np.savez(f, mean=pca.mean, axes=pca.axes)
    long_window = usable_long_window(sc.smooth_long, len(data.val))
    if long_window != sc.smooth_long:
        ctx.log.info("    one time scale: the validation split's %d rows are too few for the "
                     "%d-step one (patchtst.score.smooth_long)", len(data.val), sc.smooth_long)
    fusion = Fusion.of_config(sc)
    val_scores, scores, units = detector_scores(parts, sc.smooth, long_window,
                                                fusion)  # (T_val,), (T,)
    threshold = metrics.threshold_from_normal(val_scores, sc.threshold_percentile)
    write_scores(out.scores, data.target, scores, threshold)
    with atomic_path(out.channels) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, errors=errors.astype(np.float32),
                            val_errors=val_errors.astype(np.float32), scale=scale,
                            channels=np.array(data.target.channels))
    channels = data.target.channels
    constant = constant_channels(data.normalizer.std, data.train, data.target_values, channels)
    far = out_of_range(data.target_values, channels, constant)
    write_json(out.scoring, {
        "threshold": threshold, "percentile": sc.threshold_percentile,
        "mode": sc.mode, "smooth": sc.smooth, "smooth_long": long_window,
        "variance_head": model.log_var_head is not None, "rows": len(scores),
        "log_var_ceiling": None if ceiling is None else dict(zip(channels, ceiling.tolist())),
        "parts": list(parts), "log_units": {name: list(u) for name, u in units.items()},
        "fusion": fusion.to_dict(), "flagged": int((scores > threshold).sum()),
        "channel_scale": dict(zip(data.target.channels, scale.tolist())),
        "channel_normal": dict(zip(channels, val_errors.mean(axis=0).tolist())),
        "constant_in_training": constant, "out_of_range": far,
        "scored_file": data.target.source,
        "val_score_quantiles": {str(q): float(np.quantile(val_scores, q / 100))
                                for q in (50, 90, 99, 100)}})
    ctx.state[f"{STREAM}.parts"] = parts
    ctx.state[f"{STREAM}.long_window"] = long_window
    ctx.state[f"{STREAM}.fusion"] = fusion
    ctx.log.info("    %d rows scored, %d above the threshold %.4g", len(scores),
                 int((scores > threshold).sum()), threshold)
    for line in constant_notes(constant) + out_of_range_note(far, len(channels)):
        ctx.log.warning("    %s", line)


def write_scores(path: Path, target: Series, scores: np.ndarray, threshold: float) -> None:
    """scores.csv at `path`, one row per scored row: timestamp (or index), score, is_anomaly
    [, label]."""
    first = ("timestamp", target.timestamps) if target.timestamps is not None \
        else ("index", np.arange(len(scores)))
    frame = pd.DataFrame({first[0]: first[1], "score": scores,
                          "is_anomaly": (scores > threshold).astype(np.int8)})
    if target.labels is not None:
        frame["label"] = target.labels
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def evaluate(ctx: Context) -> None:
    """metrics.json: the model and its baselines after the configured post-processing (the
    headline) and point-wise (`pointwise`), all thresholded the same way."""
    data, out, sc = ctx.state[STREAM], SeriesFiles(ctx.stream_dir(STREAM)), ctx.cfg.patchtst.score
    if data.target.labels is None:
        raise Skip("no labels for the scored data")
    labels = data.target.labels
    parts = ctx.state[f"{STREAM}.parts"]
    pca = parts.get("pca") or tuple(pca_scores(data.train, [data.val, data.target_values]))
    rnd_val, rnd_test = random_scores([len(data.val), len(labels)], ctx.cfg.pipeline.seed or 0)
    baselines = {"pca": pca, "random": (rnd_val, rnd_test)}  # the fused PCA is the baseline's fit

    def scored(*windows: int) -> dict:
        """Each detector's metrics after the same post-processing (`detector_scores` over
        `windows`): the model, its parts when it fuses several, the baselines."""
        detectors = {"model": parts}
        if len(parts) > 1:  # each of the model's own parts alone too
            detectors |= {name: {name: pair} for name, pair in parts.items()
                          if name not in baselines}
        detectors |= {name: {name: pair} for name, pair in baselines.items()}
        found = {}
        for name, detector in detectors.items():
            val, test, _ = detector_scores(detector, *windows, fusion=fusion)
            found[name] = metrics.evaluate(test, labels, metrics.threshold_from_normal(
                val, sc.threshold_percentile))
        return found

    long_window, fusion = ctx.state[f"{STREAM}.long_window"], ctx.state[f"{STREAM}.fusion"]
    post, point = scored(sc.smooth, long_window), scored(1)
    result = post.pop("model") | {
        "parts": {name: post.pop(name) for name in list(post) if name not in baselines},
        "baselines": post,
        "postprocess": {"smooth": sc.smooth, "smooth_long": long_window,
                        "fuse_floor": fusion.floor},
        "pointwise": point,
        "notes": {"pa_f1": PA_F1_NOTE, "postprocess": POSTPROCESS_NOTE}}
    if not result["parts"]:
        del result["parts"]
    else:
        result["notes"]["parts"] = PARTS_NOTE
    write_json(out.metrics, result)
    ctx.log.info("    auprc %s (pca %s, random %s), auroc %s, best_f1 %s; point-wise auprc %s "
                 "(pca %s)", *(_fmt(v) for v in (
                     result["auprc"], post["pca"]["auprc"], post["random"]["auprc"],
                     result["auroc"], result["best_f1"], point["model"]["auprc"],
                     point["pca"]["auprc"])))


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
