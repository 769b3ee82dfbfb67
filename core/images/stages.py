"""The image stream's stages: prepare (list and check images), train Swin MAE, train the defect
head (`score.method: head`; skipped otherwise), score (anomaly maps, image scores, threshold,
overlays), evaluate (image and pixel metrics, with a baseline).

Outputs in `<run>/swinmae/`: data_summary.json, best.pt / last.pt, head/ (the defect head's
best.pt / last.pt / training.json), scores.csv, maps.npz, overlays/*.png, scoring.json,
metrics.json (when the scored images are labelled)."""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DistributedSampler
from sklearn.metrics import roc_auc_score

from core import metrics
from core.config import RunConfig, to_dict
from core.devices import explain_oom, resolve_device, seed_everything
from core.distributed import group_of
from core.errors import DataError, StopRequested
from core.fileio import atomic_path, read_json, write_json
from core.images.baselines import MeanImageBaseline
from core.images.config import SwinMAEConfig
from core.images.files import ImageFiles
from core.images.head import DefectHead, HeadTraining, head_outputs
from core.images.knn import MemoryBank, patch_features
from core.images.data import ImageDataset, ImageFolderDataset, ImageItem, load_image_dataset, \
    summarize_images
from core.images.overlays import save_overlay
from core.images.scoring import (AnomalyMaps, CoarseScale, NearestNormal, NormalReference,
                                 PixelErrorStats, image_scores, normal_reference,
                                 thumbnail_part)
from core.images.swinmae import SwinMAE
from core.images.tiling import tiled
from core.runner import Context, Skip, TrainReporter, stream_runtime
from core.training import fit, load_checkpoint

STREAM = "swinmae"


@dataclass
class Prepared:
    fit: list[ImageItem]  # normal images the model trains on
    val: list[ImageItem]  # held-out normal images: early stopping and the threshold
    target: list[ImageItem]  # what is scored: the test images, or every training image
    channels: int
    root: Path  # the dataset folder, for names relative to it


def load(cfg: RunConfig) -> tuple[Prepared, ImageDataset]:
    data = cfg.swinmae.data
    ds = load_image_dataset(cfg.pipeline.img_data, on_corrupt=data.on_corrupt,
                            max_pixels=data.max_pixels)
    if len(ds.train) < 4:
        raise DataError(f"{cfg.pipeline.img_data}: {len(ds.train)} usable training images; "
                        "expected at least 4 (some are held out to set the threshold)")
    shuffled = random.Random(cfg.pipeline.seed or 0).sample(ds.train, len(ds.train))
    n_val = max(2, round(len(shuffled) * data.val_fraction))
    channels = data.channels or summarize_images(ds)["channels"]
    root = Path(ds.root or cfg.pipeline.img_data)
    return Prepared(shuffled[n_val:], shuffled[:n_val], ds.test or ds.train, channels, root), ds


def describe(data: Prepared, ds: ImageDataset) -> list[str]:
    """What the run will use, for the log and the dry run."""
    lines = [f"{len(ds.train)} training images ({len(data.val)} held out), {len(ds.test)} test "
             f"images, {'grayscale' if data.channels == 1 else 'RGB'}", *ds.warnings]
    if not ds.test:
        lines.append("no test images: the training images themselves will be scored")
    return lines


def summary(data: Prepared, ds: ImageDataset) -> dict:
    return summarize_images(ds) | {"scored": "test" if ds.test else "train",
                                   "channels_used": data.channels}


