"""Streamed time-series scoring at scale: a 1,000,000-row × 38-channel CSV.

Writes a deterministic synthetic CSV (sines with per-channel periods and phases, Gaussian noise,
a few planted level shifts; no timestamp column) of `--rows` rows and one of `--small-rows`
rows, loads each with the product's loader (`core.timeseries.data.load_ts_dataset`), normalises
it with `core.timeseries.windows.Normalizer` as the score stage does, and scores it with
`core.timeseries.scoring.channel_errors` + `step_scores` in both modes (`full`, `masked`). The
model is a PatchTST at the default config (`core.config.load_config().patchtst`), randomly
initialised: throughput and memory do not depend on the weights, so no training is needed.

Measured per (rows, mode):
- scoring wall time and rows/s; per-batch time (median and 10–90 % spread), taken from the
  `should_stop` callback that `channel_errors` calls once per batch;
- peak memory: the process's peak RSS growth over the scoring call. The kernel's high-water mark
  is reset just before the call (`echo 5 > /proc/self/clear_refs`), and `VmHWM` read after it,
  minus the RSS before it. tracemalloc cannot see torch's allocations; this sees everything. If
  the reset is not allowed, a thread samples `VmRSS` every 2 ms instead (can miss short peaks).
  On CUDA, also `torch.cuda.max_memory_allocated`.

Bounded memory: the scoring peak is one batch of windows through the model plus the (T, C)
float64 accumulator, its (T,) counts and the (T, C) float32 result. The batch part is constant;
the accumulator part grows linearly with T (it *is* the output: 1M × 38 × (8 + 4) bytes ≈
0.46 GB at the end; the division by the counts is in place). So at 10× the rows the peak grows
by the accumulator only, far from 10×, and far below what materialising every window at once
would take (computed in the last table: windows, their errors, and one activation of the model).

Cost: a default-stride (10) run scores ~100,000 windows per million rows; a 2-core CPU does
~300 windows/s in `full` mode and ~100 in `masked` (3 complementary masks), so the whole default
would take 5–15 minutes there. On a CPU the script therefore scores with stride = window
(non-overlapping windows, 10× less work) unless `--stride` is given, and runs `masked` only at the
small size unless `--big-modes` says otherwise: per-batch memory does not depend on the stride or
T, and the accumulator is (T, C) either way, so the memory comparison holds; the default-stride
time is projected from the measured time per window (`proj. s`). On CUDA the default stride and
both modes at both sizes run for real. About 3–4 minutes on a 2-core CPU.

    python benchmarks/score_scale.py [--rows 1000000] [--small-rows 100000] [--stride N]
        [--modes full,masked] [--big-modes MODES] [--device cpu|cuda] [--workdir DIR] [--quick]

`--quick`: 200,000 and 20,000 rows. Ends with `score_1m_s=… peak_mb=…`: the `full`-mode scoring
time of the larger size at the stride used, scaled to 1,000,000 rows if `--rows` differs, and
its peak RSS growth (the larger over the modes run there); then the stride, rows and the
large/small peak ratio.
"""
from __future__ import annotations

import argparse
import gc
import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from cli import ROOT  # noqa: F401  (puts the project root on sys.path)

from core.config import load_config
from core.devices import Runtime
from core.streams import STREAMS
from core.timeseries.data import load_ts_dataset
from core.timeseries.patchtst import PatchTST
from core.timeseries.scoring import channel_errors, step_scores
from core.timeseries.windows import Normalizer, window_starts

CHANNELS = 38
MB = 2**20


# ---------------------------------------------------------------- data

