"""Our PatchTST against Hugging Face `transformers.PatchTSTForPretraining`, side by side in one
process at one configuration: 38 channels (SMD), window 100, patch 10 (stride 10), d_model 128,
16 heads, 3 layers, FFN 256, mask ratio 0.4, dropout 0 on both; ours with its product decoder
defaults (`decoder_dim`, `decoder_depth`, cross-channel block).

At equal precision: both fp32, then both under bf16 autocast (`--precisions` picks; on a CPU
without bf16 units, bf16 is emulated and much slower than fp32 for both sides).

Training: windows/s of one AdamW step on the masked-reconstruction loss at batch 32 (ours
encodes the visible patches only; HF encodes hidden ones as zeros).
Inference: windows/s of a forward pass without gradients (nothing hidden) at batch 32 and 256.

Each side keeps its own design where the config does not say: ours is pre-LayerNorm with
learned positions, HF's default is BatchNorm with sin-cos positions. Instance scaling is off on
both (our product default, `revin: false`; HF `scaling=None`).

    .venv/bin/python benchmarks/peer_patchtst.py [--device cpu|cuda] [--rounds 5] [--threads N]
        [--quick] [--precisions fp32 bf16]

Needs `pip install -r requirements-bench.txt`. Prints `PRECISION: ratio_train=… ratio_infer=…`
per precision and ends with `ratio_train=… ratio_infer=…` (ours / theirs, medians; infer at
batch 32) at the precision `pipeline.precision: auto` gives on the device (fp32 on a CPU without
bf16 units), or the first one measured if that one was not."""
from __future__ import annotations

import timing  # first: it puts the project root on sys.path
from timing import Case, infer_step, train_step

import torch

from core.config import defaults
from core.timeseries.patchtst import PatchTST

CHANNELS, WINDOW, PATCH = 38, 100, 10
D_MODEL, HEADS, LAYERS, FFN, MASK_RATIO = 128, 16, 3, 256, 0.4
TRAIN_BATCH, INFER_BATCHES = 32, (32, 256)
# steps per turn: about a second each on a 2-core CPU
TRAIN_STEPS, INFER_STEPS = 3, {32: 6, 256: 1}
OURS, THEIRS = "ours PatchTST", "HF PatchTSTForPretraining"


def our_model() -> PatchTST:
    cfg = defaults("patchtst.model", patch_len=PATCH, d_model=D_MODEL, n_heads=HEADS,
                   n_layers=LAYERS, d_ff=FFN, dropout=0.0, mask_ratio=MASK_RATIO, revin=False,
                   variance_head=False)  # HF's model has none: like for like
    return PatchTST(cfg, CHANNELS, WINDOW)


def their_model() -> torch.nn.Module:
    from transformers import PatchTSTConfig, PatchTSTForPretraining
    cfg = PatchTSTConfig(
        num_input_channels=CHANNELS, context_length=WINDOW, patch_length=PATCH,
        patch_stride=PATCH, d_model=D_MODEL, num_attention_heads=HEADS,
        num_hidden_layers=LAYERS, ffn_dim=FFN, mask_type="random",
        random_mask_ratio=MASK_RATIO, do_mask_input=True, scaling=None,
        attention_dropout=0.0, positional_dropout=0.0, path_dropout=0.0, ff_dropout=0.0,
        head_dropout=0.0)
    return PatchTSTForPretraining(cfg)


def cases(runtime) -> dict[str, list[Case]]:
    """Benchmark label → the two sides' cases, models and data on the runtime's device, both
    under the runtime's autocast."""
    device, tag = runtime.device, runtime.precision
    ours, theirs = our_model().to(device), their_model().to(device)
    x = torch.randn(TRAIN_BATCH, WINDOW, CHANNELS, device=device)  # (B, L, C)
    out = {f"{tag} training, batch {TRAIN_BATCH} (windows/s)": [
        Case(OURS, train_step(ours, lambda m, x: m.loss(x), x, runtime), TRAIN_BATCH,
             TRAIN_STEPS),
        Case(THEIRS, train_step(theirs, lambda m, x: m(past_values=x).loss, x, runtime),
             TRAIN_BATCH, TRAIN_STEPS)]}
    for b in INFER_BATCHES:
        xb = torch.randn(b, WINDOW, CHANNELS, device=device)
        # ours sees every patch (the product's `full` scoring); HF's pretraining model always
        # hides patches and computes its loss (a few elementwise ops: negligible)
        out[f"{tag} inference, batch {b} (windows/s)"] = [
            Case(OURS, infer_step(ours, lambda m, x: m(x), xb, runtime), b, INFER_STEPS[b]),
            Case(THEIRS, infer_step(theirs, lambda m, x: m(past_values=x), xb, runtime), b,
                 INFER_STEPS[b])]
    return out


def main() -> None:
    ap = timing.common_args(__doc__.splitlines()[0])
    ap.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    args = ap.parse_args()
    auto = timing.setup(args, "patchtst")
    steps, warmup, rounds = (2, 1, 2) if args.quick else (None, 2, args.rounds)
    from core.devices import Runtime
    by_precision = {}
    for precision in args.precisions:
        runtime = Runtime(auto.device, precision)
        ratios = timing.measure(
            cases(runtime), runtime, rounds, warmup, steps, OURS, THEIRS,
            f"PatchTST vs HF, {CHANNELS} channels × window {WINDOW}, patch {PATCH}, d_model "
            f"{D_MODEL}, {HEADS} heads, {LAYERS} layers, FFN {FFN}, mask {MASK_RATIO}, dropout 0, "
            f"both {precision}")
        by_precision[precision] = list(ratios.values())[:2]  # training, inference at batch 32
        print()
    for precision, (train, infer) in by_precision.items():
        print(f"{precision}: {timing.ratio_line(train, infer)}")
    final = auto.precision if auto.precision in by_precision else args.precisions[0]
    print(f"at {final} (`auto` on this device: {auto.precision}):")
    print(timing.ratio_line(*by_precision[final]))


if __name__ == "__main__":
    main()