def _loader(ctx: Context, items: list[ImageItem], train: bool, batch_size: int,
            with_masks: bool = False, crop: bool = False) -> torch.utils.data.DataLoader:
    """Batches of `items` at `scored_size`; for training shuffled each epoch
    (`sampler.set_epoch`) and, on a torchrun rank, this rank's equal share of them. `crop`:
    random image_size crops instead (what the models train and validate on)."""
    cfg, data, group = ctx.cfg.swinmae, ctx.state[STREAM], group_of(ctx)
    dataset = ImageFolderDataset(items, scored_size(cfg), data.channels, cfg.data.resize,
                                 with_masks=with_masks, hflip=train and cfg.data.hflip,
                                 crop=cfg.model.image_size if crop else None)
    sampler = DistributedSampler(dataset, num_replicas=group.world, rank=group.rank,
                                 seed=ctx.cfg.pipeline.seed or 0, drop_last=group.world > 1) \
        if train else None
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler,
        drop_last=train and len(items) // group.world > batch_size,
        num_workers=cfg.data.num_workers,
        pin_memory=resolve_device(ctx.cfg.pipeline.device).type == "cuda",
        persistent_workers=cfg.data.num_workers > 0)


def scored_size(cfg: SwinMAEConfig) -> int:
    """The side images are read at, and their maps made at: image_size × data.zoom."""
    return cfg.model.image_size * cfg.data.zoom


def model_config(ctx: Context):
    return ctx.cfg.swinmae.model.model_copy(update={"in_chans": ctx.state[STREAM].channels})


def train(ctx: Context) -> None:
    """Train on the normal images not held out (on a torchrun rank: its share of each epoch)."""
    cfg, data = ctx.cfg.swinmae, ctx.state[STREAM]
    rt = stream_runtime(ctx.cfg, STREAM)
    seed_everything(ctx.cfg.pipeline.seed)
    model = SwinMAE(model_config(ctx))
    t = cfg.train
    fit_loader = _loader(ctx, data.fit, True, t.batch_size, crop=True)
    val_loader = _loader(ctx, data.val, False, cfg.score.batch_size, crop=True)
    limit = t.max_steps_per_epoch or len(fit_loader)

    def train_batches(epoch: int):
        fit_loader.sampler.set_epoch(epoch)
        return (b["image"] for b in itertools.islice(fit_loader, limit))

    extra = {"config": to_dict(cfg), "channels": data.channels,
             "model": to_dict(model_config(ctx))}
    size = cfg.model.image_size
    crops = f" crops of {scored_size(cfg)} px images" if cfg.data.zoom > 1 else ""
    ctx.log.info("    %d training images, %d held out, %s parameters, %d px%s; %s", len(data.fit),
                 len(data.val), f"{sum(p.numel() for p in model.parameters()):,}", size, crops,
                 rt.describe())
    reporter = TrainReporter(ctx, "train_swinmae", STREAM)
    with explain_oom("training Swin MAE", f"lower swinmae.train.batch_size (now {t.batch_size}) "
                                          f"or swinmae.model.image_size (now "
                                          f"{cfg.model.image_size})"):
        result = fit(
            model, train_batches=train_batches, n_batches=min(limit, len(fit_loader)),
            val_batches=lambda: (b["image"] for b in val_loader),
            cfg=t, rt=rt, out_dir=ctx.stream_dir(STREAM), extra=extra,
            reporter=reporter, resume=ctx.resume, group=group_of(ctx))
    reporter.finished(result)