def write_csv(path: Path, rows: int, seed: int = 0, chunk: int = 100_000) -> None:
    """A (rows, CHANNELS) CSV with header c0..c37, written in chunks (constant memory)."""
    rng = np.random.default_rng(seed)
    period = rng.uniform(50, 2000, CHANNELS)  # (C,)
    phase = rng.uniform(0, 2 * np.pi, CHANNELS)  # (C,)
    shifts = rng.integers(0, rows, 5)  # planted level shifts, 500 rows each
    with open(path, "w") as f:
        f.write(",".join(f"c{j}" for j in range(CHANNELS)) + "\n")
        for i0 in range(0, rows, chunk):
            t = np.arange(i0, min(rows, i0 + chunk))[:, None]  # (n, 1)
            noise = 0.1 * rng.standard_normal((len(t), CHANNELS))
            x = np.sin(2 * np.pi * t / period + phase) + noise  # (n, C)
            for s in shifts:
                x[(t[:, 0] >= s) & (t[:, 0] < s + 500)] += 3.0
            np.savetxt(f, x, fmt="%.4f", delimiter=",")


def load(path: Path) -> tuple[np.ndarray, float]:
    """The product's loader, then train-fitted normalisation → ((T, C) float32, load seconds)."""
    t0 = time.perf_counter()
    values = load_ts_dataset(path).train.values  # (T, C) float32
    seconds = time.perf_counter() - t0
    return Normalizer.fit(values)(values), seconds


# ---------------------------------------------------------------- memory

def _status_mb(key: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) / 1024


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """`with PeakRSS() as p:` → p.growth_mb, peak RSS over the block minus the RSS before it."""

    def __enter__(self):
        gc.collect()
        self.hwm = _reset_hwm()
        self.before = _status_mb("VmRSS")
        self.sampled, self._done = self.before, threading.Event()
        if not self.hwm:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.002):
            self.sampled = max(self.sampled, _status_mb("VmRSS"))

    def __exit__(self, *exc):
        self._done.set()
        peak = _status_mb("VmHWM") if self.hwm else self.sampled
        self.growth_mb = peak - self.before


# ---------------------------------------------------------------- scoring

def score(model: PatchTST, values: np.ndarray, score_cfg, device: torch.device) -> dict:
    """One streamed scoring of (T, C) values: wall s, per-batch times, peak RSS growth."""
    marks = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)

    def tick() -> bool:  # channel_errors calls this once before each batch
        marks.append(time.perf_counter())
        return False

    with PeakRSS() as mem:
        t0 = time.perf_counter()
        errors = channel_errors(model, values, score_cfg, device, tick)  # (T, C)
        scores = step_scores(errors)  # (T,)
        marks.append(time.perf_counter())
        wall = marks[-1] - t0
    assert scores.shape == (len(values),) and np.isfinite(scores).all()
    batch_s = np.diff(marks)  # (n_batches,): the last ends with the call (the final division)
    gpu = torch.cuda.max_memory_allocated(device) / MB if device.type == "cuda" else None
    return {"wall": wall, "batch_s": batch_s, "peak_mb": mem.growth_mb, "gpu_mb": gpu,
            "hwm": mem.hwm}


