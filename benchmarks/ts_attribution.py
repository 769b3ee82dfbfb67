"""Do the channels Results names behind an anomaly match the channels SMD's authors named?

Reads finished runs of the SMD machines made by `ts_accuracy.py` (its `--workdir`) and, for each
labelled anomaly segment in `interpretation_label.txt`, ranks the channels by their summed
contribution over the segment, as Results' top anomalies do. Three rankings: the product's
(`TSResults.contributions`: each channel's scaled error above its mean on normal validation
data), the scaled errors themselves (what Results ranked before), and the PCA baseline's
per-channel squared residual. Prints per machine and the mean:

- HitRate@100 % / @150 % (as in the OmniAnomaly paper): of a segment's G labelled channels,
  the share found among the top G (1.5 G) ranked;
- precision@3: the share of the (up to) three channels Results names that are labelled;
- top-1: whether the first channel named is labelled.

    .venv/bin/python benchmarks/ts_attribution.py --workdir DIR   # DIR: ts_accuracy.py's
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from cli import ROOT
from core.config import read_config
from core.timeseries.baselines import PCAFit
from core.timeseries.results import TOP_CHANNELS, TSResults, load_ts_results
from core.timeseries.stages import load

SMD = ROOT.parent / "shared" / "datasets" / "smd"
KEYS = ("HitRate@100", "HitRate@150", "precision@3", "top-1")


def labelled_segments(machine: str) -> list[tuple[int, int, set[int]]]:
    """(start, stop, channel indices) per line `start-end:d1,d2,…` (rows [start, end), channels
    1-based) of the machine's interpretation_label.txt."""
    out = []
    for line in (SMD / machine / "interpretation_label.txt").read_text().split():
        span, dims = line.split(":")
        start, stop = map(int, span.split("-"))
        out.append((start, stop, {int(d) - 1 for d in dims.split(",")}))
    return out


def hits(contributions: np.ndarray, segments: list[tuple[int, int, set[int]]]) -> list[float]:
    """The KEYS, averaged over segments, of a (T, C) contribution ranked per segment."""
    per_segment = []
    for start, stop, labelled in segments:
        sums = contributions[start:stop].sum(axis=0)  # (C,)
        ranked = np.argsort(-sums, kind="stable")  # (C,)
        named = [c for c in ranked[:TOP_CHANNELS] if sums[c] > 0]  # as Results names them
        per_segment.append([
            len(set(ranked[:len(labelled)]) & labelled) / len(labelled),
            len(set(ranked[:int(1.5 * len(labelled))]) & labelled) / len(labelled),
            len(set(named) & labelled) / max(len(named), 1),
            float(bool(named) and named[0] in labelled)])
    return np.mean(per_segment, axis=0).tolist()


def with_normal(res: TSResults, run: Path) -> TSResults:
    """A run scored before scoring.json recorded `channel_normal`: the same figure from the
    validation errors its channel_scores.npz keeps."""
    if res.channel_normal:
        return res
    with np.load(run / "patchtst" / "channel_scores.npz") as npz:
        normal = npz["val_errors"].astype(np.float64).mean(axis=0)  # (C,)
    return replace(res, channel_normal=dict(zip(res.channels, normal.tolist())))


def pca_residuals(run: Path) -> np.ndarray:
    """(T, C) squared residual of the run's fused PCA on its scored rows."""
    data, _ = load(read_config(run / "run.yaml"))
    with np.load(run / "patchtst" / "pca.npz") as npz:
        return PCAFit(npz["mean"], npz["axes"]).channel_residuals(data.target_values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="ts_accuracy.py's workdir")
    args = parser.parse_args()
    machines = sorted(p.name for p in args.workdir.glob("machine-*"))
    if not machines:
        raise SystemExit(f"{args.workdir}: no machine-* runs of ts_accuracy.py")
    rankings = ("contributions (now)", "scaled errors (before)", "PCA residual")
    table = {name: [] for name in rankings}
    print(f"{'machine':>12} {'segments':>8}  " + "  ".join(f"{k:>11}" for k in KEYS))
    for machine in machines:
        run = max((args.workdir / machine / "runs").glob("2*"))
        res, segments = with_normal(load_ts_results(run), run), labelled_segments(machine)
        for name, values in zip(rankings, (res.contributions, res.errors, pca_residuals(run))):
            table[name].append(hits(values, segments))
        print(f"{machine:>12} {len(segments):>8}  "
              + "  ".join(f"{v:>11.3f}" for v in table[rankings[0]][-1]), flush=True)
    print("\nmean over machines")
    for name in rankings:
        print(f"{name:>24}  " + "  ".join(f"{k} {v:.3f}" for k, v in
                                          zip(KEYS, np.mean(table[name], axis=0))))
    now = np.mean(table[rankings[0]], axis=0)
    print(f"hitrate150={now[1]:.4f} top1={now[3]:.4f}")


if __name__ == "__main__":
    main()