def train_head(ctx: Context) -> None:
    """Train the defect head on synthetic defects in the normal training images, Swin MAE
    (its best checkpoint) frozen; skipped unless `score.method` is head."""
    cfg, data = ctx.cfg.swinmae, ctx.state[STREAM]
    if cfg.score.method != "head":
        raise Skip(f"score.method is {cfg.score.method}: no defect head")
    rt = stream_runtime(ctx.cfg, STREAM)
    seed_everything(ctx.cfg.pipeline.seed)
    mae, _ = load_model(ctx.stream_dir(STREAM), rt.device)
    head = DefectHead(2 * data.channels + 1, cfg.head.width, cfg.head.ensemble)
    t = cfg.head.train
    fit_loader = _loader(ctx, data.fit, True, t.batch_size, crop=True)
    val_loader = _loader(ctx, data.val, False, t.batch_size, crop=True)
    limit = t.max_steps_per_epoch or len(fit_loader)

    def train_batches(epoch: int):
        fit_loader.sampler.set_epoch(epoch)
        return (b["image"] for b in itertools.islice(fit_loader, limit))

    out_dir = ImageFiles(ctx.stream_dir(STREAM)).head
    out_dir.mkdir(exist_ok=True)
    ctx.log.info("    defect head: %d U-Net(s), %s parameters, synthetic defects in %d%% of the "
                 "images", cfg.head.ensemble, f"{sum(p.numel() for p in head.parameters()):,}",
                 round(100 * cfg.head.defect_share))
    reporter = TrainReporter(ctx, "train_head_swinmae", STREAM, curve="swinmae head",
                             out_dir=out_dir)
    with explain_oom("training the defect head", f"lower swinmae.head.train.batch_size (now "
                                                 f"{t.batch_size})"):
        result = fit(
            HeadTraining(mae, head, cfg.head.defect_share), train_batches=train_batches,
            n_batches=min(limit, len(fit_loader)),
            val_batches=lambda: (b["image"] for b in val_loader), cfg=t, rt=rt,
            out_dir=out_dir, extra={"head": to_dict(cfg.head), "in_chans": 2 * data.channels + 1},
            reporter=reporter, resume=ctx.resume)
    reporter.finished(result)


def load_model(stream_dir: Path, device: torch.device | str = "cpu") -> tuple[SwinMAE, dict]:
    """The best checkpoint as a ready model, and its `extra` (config, channels)."""
    from core.config import from_dict
    from core.images.config import SwinMAEModelConfig
    ckpt = load_checkpoint(ImageFiles(stream_dir).checkpoint, device)
    # a checkpoint saved before `masking` existed was trained with block masking, whatever the
    # YAML's default is now
    saved = {"masking": "block"} | ckpt["extra"]["model"]
    model = SwinMAE(from_dict(SwinMAEModelConfig, saved, "swinmae.model"))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt["extra"]


def load_head(stream_dir: Path, device: torch.device | str = "cpu") -> DefectHead:
    """The defect head's best checkpoint (`<stream_dir>/head/best.pt`) as a ready module (a run
    from before `head.ensemble` existed has one U-Net)."""
    ckpt = load_checkpoint(ImageFiles(ImageFiles(stream_dir).head).checkpoint, device)
    saved = ckpt["extra"]["head"]
    head = DefectHead(int(ckpt["extra"]["in_chans"]), int(saved["width"]),
                      int(saved.get("ensemble", 1)))
    head.load_checkpoint_state({k.removeprefix("head."): v for k, v in ckpt["model"].items()})
    return head.to(device).eval()


@dataclass
class Scored:
    """Maps and scores of a set of images, model and baseline side by side."""
    maps: np.ndarray  # (N, S, S) float32 model anomaly maps
    scores: np.ndarray  # (N,)
    base_maps: np.ndarray | None  # (N, S, S) baseline maps
    base_scores: np.ndarray | None  # (N,)
    masks: np.ndarray  # (N, S, S) uint8 ground truth (zeros when unknown)
    mask_known: np.ndarray  # (N,) bool: the mask is real ground truth
    images: np.ndarray  # (N, C, S, S) float16, for the overlays
    coarse: dict | None = None  # the model's pixel maps' coarse scale, {"sigma": pixels,
    # "weight": w, "neighbours": k, "two_sided": bool} (scoring.json's); None: fine maps only


def _batches(ctx: Context, items: list[ImageItem],
             with_masks: bool = False) -> Iterator[tuple[torch.Tensor, dict]]:
    """(images (B, C, Z, Z) on the run's device, Z = `scored_size`, the loader's batch) for
    batches of `items` in order, for scoring; StopRequested when the user stops the run."""
    cfg, device = ctx.cfg.swinmae.score, resolve_device(ctx.cfg.pipeline.device)
    for batch in _loader(ctx, items, False, cfg.batch_size, with_masks=with_masks):
        if ctx.should_stop():
            raise StopRequested("stopped while scoring images")
        yield batch["image"].to(device, non_blocking=True), batch


