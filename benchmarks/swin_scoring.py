"""What Swin MAE's masking costs at scoring time: `core.images.scoring.anomaly_maps` in `masked`
mode for a model trained with block masking (K complementary masks, each a full-grid encoder
and decoder pass) against one trained with uniform masking (2 diagonal packings, each a
quarter-token encoder pass and a full-grid decoder pass), and `full` mode (one pass, nothing hidden, the same
for both), interleaved in one process. Randomly initialised models: the time does not depend
on the weights.

    .venv/bin/python benchmarks/swin_scoring.py [--preset default|base] [--image-size 256]
        [--window-size 8] [--batch 16] [--rounds 5] [--threads N] [--device cpu|cuda] [--quick]

Prints images/s per case (median and min–max over rounds) and ends with
`uniform_over_block_masked=…` (images/s, uniform / block)."""
from __future__ import annotations

import timing  # first: it puts the project root on sys.path
from timing import Case, infer_step

import torch

from core.config import defaults
from core.images.scoring import anomaly_maps
from core.images.swinmae import SwinMAE, preset

BLOCK, UNIFORM, FULL = "masked, block masking", "masked, uniform masking", "full (either)"


def main() -> None:
    ap = timing.common_args(__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=("default", "base"), default="default")
    ap.add_argument("--image-size", type=int, default=None, help="default: the preset's")
    ap.add_argument("--window-size", type=int, default=None, help="default: the preset's")
    ap.add_argument("--batch", type=int, default=16, help="images per anomaly_maps call")
    args = ap.parse_args()
    runtime = timing.setup(args, "swinmae")
    changes = {key: value for key, value in (("image_size", args.image_size),
                                             ("window_size", args.window_size)) if value}
    models = {m: SwinMAE(preset(args.preset, in_chans=3, masking=m, **changes)).to(runtime.device)
              for m in ("block", "uniform")}
    cfg = models["block"].cfg
    imgs = torch.rand(args.batch, 3, cfg.image_size, cfg.image_size, device=runtime.device)
    masked, full = defaults("swinmae.score", mode="masked"), defaults("swinmae.score", mode="full")
    steps = 1
    cases = [Case(BLOCK, infer_step(models["block"], lambda m, x: anomaly_maps(m, x, masked),
                                    imgs, runtime), args.batch, steps),
             Case(UNIFORM, infer_step(models["uniform"], lambda m, x: anomaly_maps(m, x, masked),
                                      imgs, runtime), args.batch, steps),
             Case(FULL, infer_step(models["block"], lambda m, x: anomaly_maps(m, x, full),
                                   imgs, runtime), args.batch, steps)]
    rounds = 2 if args.quick else args.rounds
    rates = timing.interleaved(cases, rounds, 1, runtime.device)
    print(f"anomaly_maps, `{args.preset}` preset, {cfg.image_size} px, window {cfg.window_size}, "
          f"batch {args.batch}; {runtime.describe()}, torch {torch.__version__}; median (min–max) "
          f"of {rounds} interleaved rounds\n")
    rows = [[name, timing.summarize(r.wall).cell(2)] for name, r in rates.items()]
    print(timing.markdown_table(["scoring", "images/s"], rows))
    ratio = (timing.summarize(rates[UNIFORM].wall).median
             / timing.summarize(rates[BLOCK].wall).median)
    print(f"\nuniform_over_block_masked={ratio:.2f}")


if __name__ == "__main__":
    main()
