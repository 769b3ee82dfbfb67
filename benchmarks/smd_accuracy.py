"""Accuracy on the Server Machine Dataset: train and score PatchTST on each of the four SMD
machines in `../shared/datasets/smd`, through the real CLI, and print the model's and both
baselines' AUPRC, best F1, AUROC and point-adjusted F1 per machine and on average.

    python benchmarks/smd_accuracy.py [--set patchtst.train.epochs=5 ...] [--machines machine-1-2]

Ends with one line `mean_auprc=… pca_mean_auprc=…`. Runs go to a temporary workspace unless
`--workdir` is given. PA-F1 is only for comparison with published tables (it flatters every
detector); AUPRC is the headline."""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from cli import ROOT, run_pipeline
SMD = ROOT.parent / "shared" / "datasets" / "smd"
MACHINES = ["machine-1-2", "machine-1-3", "machine-2-1", "machine-3-2"]
KEYS = ["auprc", "best_f1", "auroc", "pa_f1"]


def run_machine(machine: str, overrides: list[str], workdir: Path) -> tuple[dict, float]:
    run, wall = run_pipeline(["--ts-data", str(SMD / machine)], workdir / machine,
                             f"smd-bench {machine}", overrides)
    return json.loads((run / "patchtst" / "metrics.json").read_text()), wall


def fmt(v) -> str:
    return "  n/a" if v is None else f"{v:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--machines", nargs="+", default=MACHINES)
    p.add_argument("--workdir", type=Path)
    args = p.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="smd-bench-"))
    rows, header = [], ["machine", "wall_s"] + [f"{who}.{k}" for who in ("model", "pca", "random")
                                                   for k in KEYS]
    print("overrides:", " ".join(args.set) or "(defaults)", "| workspace:", workdir)
    print(" ".join(f"{h:>12}" for h in header))
    for machine in args.machines:
        m, wall = run_machine(machine, args.set, workdir)
        values = [m.get(k) for k in KEYS] + [m["baselines"][b].get(k) for b in ("pca", "random")
                                             for k in KEYS]
        rows.append(values)
        print(f"{machine:>12} {wall:>12.0f} " + " ".join(f"{fmt(v):>12}" for v in values),
              flush=True)
    means = [sum(col) / len(col) for col in zip(*rows)]
    print(f"{'mean':>12} {'':>12} " + " ".join(f"{fmt(v):>12}" for v in means))
    print(f"mean_auprc={means[0]:.4f} pca_mean_auprc={means[len(KEYS)]:.4f}")


if __name__ == "__main__":
    main()