def _maps(ctx: Context, detector: AnomalyMaps, items: list[ImageItem], with_masks: bool,
          own: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict]]:
    """(smoothed anomaly maps (B, [M,] S, S) and the images' keys (B, T [+ D]) on the CPU, the
    loader's batch) for batches of `items`. In fp32 whatever the training precision: the
    exported model.onnx is fp32, and bf16's rounding (~0.004 in a map) would set the run's
    scores and threshold apart from it.
    `own`: items are the first of `data.fit`, whose patches the memory bank holds (knn): each
    is scored with its own left out."""
    for imgs, batch in _batches(ctx, items, with_masks):
        maps, keys = detector.keyed(imgs, batch["index"] if own else None)
        yield maps.cpu(), keys.cpu(), batch


def build_bank(ctx: Context, mae: SwinMAE, head: DefectHead | None,
               items: list[ImageItem]) -> MemoryBank:
    """The memory bank of `items`' features, saved in the run: the defect head's deepest
    features with a head (`score.head_knn`), else the encoder's patch features (`score.method:
    knn`)."""
    cfg = ctx.cfg.swinmae.score
    tile = mae.cfg.image_size  # every tile's places, as the detector will score them

    def features(t: torch.Tensor) -> torch.Tensor:  # (B, C, S, S) tiles → (B, F, g, g)
        return head_outputs(mae, head, t)[1] if head is not None \
            else patch_features(mae, t, cfg.knn.stages)
    batches = (tiled(features, imgs, tile) for imgs, _ in _batches(ctx, items))
    bank = MemoryBank.build(batches, len(items), cfg.knn.bank_size, ctx.cfg.pipeline.seed or 0,
                            standardise=head is not None)  # the encoder's: per place already
    bank.save(ImageFiles(ctx.stream_dir(STREAM)).knn_bank)
    ctx.log.info("    memory bank: %d normal %s features of %d channels from %d images",
                 bank.bank.shape[0], "defect-head" if head is not None else "patch",
                 bank.bank.shape[1], len(items))
    return bank.to(resolve_device(ctx.cfg.pipeline.device))


def _normal_references(ctx: Context, detector: AnomalyMaps, baseline: MeanImageBaseline,
                       items: list[ImageItem]) -> tuple[NormalReference, NormalReference]:
    """What the model's and the baseline's maps are measured against: their maps of normal
    training images (`items`: `data.fit`, of which the first `score.normal_images`), per image
    its `score.neighbours` nearest (the baseline's: `score.baseline_neighbours`). Both
    detectors' maps get the same post-processing otherwise."""
    cfg = ctx.cfg.swinmae.score
    model_maps, base_maps, keys = [], [], []
    for maps, batch_keys, batch in _maps(ctx, detector, items[:cfg.normal_images], False,
                                         own=True):
        model_maps.append(maps)
        base_maps.append(baseline.maps(batch["image"], cfg.sigma))
        keys.append(batch_keys)
    keys = torch.cat(keys)  # (N, T [+ D])
    # the baseline compares raw pixels, so it keeps neighbours of its lighting (matched by
    # shape alone: magnetic tile image AUROC 0.78 -> 0.62; it has no head to match by), and as
    # many as suit it (at the model's 10 instead of 20: 0.78 -> 0.74): the model is measured
    # against its best
    return (normal_reference(torch.cat(model_maps), keys, cfg.neighbours, cfg.two_sided,
                             cfg.map_cap, cfg.match_shape, cfg.match_head),
            normal_reference(torch.cat(base_maps), thumbnail_part(keys),
                             cfg.baseline_neighbours, cfg.two_sided))