def materialised_gb(rows: int, window: int, stride: int, mcfg) -> dict[str, float]:
    """Bytes of scoring every window at once: the windows (fp32), their errors (fp64, as the
    accumulator takes them) and one (tokens, d_model) fp32 activation of the model."""
    n = len(window_starts(rows, window, stride))
    tokens = n * CHANNELS * (window // mcfg.patch_len)
    return {"windows": n, "inputs_gb": n * window * CHANNELS * 4 / 1e9,
            "errors_gb": n * window * CHANNELS * 8 / 1e9,
            "activation_gb": tokens * mcfg.d_model * 4 / 1e9}


# ---------------------------------------------------------------- report

def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def print_tables(results: dict, loads: dict, window: int, stride: int, default_stride: int,
                 mcfg) -> None:
    print(f"\n{'rows':>9} {'load s':>7} {'mode':>6} {'windows':>8} {'score s':>8} {'rows/s':>8} "
          f"{'ms/batch med [p10-p90]':>24} {'peak MB':>8} {'GPU MB':>7} "
          f"{'proj. s @stride ' + str(default_stride):>18}")
    for (rows, mode), r in results.items():
        n = len(window_starts(rows, window, stride))
        proj = r["wall"] * len(window_starts(rows, window, default_stride)) / n
        b = r["batch_s"] * 1000
        spread = f"{np.median(b):.0f} [{pct(b, 10):.0f}-{pct(b, 90):.0f}]"
        gpu = f"{r['gpu_mb']:.0f}" if r["gpu_mb"] is not None else "-"
        print(f"{rows:>9,} {loads[rows]:>7.1f} {mode:>6} {n:>8,} {r['wall']:>8.1f} "
              f"{rows / r['wall']:>8,.0f} {spread:>24} {r['peak_mb']:>8.0f} {gpu:>7} {proj:>18.0f}")
    print(f"\nmaterialising every window at once (stride {stride}), vs the measured streamed peak:")
    for rows in loads:
        m = materialised_gb(rows, window, stride, mcfg)
        peak = max(r["peak_mb"] for (n, _), r in results.items() if n == rows) * MB / 1e9
        print(f"  {rows:>9,} rows: {m['windows']:,} windows → inputs {m['inputs_gb']:.2f} GB + "
              f"errors {m['errors_gb']:.2f} GB + one d_model activation "
              f"{m['activation_gb']:.1f} GB; streamed peak {peak:.2f} GB")
    accumulator = {rows: rows * CHANNELS * (8 + 4) / MB for rows in loads}
    print("  (T, C) float64 accumulator + float32 result: "
          + ", ".join(f"{r:,} rows {mb:.0f} MB" for r, mb in accumulator.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--small-rows", type=int, default=100_000)
    p.add_argument("--stride", type=int, help="scoring stride (default: the config's on CUDA, "
                   "the window on CPU; see the module docstring)")
    p.add_argument("--modes", default="full,masked", help="score modes at --small-rows")
    p.add_argument("--big-modes", help="score modes at --rows (default: --modes on CUDA, "
                   "'full' on CPU, where 'masked' at 1M rows alone takes ~6 minutes)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--quick", action="store_true", help="200,000 and 20,000 rows")
    args = p.parse_args()
    if args.quick:
        args.rows, args.small_rows = 200_000, 20_000
    device = torch.device(args.device)
    args.big_modes = args.big_modes or (args.modes if device.type == "cuda" else "full")
    cfg = load_config().patchtst
    window, default_stride = cfg.data.window, cfg.score.stride
    stride = args.stride or (default_stride if device.type == "cuda" else window)
    torch.manual_seed(0)
    model = PatchTST(cfg.model, CHANNELS, window)  # random weights: throughput only
    runtime = Runtime.on(device, STREAMS["patchtst"].cpu_bf16)  # PatchTST at `auto`: fp32 on a CPU
    print(f"device {runtime.describe()} | PatchTST {cfg.model} | window {window}, "
          f"score batch {cfg.score.batch_size}, stride {stride} (config {default_stride})")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        loads, results = {}, {}
        for rows in (args.small_rows, args.rows):
            path = workdir / f"synthetic_{rows}x{CHANNELS}.csv"
            if not path.exists():
                t0 = time.perf_counter()
                write_csv(path, rows)
                print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
            values, loads[rows] = load(path)
            modes = args.modes if rows == args.small_rows else args.big_modes
            for mode in modes.split(","):
                score_cfg = cfg.score.model_copy(update={"mode": mode, "stride": stride})
                results[rows, mode] = r = score(model, values, score_cfg, device)
                print(f"  {rows:,} rows {mode}: {r['wall']:.1f} s, peak +{r['peak_mb']:.0f} MB"
                      f"{'' if r['hwm'] else ' (sampled)'}", flush=True)
            del values
    print_tables(results, loads, window, stride, default_stride, cfg.model)
    big = [r for (n, _), r in results.items() if n == args.rows]
    small = [r for (n, _), r in results.items() if n == args.small_rows]
    ratio = max(r["peak_mb"] for r in big) / max(max(r["peak_mb"] for r in small), 1)
    print(f"\npeak growth {args.rows // args.small_rows}× rows → {ratio:.1f}× scoring peak")
    full = results.get((args.rows, "full"), big[0])
    print(f"score_1m_s={full['wall'] * 1_000_000 / args.rows:.1f} "
          f"peak_mb={max(r['peak_mb'] for r in big):.0f} stride={stride} rows={args.rows} "
          f"peak_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
