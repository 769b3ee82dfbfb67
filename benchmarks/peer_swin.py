"""Our Swin MAE against Hugging Face `transformers.SwinForMaskedImageModeling` (SimMIM), side by
side in one process with the same Swin encoder: by default our `base` preset (configs/swinmae.yaml:
256 px, patch 4, 3 channels, embed 96, depths 2-2-6-2, heads 3-6-12-24, window 8, MLP ratio 4;
the Swin-T shape at UM-MAE's size), no dropout or stochastic depth on either side, fp32 (on CUDA both run under
the product's autocast: bf16 where supported).

Training: images/s of one AdamW step at batch 8. HF hides random 16×16 px blocks (75 %) with its
mask token on the full grid; so does ours with `--masking block` (the same mask), while with
`--masking uniform` (the product's default) ours keeps one unit per 2×2 block, packs them and hides 25 % of those
(UM-MAE: the encoder sees a quarter of the tokens). Inference: images/s of a forward pass
without gradients, nothing hidden, at batch 8 and 32 (the same code for both maskings).

The heads differ, by design: HF's SimMIM head is one 1×1 convolution on the last stage (7×7 ×
768 → 32²·3) and a pixel shuffle, with an L1 loss; ours projects to 128 channels, expands back
to the 56×56 patch grid and runs `decoder_depth` (2) Swin blocks there before a linear head,
with an MSE loss. So ours does more work per image: 11.7 vs 8.9 GFLOP forward at 224 px
(torch's FLOP counter).

    .venv/bin/python benchmarks/peer_swin.py [--device cpu|cuda] [--rounds 5] [--threads N]
        [--quick] [--preset default|base] [--masking block|uniform] [--image-size 256]
        [--window-size 8] [--depths 2,2,2,2]

Uniform masking needs a grid that packs: `--image-size 224 --window-size 7` (Swin-T's own size)
does not, so compare at 224 px with `--masking block`; the size and window change both sides.

Needs `pip install -r requirements-bench.txt`. Ends with `ratio_train=… ratio_infer=…`
(ours / theirs, medians; infer at batch 8)."""
from __future__ import annotations

import timing  # first: it puts the project root on sys.path
from timing import Case, infer_step, train_step

import torch

from core.images.config import SwinMAEModelConfig
from core.images.swinmae import SwinMAE, block_mask, preset

TRAIN_BATCH, INFER_BATCHES = 8, (8, 32)
# steps per turn: a few seconds each on a 2-core CPU
TRAIN_STEPS, INFER_STEPS = 2, {8: 2, 32: 1}
OURS, THEIRS = "ours SwinMAE", "HF SwinForMaskedImageModeling"


def their_model(cfg: SwinMAEModelConfig) -> torch.nn.Module:
    """HF's SimMIM model with our config's encoder; no dropout, no stochastic depth."""
    from transformers import SwinConfig, SwinForMaskedImageModeling
    hf = SwinConfig(image_size=cfg.image_size, patch_size=cfg.patch_size,
                    num_channels=cfg.in_chans, embed_dim=cfg.embed_dim, depths=list(cfg.depths),
                    num_heads=list(cfg.num_heads), window_size=cfg.window_size,
                    mlp_ratio=cfg.mlp_ratio, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0, drop_path_rate=0.0,
                    encoder_stride=cfg.patch_size * 2 ** (len(cfg.depths) - 1))
    return SwinForMaskedImageModeling(hf)


def their_loss(model: torch.nn.Module, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """HF's masked-image-modelling loss; mask (B, h, w) True = hidden, flattened in raster order
    as HF's `bool_masked_pos` (B, N)."""
    return model(pixel_values=imgs, bool_masked_pos=mask.flatten(1)).loss


def cases(cfg: SwinMAEModelConfig, runtime) -> dict[str, list[Case]]:
    """Benchmark label → the two sides' cases, models and data on the runtime's device."""
    device = runtime.device
    ours, theirs = SwinMAE(cfg).to(device), their_model(cfg).to(device)
    shape = (cfg.in_chans, cfg.image_size, cfg.image_size)
    imgs = torch.randn(TRAIN_BATCH, *shape, device=device)  # (B, C, H, W)
    grid = cfg.image_size // cfg.patch_size
    mask = block_mask(TRAIN_BATCH, grid, grid, cfg.mask_unit, cfg.mask_ratio, device=device)
    # ours: the same mask, or (uniform) a packing and a secondary mask of the packed grid
    our_mask, keep = (mask, None) if cfg.masking == "block" else ours.training_masks(TRAIN_BATCH,
                                                                                      device)
    out = {f"training, batch {TRAIN_BATCH} (images/s)": [
        Case(OURS, train_step(ours, lambda m, x: m.loss(x, our_mask, keep), imgs, runtime),
             TRAIN_BATCH, TRAIN_STEPS),
        Case(THEIRS, train_step(theirs, lambda m, x: their_loss(m, x, mask), imgs, runtime),
             TRAIN_BATCH, TRAIN_STEPS)]}
    for b in INFER_BATCHES:
        xb = torch.randn(b, *shape, device=device)
        out[f"inference, batch {b} (images/s)"] = [
            Case(OURS, infer_step(ours, lambda m, x: m(x), xb, runtime), b, INFER_STEPS[b]),
            Case(THEIRS, infer_step(theirs, lambda m, x: m(pixel_values=x), xb, runtime), b,
                 INFER_STEPS[b])]
    return out


def masking(cfg: SwinMAEModelConfig) -> str:
    """Our training masking in words, for the table's caption."""
    if cfg.masking == "block":
        return "the same mask"
    return (f"uniform masking (one unit in 4 kept and packed, {cfg.secondary_ratio} of those "
            f"hidden: the encoder on a quarter of the tokens)")


def main() -> None:
    ap = timing.common_args(__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=("default", "base"), default="base")
    ap.add_argument("--masking", choices=("block", "uniform"), default=None,
                    help="our training masking (default: the preset's)")
    ap.add_argument("--image-size", type=int, default=None, help="default: the preset's")
    ap.add_argument("--window-size", type=int, default=None, help="default: the preset's")
    ap.add_argument("--depths", default=None,
                    help="encoder depths, e.g. 2,2,2,2 (default: the preset's)")
    args = ap.parse_args()
    runtime = timing.setup(args, "swinmae")
    changes = {"depths": tuple(int(d) for d in args.depths.split(","))} if args.depths else {}
    changes |= {key: value for key, value in (("masking", args.masking),
                                              ("image_size", args.image_size),
                                              ("window_size", args.window_size)) if value}
    cfg = preset(args.preset, in_chans=3, **changes)
    steps, warmup, rounds = (1, 1, 2) if args.quick else (None, 1, args.rounds)
    timing.compare(cases(cfg, runtime), runtime, rounds, warmup, steps, OURS, THEIRS,
                   f"Swin MAE vs HF SimMIM, `{args.preset}` preset, {cfg.image_size} px, patch "
                   f"{cfg.patch_size}, embed {cfg.embed_dim}, depths "
                   f"{'-'.join(map(str, cfg.depths))}, heads {'-'.join(map(str, cfg.num_heads))}, "
                   f"window {cfg.window_size}; HF hides {cfg.mask_ratio} of "
                   f"{cfg.mask_unit}×{cfg.mask_unit}-patch blocks, ours by {masking(cfg)}; no "
                   f"dropout. The heads differ: HF's is a 1×1 conv + pixel shuffle on the last "
                   f"stage, ours {cfg.decoder_depth} Swin blocks at the patch grid (more work "
                   "per image)", digits=2)


if __name__ == "__main__":
    main()