def measure(raw: torch.Tensor, keys: torch.Tensor, normal: NormalReference | None,
            coarse: CoarseScale | None, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw maps (B, [M,] S, S) of images with `keys` (B, T [+ D]) → (image scores (B,), pixel
    maps (B, S, S)): the maps in units of `normal`'s (None: as they are), scored from those
    fine maps under `cfg` (`ImageScoreConfig`); the pixel maps add the coarse scale when there
    is one."""
    z = normal(raw, keys) if normal else raw  # (B, S, S)
    return image_scores(z, cfg.image_score, cfg.topk), coarse(z, raw, keys) if coarse else z


def score_items(ctx: Context, detector: AnomalyMaps, baseline: MeanImageBaseline | None,
                items: list[ImageItem], normal: NormalReference | None,
                base_normal: NormalReference | None = None) -> Scored:
    """Model and baseline maps and scores of `items`; model maps in units of `normal`'s, the
    baseline's in units of `base_normal`'s (each None: raw maps). Image scores read those
    maps; the pixel maps add each one's coarse scale (`CoarseScale`) when it has one. Without
    a baseline (a scoring run), its maps and scores are None."""
    cfg = ctx.cfg.swinmae.score
    coarse, base_coarse = (CoarseScale.of(ref, cfg) for ref in (normal, base_normal))
    parts: dict[str, list] = {k: [] for k in ("maps", "scores", "base_maps", "base_scores",
                                               "masks", "known", "images")}

    def add(prefix: str, raw: torch.Tensor, ref: NormalReference | None,
            scale: CoarseScale | None, keys: torch.Tensor) -> None:
        scores, maps = measure(raw, keys, ref, scale, cfg)
        parts[f"{prefix}scores"].append(scores)
        parts[f"{prefix}maps"].append(maps)

    for maps, keys, batch in _maps(ctx, detector, items, with_masks=True):
        add("", maps, normal, coarse, keys)
        if baseline is not None:
            add("base_", baseline.maps(batch["image"], cfg.sigma), base_normal, base_coarse,
                thumbnail_part(keys))
        parts["masks"].append(batch["mask"])
        parts["known"].append(batch["mask_known"])
        parts["images"].append(batch["image"].half())
    base = baseline is not None
    return Scored(torch.cat(parts["maps"]).numpy(), torch.cat(parts["scores"]).numpy(),
                  torch.cat(parts["base_maps"]).numpy() if base else None,
                  torch.cat(parts["base_scores"]).numpy() if base else None,
                  torch.cat(parts["masks"]).numpy(), torch.cat(parts["known"]).numpy(),
                  torch.cat(parts["images"]).numpy(),
                  coarse and {"sigma": coarse.sigma, "weight": coarse.weight,
                              "neighbours": coarse.reference.neighbours,
                              "two_sided": coarse.reference.two_sided})


def measured_as(detector: AnomalyMaps, normal: NormalReference | None) -> dict:
    """scoring.json's account of how the maps were made and measured, the same for a run and
    for a scoring run with its model, so Results describes both alike and `load_trained`
    rebuilds the detector from it."""
    sc = detector.cfg
    return {"method": sc.method, "mode": sc.mode, "image_score": sc.image_score,
            "two_sided": bool(normal and normal.two_sided),
            "map_cap": normal.cap if normal else 0.0,  # each of several maps' z capped; 0: none
            "neighbours": None if normal is None else normal.neighbours,  # 0: against all
            "match_shape": isinstance(normal, NearestNormal) and normal.match_shape,
            "match_head": normal.head_weight if isinstance(normal, NearestNormal) else 0.0,
            # a third map: the head features' distance to the bank's
            "head_knn": detector.head is not None and detector.bank is not None}


def save_normal_reference(path: Path, normal: NormalReference) -> None:
    """What scoring runs and exports measure new maps against: the per-pixel mean and spread,
    or the normal maps (float16) with their keys and the neighbour count."""
    if isinstance(normal, NearestNormal):
        arrays = {"maps": normal.maps.numpy(),
                  "keys": normal.keys.numpy(),
                  "neighbours": np.array(normal.neighbours)}
    else:
        arrays = {"mean": normal.mean.numpy().astype(np.float32),
                  "std": normal.std.numpy().astype(np.float32)}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load_normal_reference(path: Path, two_sided: bool, cap: float = 0.0,
                          match_shape: bool = False, head_weight: float = 0.0
                          ) -> NormalReference:
    """The reference `save_normal_reference` wrote (runs from before nearest normal images
    saved the mean and spread only), measuring as the run did (`two_sided`, `cap`,
    `match_shape`, `head_weight`: what its scoring.json says)."""
    with np.load(path, allow_pickle=False) as z:
        if "maps" in z:
            return NearestNormal(torch.from_numpy(z["maps"]), torch.from_numpy(z["keys"]),
                                 int(z["neighbours"]), two_sided, cap, match_shape,
                                 head_weight)
        return PixelErrorStats(torch.from_numpy(z["mean"]), torch.from_numpy(z["std"]),
                               two_sided, cap)


def score(ctx: Context) -> None:
    cfg, data, out = ctx.cfg.swinmae, ctx.state[STREAM], ImageFiles(ctx.stream_dir(STREAM))
    device = resolve_device(ctx.cfg.pipeline.device)
    model, _ = load_model(out.dir, device)
    head = load_head(out.dir, device) if cfg.score.method == "head" else None
    bank = build_bank(ctx, model, head, data.fit) \
        if cfg.score.method == "knn" or (head is not None and cfg.score.head_knn) else None
    detector = AnomalyMaps(model, cfg.score, head, bank)
    baseline = MeanImageBaseline.fit(_loader(ctx, data.fit, False, cfg.score.batch_size))
    with explain_oom("scoring images", f"lower swinmae.score.batch_size (now "
                                       f"{cfg.score.batch_size})"):
        normal, base_normal = _normal_references(ctx, detector, baseline, data.fit) \
            if cfg.score.normalize else (None, None)
        val, target = (score_items(ctx, detector, baseline, items, normal, base_normal)
                       for items in (data.val, data.target))
    if normal is not None:
        save_normal_reference(out.normal_stats, normal)
    pct = cfg.score.threshold_percentile
    threshold = metrics.threshold_from_normal(val.scores, pct)
    names = [item.path.relative_to(data.root).as_posix() for item in data.target]
    write_scores(out.scores, data.target, names, target.scores, threshold)
    write_maps(out.maps, target.maps, names)
    write_overlays(out.overlays, target, names, cfg.score.overlays)
    write_json(out.scoring, measured_as(detector, normal) | {
        "threshold": threshold, "percentile": pct, "rows": len(names),
        "normalized_by": min(len(data.fit), cfg.score.normal_images) if normal else None,
        "coarse": target.coarse,  # the pixel maps' coarse scale; None: fine only
        "flagged": int((target.scores > threshold).sum()), "image_size": scored_size(cfg),
        "baseline_threshold": metrics.threshold_from_normal(val.base_scores, pct)})
    ctx.state[f"{STREAM}.scored"] = target
    ctx.log.info("    %d images scored, %d above the threshold %.4g", len(names),
                 int((target.scores > threshold).sum()), threshold)


def write_scores(path: Path, items: list[ImageItem], names: list[str], scores: np.ndarray,
                  threshold: float) -> None:
    frame = pd.DataFrame({"file": names, "defect_type": [it.defect_type for it in items],
                          "score": scores, "is_anomaly": (scores > threshold).astype(np.int8),
                          "label": [it.label for it in items]})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def write_maps(path: Path, maps: np.ndarray, names: list[str]) -> None:
    """maps.npz: the maps (N, S, S) at float16, clipped to its range (a map far outside its
    normal images' spread, e.g. of a detector whose normal maps are all but constant, could
    exceed 65504 and become inf), with their files' names."""
    limit = np.finfo(np.float16).max
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, maps=np.clip(maps, -limit, limit).astype(np.float16),
                            files=np.array(names))


