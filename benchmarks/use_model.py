"""Use a trained model end to end on real data, through the real CLI: `run` → `score` another
file → `export` → the exported predict.py in a bare process (no torch, not this project) on that
file; compares predict.py's scores.csv with the scoring run's (images: its `--maps` with the
scoring run's maps.npz too; time series: its `--channels` with the scoring run's
channel_scores.npz) and prints the time of each step.

    .venv/bin/python benchmarks/use_model.py --ts-data ../shared/datasets/smd/machine-1-2 \\
        --ts-score ../shared/datasets/smd/machine-1-3/test.csv.gz [--set KEY=VALUE ...]
    .venv/bin/python benchmarks/use_model.py --img-data ../shared/datasets/magnetic_tile \\
        --img-score ../shared/datasets/magnetic_tile --set swinmae.preset=tiny

Ends with `max_rel_diff=… flagged_mismatch=…` per stream (the export must give ≤ 1e-3
and 0; relative to the score, or to the score's spread where a fused log score crosses 0), and
for images `maps_max_rel_diff=…` (relative to the pixel's value or 1: float16 gives ~1e-3), for
time series `channels_max_rel_diff=…` (relative to the error or 1)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
BARE = ("import runpy, sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'core'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def timed(what: str, cmd: list[str], **kwargs) -> float:
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if res.returncode != 0:
        sys.exit(f"{what} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    took = time.time() - t0
    print(f"{what:<28} {took:8.1f} s")
    return took


def newest_run(ws: Path) -> Path:
    return max((p for p in (ws / "runs").iterdir() if p.is_dir()), key=lambda p: p.name)


def compare(stream: str, key: str, scored: Path, predicted: Path) -> None:
    ours, theirs = pd.read_csv(predicted), pd.read_csv(scored)
    assert ours[key].astype(str).tolist() == theirs[key].astype(str).tolist(), "rows differ"
    # relative to the score, or to its spread where a (fused, log) score crosses zero
    scale = np.maximum(np.abs(theirs["score"]), theirs["score"].std()).clip(1e-12)
    rel = (np.abs(ours["score"] - theirs["score"]) / scale).max()
    mismatch = int((ours["is_anomaly"] != theirs["is_anomaly"]).sum())
    print(f"{stream}: {len(ours)} rows, {int(ours['is_anomaly'].sum())} flagged; "
          f"max_rel_diff={rel:.2e} flagged_mismatch={mismatch}")


def compare_maps(scored: Path, predicted: Path) -> None:
    """predict.py's pixel maps against the scoring run's maps.npz, both float16."""
    with np.load(predicted) as ours, np.load(scored) as theirs:
        assert ours["files"].tolist() == theirs["files"].tolist(), "images differ"
        mine, run = (z["maps"].astype(np.float32) for z in (ours, theirs))
    rel = (np.abs(mine - run) / np.maximum(np.abs(run), 1.0)).max()
    print(f"swinmae maps: {mine.shape}, values up to {run.max():.1f}; maps_max_rel_diff={rel:.2e}")


def compare_channels(scored: Path, predicted: Path) -> None:
    """predict.py's per-channel errors against the scoring run's channel_scores.npz."""
    with np.load(scored) as npz:
        run, names = npz["errors"].astype(np.float64), [str(c) for c in npz["channels"]]
    mine = pd.read_csv(predicted)[names].to_numpy(dtype=np.float64)  # (T, C)
    rel = (np.abs(mine - run) / np.maximum(np.abs(run), 1.0)).max()
    print(f"patchtst channels: {mine.shape}; channels_max_rel_diff={rel:.2e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ts-data")
    p.add_argument("--ts-score", help="the file the scoring run and predict.py score")
    p.add_argument("--img-data")
    p.add_argument("--img-score", help="the image folder the scoring run and predict.py score")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--workdir", type=Path)
    args = p.parse_args()
    ws = args.workdir or Path(tempfile.mkdtemp(prefix="use-model-"))
    cli = [sys.executable, "-m", "core.pipeline"]
    sets = [x for s in args.set for x in ("--set", s)]
    data = [x for flag, v in (("--ts-data", args.ts_data), ("--img-data", args.img_data)) if v
            for x in (flag, v)]
    timed("run (train + score)", [*cli, "run", *data, *sets, "--workdir", str(ws)], cwd=REPO)
    model = newest_run(ws)
    new = [x for flag, v in (("--ts-data", args.ts_score), ("--img-data", args.img_score)) if v
           for x in (flag, str(Path(v).resolve()))]
    timed("score (another file)", [*cli, "score", str(model), *new], cwd=REPO)
    scoring = newest_run(ws)
    timed("export", [*cli, "export", str(model), "--out", str(ws / "exported")], cwd=REPO)
    env = {"PATH": os.environ["PATH"]} | {k: os.environ[k] for k in ("OMP_NUM_THREADS",)
                                           if k in os.environ}
    checks = (("patchtst", args.ts_score, "timestamp"), ("swinmae", args.img_score, "file"))
    for stream, source, key in checks:
        if not source:
            continue
        out, maps = ws / f"{stream}-predicted.csv", ws / f"{stream}-maps.npz"
        per_channel = ws / f"{stream}-channels.csv"
        more = ["--maps", str(maps)] if stream == "swinmae" else ["--channels", str(per_channel)]
        timed(f"{stream} predict.py (bare)",
              [sys.executable, "-I", "-c", BARE, str(ws / "exported" / stream / "predict.py"),
               str(Path(source).resolve()), "--out", str(out), *more], cwd=ws, env=env)
        scored = scoring / stream / "scores.csv"
        compare(stream, key if key in pd.read_csv(scored, nrows=1) else "index", scored, out)
        if stream == "swinmae":
            compare_maps(scoring / stream / "maps.npz", maps)
        else:
            compare_channels(scoring / stream / "channel_scores.npz", per_channel)
    print(f"workspace: {ws}")


if __name__ == "__main__":
    main()
