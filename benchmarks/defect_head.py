"""Where a defect-head training step spends its time on this CPU, and what channels-last
activations buy: one step of the `default` preset's head (batch 16, 128 px, grayscale, width 8)
split into making synthetic defects, the frozen Swin MAE's masked reconstruction, and the
head's forward + backward, the head in torch's default (contiguous) layout and channels-last,
interleaved, median of `--reps`.

    python benchmarks/defect_head.py [--reps 5] [--threads 1]

Ends with `channels_last_speedup=… recon_share=…` (the reconstruction's share of a
channels-last step)."""
from __future__ import annotations

import argparse
import statistics
import time

import timing  # noqa: F401  first: it puts the project root on sys.path
import torch

from core.images.defects import synthetic_defects
from core.images.head import DefectHead, focal_loss, head_input
from core.images.swinmae import SwinMAE, preset


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mae = SwinMAE(preset("default", in_chans=1)).eval()
    images = torch.rand(16, 1, 128, 128)  # (B, C, S, S)
    heads = {"contiguous": DefectHead(3, 8, channels_last=False),
             "channels_last": DefectHead(3, 8)}
    with_defects, masks = synthetic_defects(images)
    inputs = head_input(mae, with_defects)  # (B, 3, S, S)

    def step(head: DefectHead) -> None:
        focal_loss(head(inputs), masks).backward()

    times: dict[str, list[float]] = {k: [] for k in ("synth", "recon", *heads)}
    for _ in range(args.reps + 1):  # the first round warms up
        times["synth"].append(timed(lambda: synthetic_defects(images)))
        times["recon"].append(timed(lambda: head_input(mae, with_defects)))
        for name, head in heads.items():
            times[name].append(timed(lambda: step(head)))
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:>14}: {v * 1000:7.1f} ms per batch of 16")
    total = med["synth"] + med["recon"] + med["channels_last"]
    print(f"channels_last_speedup={med['contiguous'] / med['channels_last']:.2f} "
          f"recon_share={med['recon'] / total:.2f}")


if __name__ == "__main__":
    main()