def write_overlays(folder: Path, scored: Scored, names: list[str], count: int) -> None:
    """Heatmap overlays of the `count` highest-scoring images into `folder`, named by rank."""
    folder.mkdir(exist_ok=True)
    vmax = float(np.quantile(scored.maps, 0.999)) or 1.0
    for rank, i in enumerate(np.argsort(-scored.scores)[:count], 1):
        mask = scored.masks[i] if scored.mask_known[i] else None
        stem = Path(names[i]).stem
        save_overlay(folder / f"{rank:03d}_{Path(names[i]).parent.name}_{stem}.png",
                     scored.images[i], scored.maps[i], vmax,
                     mask)


def evaluate(ctx: Context) -> None:
    data, out = ctx.state[STREAM], ImageFiles(ctx.stream_dir(STREAM))
    if any(it.label is None for it in data.target) or not any(it.label for it in data.target):
        raise Skip("no labelled defect images among the scored images")
    scored, scoring = ctx.state[f"{STREAM}.scored"], read_json(out.scoring)
    labels = np.array([it.label for it in data.target])
    types = np.array([it.defect_type for it in data.target])
    result = image_metrics(scored.scores, scored.maps, labels, scored, scoring["threshold"])
    result["baselines"] = {"mean_image": image_metrics(
        scored.base_scores, scored.base_maps, labels, scored, scoring["baseline_threshold"])}
    for m, scores, maps in ((result, scored.scores, scored.maps),
                            (result["baselines"]["mean_image"], scored.base_scores,
                             scored.base_maps)):
        m["per_type"] = per_type_auroc(scores, labels, types)
        m["per_type_pixel"] = per_type_pixel_auroc(maps, scored, labels, types)
    write_json(out.metrics, result)
    base = result["baselines"]["mean_image"]
    ctx.log.info("    image AUROC %s (baseline %s), pixel AUROC %s (baseline %s)",
                 *(_fmt(v) for v in (result["image_auroc"], base["image_auroc"],
                                     result["pixel_auroc"], base["pixel_auroc"])))


