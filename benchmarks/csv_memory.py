"""Peak memory of checking a large time-series CSV (what the Data page and prepare_data do).

Writes a CSV shaped like SMD (a timestamp and 38 float channels) of about `--mb` MB, then loads
it with `core.timeseries.data.load_ts_dataset` in a fresh process and reports that process's
peak RSS, the ratio to the file's size, and `memory_needed`'s estimate made before loading.

    .venv/bin/python benchmarks/csv_memory.py [--mb 200] [--channels 38]

Ends with `csv_mb=… peak_rss_mb=… rss_per_file_byte=… estimate_mb=…`.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import resource, sys, time
from core.timeseries.data import load_ts_dataset, memory_needed
rows, need = memory_needed(sys.argv[1])
t0 = time.perf_counter()
ds = load_ts_dataset(sys.argv[1])
took = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(ds.train.values.shape[0], ds.train.values.shape[1], peak, need, took)
"""


def write_csv(path: Path, mb: float, channels: int) -> None:
    """About `mb` MB of `timestamp,c0..cN` rows, written in blocks (never all in memory)."""
    rng = np.random.default_rng(0)
    block, start = 20_000, pd.Timestamp("2026-01-01")
    header = True
    with open(path, "w") as f:
        while f.tell() < mb * 1e6:
            stamps = pd.date_range(start, periods=block, freq="s")
            frame = pd.DataFrame(rng.standard_normal((block, channels)).round(5),
                                 columns=[f"c{i}" for i in range(channels)])
            frame.insert(0, "timestamp", stamps.astype(str))
            frame.to_csv(f, index=False, header=header)
            header, start = False, stamps[-1] + pd.Timedelta(seconds=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--channels", type=int, default=38)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.csv"
        write_csv(path, args.mb, args.channels)
        size = path.stat().st_size
        out = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.split()
    rows, cols, peak, need, took = int(out[0]), int(out[1]), int(out[2]), int(out[3]), float(out[4])
    print(f"file      {size / 1e6:8.1f} MB  ({rows:,} rows × {cols} channels)")
    print(f"peak RSS  {peak / 1e6:8.1f} MB  ({peak / size:.2f} bytes per file byte)")
    print(f"estimate  {need / 1e6:8.1f} MB  (memory_needed, before loading)")
    print(f"load time {took:8.1f} s")
    print(f"csv_mb={size / 1e6:.0f} peak_rss_mb={peak / 1e6:.0f} "
          f"rss_per_file_byte={peak / size:.2f} estimate_mb={need / 1e6:.0f}")


if __name__ == "__main__":
    main()
