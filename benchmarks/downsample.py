"""The chart downsampler (`core.downsample.minmax_indices`) against `tsdownsample`'s
MinMaxDownsampler (Rust, SIMD), on the sizes the console draws: one long series and a
multichannel signal, to 3000 points per channel.

    python benchmarks/downsample.py [--rows 1000000] [--channels 38] [--repeats 5]

Needs `pip install tsdownsample` for the comparison (not a dependency of the product); without
it, prints ours alone. Prints the median milliseconds per call of each."""
from __future__ import annotations

import argparse
import statistics
import time

import timing  # noqa: F401  (puts the project root on sys.path)

import numpy as np

from core.downsample import minmax_indices

POINTS = 3000


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def theirs(values: np.ndarray):
    """tsdownsample's indices for (T,) or each column of (T, C), or None when not installed."""
    try:
        from tsdownsample import MinMaxDownsampler
    except ImportError:
        return None
    sampler = MinMaxDownsampler()
    if values.ndim == 1:
        return lambda: sampler.downsample(values, n_out=POINTS)
    columns = [np.ascontiguousarray(values[:, c]) for c in range(values.shape[1])]
    return lambda: [sampler.downsample(col, n_out=POINTS) for col in columns]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--channels", type=int, default=38)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    cases = {f"{args.rows:,} rows x 1": rng.standard_normal(args.rows),
             f"{args.rows // 10:,} rows x {args.channels}":
                 rng.standard_normal((args.rows // 10, args.channels))}
    for name, values in cases.items():
        ours = median_ms(lambda: minmax_indices(values, POINTS), args.repeats)
        other = theirs(values)
        line = f"{name}: ours {ours:.1f} ms"
        if other is not None:
            ms = median_ms(other, args.repeats)
            line += f", tsdownsample {ms:.1f} ms (ours / theirs {ours / ms:.2f})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