def image_metrics(scores: np.ndarray, maps: np.ndarray, labels: np.ndarray, scored: Scored,
                   threshold: float) -> dict:
    m = metrics.evaluate(scores, labels, threshold)
    return {"image_auroc": m["auroc"], "image_auprc": m["auprc"], "best_f1": m["best_f1"],
            "f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
            "pixel_auroc": pixel_auroc(maps, scored.masks, scored.mask_known),
            "threshold": threshold, "n": m["n"], "n_anomalies": m["n_anomalies"]}


def per_type_auroc(scores: np.ndarray, labels: np.ndarray, types: np.ndarray) -> dict:
    """{defect type: image AUROC of its images against all normal ones} (N,) each; a type
    needs a defect image and the set a normal one."""
    normal = labels == 0
    if not normal.any():
        return {}
    out = {}
    for kind in sorted(set(types[labels == 1].tolist())):
        keep = normal | ((types == kind) & (labels == 1))
        out[kind] = float(roc_auc_score(labels[keep], scores[keep]))
    return out


def per_type_pixel_auroc(maps: np.ndarray, scored: Scored, labels: np.ndarray,
                         types: np.ndarray) -> dict:
    """{defect type: pixel AUROC of its images' and the normal images' pixels} (maps (N, S,
    S), labels and types (N,)); a type without a known mask is left out."""
    out = {}
    for kind in sorted(set(types[labels == 1].tolist())):
        keep = (labels == 0) | (types == kind)
        value = pixel_auroc(maps[keep], scored.masks[keep], scored.mask_known[keep])
        if value is not None:
            out[kind] = value
    return out


def pixel_auroc(maps: np.ndarray, masks: np.ndarray, known: np.ndarray) -> float | None:
    """AUROC over every pixel of the images whose ground truth is known (defect images with a
    mask, and normal images); None when no defect pixel is known."""
    gt, pred = masks[known].ravel(), maps[known].ravel()
    if not gt.any() or gt.all():
        return None
    return float(roc_auc_score(gt, pred))


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
