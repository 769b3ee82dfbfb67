"""Achieved GFLOP/s of PatchTST and Swin MAE steps, as a share of a large matmul on the same
machine.

Ceiling: a square matmul (2048³ fp32 on a CPU, with the threads torch uses; 8192³ on CUDA,
where 2048³ does not fill the GPU, in fp32 and bf16), 2·n³ FLOP per product.

Models (random weights, random inputs; throughput does not depend on them):
- PatchTST: 38 channels, window 100, patch 10, d_model 128, 16 heads, 3 layers, FFN 256, mask
  0.4, batch 32 (`../shared/PERF.md`'s peer configuration);
- Swin MAE: `core.images.swinmae.preset('base')` (Swin-T encoder, 256 px) and the `default`
  preset (128 px), RGB, batch 8.

FLOPs are counted once per model by `torch.utils.flop_counter.FlopCounterMode`: a training step
is `model.loss(x)` forward + backward (the optimizer's element-wise update is not counted: the
counter counts matmuls, convolutions and attention, the usual "model FLOPs"); inference is one
forward `model(x)` without a mask under `no_grad` (one scoring pass). Timing: a training step is
zero_grad, forward, backward, AdamW step (as `core.training.fit`, without clipping); inference
the forward. On CUDA both run under bf16 autocast, the product's policy there (`core.devices`),
with a synchronize before each clock read. Every measurement is repeated over `--rounds`
interleaved rounds (each round times every item once, so a load spike on the shared machine
hits all of them alike); the table shows medians and the 10–90 % spread; `% <dtype>` is the
median over rounds of the item's GFLOP/s divided by the matmul's in the same round (fp32, and on
CUDA also bf16), `best` the same ratio from each one's fastest call.

    python benchmarks/flops.py [--device cpu|cuda] [--rounds 7] [--quick]

`--quick`: 3 rounds. ~3 minutes on a 2-core CPU. Ends with
`patchtst_train_pct=… swin_train_pct=…` (Swin: the `base` preset; % of the fp32 matmul on a
CPU, of the bf16 matmul on CUDA).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from cli import ROOT  # noqa: F401  (puts the project root on sys.path)

from core.config import defaults
from core.devices import Runtime
from core.images.swinmae import SwinMAE, preset
from core.timeseries.patchtst import PatchTST


@dataclasses.dataclass
class Item:
    """One timed thing: a closure, and the FLOPs one call does."""
    name: str
    fn: Callable[[], None]
    flop: float
    ceiling: bool = False  # a matmul: the reference rate


def count_flop(fn: Callable[[], None]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


# ---------------------------------------------------------------- what is timed

def matmul(n: int, dtype: torch.dtype, device: torch.device) -> Item:
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))  # (n, n)
    name = f"matmul {n}³ {str(dtype).removeprefix('torch.')}"
    return Item(name, lambda: a @ b, 2.0 * n**3, ceiling=True)


def model_items(name: str, model: torch.nn.Module, x: torch.Tensor,
                device: torch.device) -> list[Item]:
    """A training step and an inference pass of `model` on the batch `x`."""
    model.to(device).train()
    x = x.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def forward_backward() -> None:
        with Runtime.on(device).autocast():
            loss = model.loss(x)
        loss.backward()

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        forward_backward()
        opt.step()

    @torch.no_grad()
    def infer() -> None:
        with Runtime.on(device).autocast():
            model(x)

    train_flop = count_flop(forward_backward)
    model.zero_grad(set_to_none=True)
    return [Item(f"{name} train", train, train_flop), Item(f"{name} infer", infer,
                                                             count_flop(infer))]


def patchtst(device: torch.device) -> list[Item]:
    cfg = defaults("patchtst.model", patch_len=10, d_model=128, n_heads=16, n_layers=3,
                   d_ff=256, mask_ratio=0.4)
    x = torch.randn(32, 100, 38)  # (B, L, C)
    return model_items("patchtst", PatchTST(cfg, 38, 100), x, device)


def swin(name: str, device: torch.device) -> list[Item]:
    cfg = preset(name, in_chans=3)
    x = torch.randn(8, 3, cfg.image_size, cfg.image_size)  # (B, C, H, W)
    return model_items(f"swin-{name} {cfg.image_size}px", SwinMAE(cfg), x, device)


def seconds(item: Item, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    item.fn()
    sync()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- report

def print_table(items: list[Item], times: dict[str, list[float]], ceilings: list[Item]) -> dict:
    """One row per item; returns {name: % of the last ceiling}. A share is the median over rounds
    of (item's GFLOP/s ÷ the ceiling's GFLOP/s in the same round): a load spike that slows one
    round slows both, so the ratio is steadier than a ratio of medians. `best` is the same from
    the fastest call of each (closest to an idle machine)."""
    def rates(it: Item) -> np.ndarray:  # (rounds,) GFLOP/s
        return it.flop / np.array(times[it.name]) / 1e9
    heads = "".join(f" {'% ' + c.name.split()[-1]:>9} {'best':>5}" for c in ceilings)
    print(f"\n{'':<24} {'GFLOP':>9} {'ms med':>9} {'[p10-p90]':>17} {'GFLOP/s':>9}{heads}")
    pct = {}
    for it in items:
        t = np.array(times[it.name]) * 1000
        shares = [(np.median(rates(it) / rates(c)) * 100, rates(it).max() / rates(c).max() * 100)
                  for c in ceilings]
        pct[it.name] = shares[-1][0]
        spread = f"[{np.percentile(t, 10):.1f}-{np.percentile(t, 90):.1f}]"
        print(f"{it.name:<24} {it.flop / 1e9:>9.2f} {np.median(t):>9.1f} {spread:>17} "
              f"{np.median(rates(it)):>9.1f}" + "".join(f" {s:>9.1f} {b:>5.1f}" for s, b in shares))
    return pct


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device)
    rounds = 3 if args.quick else args.rounds
    torch.manual_seed(0)
    if device.type == "cuda":
        ceilings = [matmul(8192, torch.float32, device), matmul(8192, torch.bfloat16, device)]
        where = torch.cuda.get_device_name(device)
    else:
        ceilings = [matmul(2048, torch.float32, device)]
        where = f"cpu, {torch.get_num_threads()} threads"
    base, default = swin("base", device), swin("default", device)
    models = patchtst(device) + base + default
    items = ceilings + models
    times: dict[str, list[float]] = {it.name: [] for it in items}
    for it in items:  # warm-up: allocator, kernels, autotuning
        seconds(it, device)
    for r in range(rounds):
        for it in items:
            times[it.name].append(seconds(it, device))
        print(f"round {r + 1}/{rounds} done", flush=True)
    print(f"{where}, torch {torch.__version__}; medians of {rounds} interleaved rounds")
    pct = print_table(items, times, ceilings)
    print(f"patchtst_train_pct={pct['patchtst train']:.1f} "
          f"swin_train_pct={pct[base[0].name]:.1f} "
          f"swin_default_train_pct={pct[default[0].name]:.1f} "
          f"patchtst_infer_pct={pct['patchtst infer']:.1f}")


if __name__ == "__main__":
    main()
