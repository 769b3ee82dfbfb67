"""Re-score finished image runs with other `swinmae.score` post-processing settings, without
training again: each run's detector (Swin MAE, the defect head, the memory bank, as
`load_trained` rebuilds them) maps its normal training images and its test images once; the
raw maps are cached; then, for each setting, they are measured against the nearest normal
images, given the coarse scale and scored through the product's own functions
(`normal_reference`, `CoarseScale`, and the score stage's `measure`), beside the mean-image
baseline.

    python benchmarks/image_rescore.py RUN [RUN ...] [--try neighbours=20 ...]
        [--try neighbours=10,coarse_weight=1] [--cache-dir DIR]

A `--try` changes keys of `swinmae.score` (neighbours, baseline_neighbours, match_shape,
match_head, map_cap, two_sided, coarse_sigma, coarse_weight, coarse_neighbours, image_score,
topk); the first row
of each run is its own settings, whose figures must equal the run's metrics.json (printed
beside them: the check that this script scores as the product does; for runs scored before the
coarse scale counted a rise only, 2026-12-03, the pixel AUROC is today's, not theirs). Prints
image AUROC, image AUPRC, pixel AUROC and image AUROC per defect kind for each run and setting,
then the mean and the standard deviation over the runs, and ends with `image_auroc=… pixel_auroc=…
baseline_image_auroc=… baseline_pixel_auroc=…`: the means of the last setting. Caches go to
`--cache-dir` (default: `rescore_cache/` beside the runs' `runs/` folder), one `<run id>.npz`
each (~60 MB for the magnetic tiles): a second call on the same runs takes seconds."""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from cli import ROOT  # noqa: F401  (puts the project root on sys.path)

from core.config import parse_override, read_config
from core.fileio import read_json
from core.images.baselines import MeanImageBaseline
from core.images.config import ImageScoreConfig
from core.images.data import ImageFolderDataset
from core.images.files import ImageFiles
from core.images.scoring import AnomalyMaps, CoarseScale, normal_reference, thumbnail_part
from core.images.stages import load, measure, per_type_auroc, pixel_auroc, scored_size
from core.images.trained import load_trained

CHUNK = 32  # images measured at once: K neighbours × M maps × S² floats each


def cache_maps(run: Path, path: Path) -> None:
    """The run's raw maps (N, [M,] S, S) float16 of its first `score.normal_images` training
    images (each with its own bank entries left out, as the score stage does) and of its test
    images, their keys (N, T [+ D]: with a head its descriptor too, whatever the run matched
    by, so that `match_head` can be tried), the mean-image baseline's raw maps, the test
    images' masks, labels and defect kinds: into `path`."""
    cfg = read_config(run / "run.yaml")
    data, _ = load(cfg)
    trained = load_trained(run)
    sc, size = trained.cfg.score, scored_size(trained.cfg)
    ran = trained.detector
    detector = AnomalyMaps(ran.model, sc.model_copy(update={"match_head": 1.0}), ran.head,
                           ran.bank)

    def batches(items, masks=False):
        dataset = ImageFolderDataset(items, size, data.channels, trained.cfg.data.resize,
                                     with_masks=masks)
        return torch.utils.data.DataLoader(dataset, batch_size=sc.batch_size)

    baseline = MeanImageBaseline.fit(batches(data.fit))
    out = {}
    for part, items, own in (("fit", data.fit[:sc.normal_images], True),
                             ("test", data.target, False)):
        maps, keys, base = [], [], []
        masks, known = [], []
        with torch.no_grad():
            for b in batches(items, masks=not own):
                mapped, keyed = detector.keyed(b["image"], b["index"] if own else None)
                maps.append(mapped.half())
                keys.append(keyed)
                base.append(baseline.maps(b["image"], sc.sigma).half())
                if not own:
                    masks.append(b["mask"])
                    known.append(b["mask_known"])
        out |= {f"{part}_maps": torch.cat(maps).numpy(), f"{part}_keys": torch.cat(keys).numpy(),
                f"{part}_base": torch.cat(base).numpy()}
        print(f"  {run.name}: {part} {len(items)} images mapped", file=sys.stderr, flush=True)
    out |= {"masks": torch.cat(masks).numpy(), "known": torch.cat(known).numpy(),
            "labels": np.array([it.label for it in data.target]),
            "kinds": np.array([it.defect_type or "" for it in data.target])}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)


