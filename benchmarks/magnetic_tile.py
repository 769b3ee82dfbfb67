"""Accuracy and speed on the magnetic-tile surface-defect set: train Swin MAE on
`../shared/datasets/magnetic_tile` (762 normal training images; 95 normal and 303 defect test
images, every defect masked) through the real CLI, and print one table of the model's and the
mean-image baseline's image AUROC, image AUPRC, pixel AUROC and F1 (at the threshold the run set
from held-out normal images), with training and scoring throughput and wall time.

    python benchmarks/magnetic_tile.py [--set swinmae.train.epochs=10 ...] [--workdir D]

Ends with one line
`image_auroc=… pixel_auroc=… baseline_image_auroc=… baseline_pixel_auroc=…`.
The run goes to a temporary workspace unless `--workdir` is given; `--set` overrides come after
the defaults below, so they win.

Size, chosen for a 2-core CPU in under ~20 minutes in all: the `default` preset (a 1.8 M
parameter Swin MAE at 128 px: the images are 103–632 px wide, 128 keeps the small blowholes a
few pixels wide) costs ~2.6 GFLOP per training image (forward + backward, torch's flop counter)
and ~1.7 GFLOP per scored image (2 complementary masks × 0.86). At the ~50–100 GFLOP/s a model
this narrow reaches on 2 threads (`../shared/PERF.md`: 130 GFLOP/s for a wider Swin) that is
~20–40 training images/s, so 15 epochs of the 686 images left after the held-out 10 % (42 steps
of 16) take ~4–9 minutes of steps; scoring 76 held-out + 398 test images adds well under a
minute. Early stopping (patience 5) may end training sooner. Measured on a 2-core CPU, mostly idle:
31 images/s per step, 17 over the train stage (JPEG decoding and validation cost the rest),
600 s of training, 14 s of scoring, 10.4 minutes in all.

Throughput: `train img/s` is the median `samples_per_s` of the logged training steps in
metrics.jsonl (forward, backward and optimizer step only); `train img/s (stage)` is every image
trained on divided by the train stage's duration (adds data loading, validation, checkpoints);
`score img/s` is the images the score stage scored (held-out and test) divided by its duration
(which also fits the baseline on the training images and writes maps and overlays)."""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import yaml
from cli import ROOT, run_pipeline

from core.fileio import read_json, read_jsonl
TILES = ROOT.parent / "shared" / "datasets" / "magnetic_tile"
KINDS = ("Blowhole", "Break", "Uneven")  # the defect kinds, a prefix of each file's name
DEFAULTS = ["swinmae.preset=default", "swinmae.train.epochs=15"]
KEYS = ["image_auroc", "image_auprc", "pixel_auroc", "f1", "best_f1"]


def by_kind(tiles: Path, folder: Path) -> Path:
    """The tiles with test/defect/ split into one folder per kind (hard links where the file
    system allows, else copies), so metrics.json's per_type holds a row per kind for the model
    and the baseline."""
    def link(src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)

    for sub in ("train/good", "test/good"):
        for f in (tiles / sub).iterdir():
            link(f, folder / sub / f.name)
    for part in ("test", "ground_truth"):
        for f in (tiles / part / "defect").iterdir():
            link(f, folder / part / f.name.split("__")[0] / f.name)
    return folder


def throughput(run: Path) -> dict[str, float]:
    """Training and scoring images per second (see the module docstring)."""
    cfg = yaml.safe_load((run / "run.yaml").read_text())["swinmae"]
    steps = [m for m in read_jsonl(run / "metrics.jsonl")  # Swin MAE's, not the head's
             if m["stream"] == "swinmae" and m["kind"] == "step" and not m.get("curve")]
    stages = {s["name"]: s["ended"] - s["started"]
              for s in read_json(run / "progress.json")["stages"]}
    n_train = read_json(run / "swinmae" / "data_summary.json")["train"]
    n_val = max(2, round(n_train * cfg["data"]["val_fraction"]))  # as core.images.stages.load
    scored = read_json(run / "swinmae" / "scoring.json")["rows"] + n_val
    return {"train_step": statistics.median(m["samples_per_s"] for m in steps),
            "train_stage": steps[-1]["step"] * cfg["train"]["batch_size"] / stages["train_swinmae"],
            "score_stage": scored / stages["score_swinmae"],
            "train_s": stages["train_swinmae"], "score_s": stages["score_swinmae"],
            "head_s": stages.get("train_head_swinmae", 0.0)}


def fmt(v, width: int = 8, digits: int = 3) -> str:
    return f"{'n/a' if v is None else f'{v:.{digits}f}':>{width}}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workdir", type=Path)
    args = p.parse_args()
    if not TILES.is_dir():
        sys.exit(f"{TILES}: dataset not found")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tile-bench-"))
    overrides = DEFAULTS + args.set
    print("overrides:", " ".join(overrides), "| workspace:", workdir, flush=True)
    tiles = by_kind(TILES, workdir / "tiles")
    run, wall = run_pipeline(["--img-data", str(tiles)], workdir, "magnetic-tile bench",
                             overrides)
    metrics = read_json(run / "swinmae" / "metrics.json")
    base = metrics["baselines"]["mean_image"]
    speed = throughput(run)
    training = read_json(run / "swinmae" / "training.json")

    heads = ["image_auroc", "image_auprc", "pixel_auroc", "f1", "best_f1", "train img/s",
             "(stage)", "score img/s", "wall_s"]
    print(f"{'':>10} " + " ".join(f"{h:>11}" for h in heads))
    print(f"{'swinmae':>10} " + " ".join(fmt(metrics[k], 11) for k in KEYS)
          + fmt(speed["train_step"], 12, 1) + fmt(speed["train_stage"], 12, 1)
          + fmt(speed["score_stage"], 12, 1) + fmt(wall, 12, 0))
    print(f"{'mean_image':>10} " + " ".join(fmt(base[k], 11) for k in KEYS)
          + "".join(f"{'-':>12}" for _ in range(4)))
    for kind in KINDS:
        print(f"{kind:>10} image AUROC {fmt(metrics['per_type'][kind], 0)}, mean-image baseline "
              f"{fmt(base['per_type'][kind], 0)}; pixel AUROC "
              f"{fmt(metrics.get('per_type_pixel', {}).get(kind), 0)}, baseline "
              f"{fmt(base.get('per_type_pixel', {}).get(kind), 0)}")
    print(f"run: {run}\ntraining: {training['epochs_done']} epochs (best {training['best_epoch']}"
          f"{', early stop' if training['early_stopped'] else ''}) in {speed['train_s']:.0f} s; "
          f"defect head {speed['head_s']:.0f} s; scoring {speed['score_s']:.0f} s; "
          f"method {read_json(run / 'swinmae' / 'scoring.json')['method']}; {metrics['n']} test "
          f"images, {metrics['n_anomalies']} defects")
    print(f"image_auroc={fmt(metrics['image_auroc'], 0, 4)} "
          f"pixel_auroc={fmt(metrics['pixel_auroc'], 0, 4)} "
          f"baseline_image_auroc={fmt(base['image_auroc'], 0, 4)} "
          f"baseline_pixel_auroc={fmt(base['pixel_auroc'], 0, 4)}")


if __name__ == "__main__":
    main()