def detect(cache: dict, cfg: ImageScoreConfig, baseline: bool) -> tuple[np.ndarray, np.ndarray]:
    """(image scores (N,), pixel maps (N, S, S)) of the test images, the model's or the
    mean-image baseline's, post-processed as the score stage does under `cfg`."""
    prefix = "base" if baseline else "maps"
    keys, test_keys = (torch.from_numpy(cache[f"{part}_keys"]) for part in ("fit", "test"))
    if baseline:  # it matches by the thumbnails alone
        keys, test_keys = thumbnail_part(keys), thumbnail_part(test_keys)
    ref = normal_reference(torch.from_numpy(cache[f"fit_{prefix}"]).float(), keys,
                           cfg.baseline_neighbours if baseline else cfg.neighbours,
                           cfg.two_sided, 0.0 if baseline else cfg.map_cap,
                           False if baseline else cfg.match_shape,
                           0.0 if baseline else cfg.match_head)
    coarse = CoarseScale.of(ref, cfg)
    raw_all = cache[f"test_{prefix}"]
    scores, maps = zip(*(measure(torch.from_numpy(raw_all[i:i + CHUNK]).float(),
                                 test_keys[i:i + CHUNK], ref, coarse, cfg)
                         for i in range(0, len(raw_all), CHUNK)))
    return torch.cat(scores).numpy(), torch.cat(maps).numpy()


def figures(cache: dict, scores: np.ndarray, maps: np.ndarray) -> dict:
    labels, kinds = cache["labels"], cache["kinds"]
    return {"image_auroc": roc_auc_score(labels, scores),
            "image_auprc": average_precision_score(labels, scores),
            "pixel_auroc": pixel_auroc(maps, cache["masks"], cache["known"])} | \
        per_type_auroc(scores, labels, kinds)


def parse_try(text: str) -> dict:
    """'neighbours=10,coarse_weight=1' → {"neighbours": 10, "coarse_weight": 1.0}, typed as
    the config's `swinmae.score` keys."""
    pairs = (parse_override(f"swinmae.score.{part}") for part in text.split(",") if part)
    return {key.removeprefix("swinmae.score."): value for key, value in pairs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--try", dest="tries", action="append", default=[], type=parse_try,
                    metavar="KEY=VALUE[,KEY=VALUE]")
    ap.add_argument("--cache-dir", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    rows: dict[str, list[dict]] = {}
    for run in args.runs:
        run = run.resolve()
        path = (args.cache_dir or run.parent.parent / "rescore_cache") / f"{run.name}.npz"
        if not path.is_file():
            cache_maps(run, path)
        with np.load(path, allow_pickle=False) as z:
            cache = dict(z)
        files = ImageFiles(run / "swinmae")
        own = read_config(run / "run.yaml").swinmae.score  # what its score stage ran with,
        # what it matched by (runs from before head matching: the thumbnails alone) and its
        # coarse scale's neighbours (before they had their own count: the fine maps')
        scoring = read_json(files.scoring) or {}
        own = own.model_copy(update={
            "match_head": float(scoring.get("match_head") or 0.0),
            "coarse_neighbours": int((scoring.get("coarse") or {}).get("neighbours") or 0)})
        product = read_json(files.metrics) or {}
        print(f"\n{run.name}: metrics.json image AUROC {product.get('image_auroc', 'n/a')}, "
              f"pixel AUROC {product.get('pixel_auroc', 'n/a')}")
        for label, change in [("as run", {})] + [(",".join(f"{k}={v}" for k, v in t.items()), t)
                                                 for t in args.tries]:
            cfg = own.model_copy(update=change)
            for name, base in (("model " + label, False), ("baseline " + label, True)):
                row = figures(cache, *detect(cache, cfg, base))
                rows.setdefault(name, []).append(row)
                print(f"  {name:42s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    print("\nmean (sd) over the runs:")
    for name, per_run in rows.items():
        keys = per_run[0].keys()
        cells = [f"{k} {statistics.mean(r[k] for r in per_run):.3f}"
                 + (f" ({statistics.stdev(r[k] for r in per_run):.3f})" if len(per_run) > 1
                    else "") for k in keys]
        print(f"  {name:42s} " + "  ".join(cells))
    last = list(rows)[-2:]  # the last setting's model and baseline rows
    means = {f"{prefix}{k}": statistics.mean(r[k] for r in rows[name])
             for prefix, name in zip(("", "baseline_"), last)
             for k in ("image_auroc", "pixel_auroc")}
    print(" ".join(f"{k}={v:.4f}" for k, v in means.items()))


if __name__ == "__main__":
    main()
