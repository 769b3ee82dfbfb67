"""Generate the bundled time-series sample: a made-up server's sensors, so a fresh install trains.

The data is ours and fully synthetic. Five channels of one server are sampled once a minute:

| channel    | unit | structure                                                              |
| ---------- | ---- | ---------------------------------------------------------------------- |
| `cpu_load` | %    | workload: periods of 240 and 90 steps plus a slow AR(1) drift           |
| `mem_used` | %    | its own 180-step cycle, nudged by the CPU load                          |
| `temp_c`   | °C   | follows the CPU load through a first-order lag (~10 steps)              |
| `fan_rpm`  | rpm  | follows the temperature linearly                                        |
| `net_mbps` | Mbps | a 60-step cycle plus a share of the CPU load                            |

Every channel carries small Gaussian sensor noise; values are rounded to 4 significant digits
so the files stay small (100-150 KB each).

- `train.csv`: `TRAIN_ROWS` rows of normal operation, from `2026-01-01 00:00:00`.
- `test.csv`: `TEST_ROWS` rows continuing one minute after train, the same columns plus `label`
  last (1 = anomalous row). The anomalies in `ANOMALIES` are injected into single channels as
  contiguous labelled segments: a spike, a level shift, a shape (frequency) change, a broken
  correlation (the fan stops following the temperature) and a noise burst.

Regenerate with `python data/make_samples.py [OUT_DIR]` (default: `data/samples/timeseries/`
next to this file). The seed is fixed, so two runs with the same numpy give byte-identical
files; `tests/test_samples.py` checks the committed files against a fresh run.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20260101
TRAIN_ROWS = 3000
TEST_ROWS = 2000
START = pd.Timestamp("2026-01-01 00:00:00")
CHANNELS = ("cpu_load", "mem_used", "temp_c", "fan_rpm", "net_mbps")
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "samples" / "timeseries"
SIGNIFICANT_DIGITS = 4


@dataclass(frozen=True)
class Anomaly:
    """One injected anomaly: `length` test rows from `start` (0-based test row) on `channel`."""

    kind: str  # one of INJECTORS' keys
    channel: str
    start: int
    length: int

    @property
    def rows(self) -> slice:
        """The test rows the anomaly covers (and that are labelled 1)."""
        return slice(self.start, self.start + self.length)


# Lengths are shorter than a "typical" incident so that all five together stay near 6 % of the
# test rows (the ratio the sample promises); starts are >= 150 and several hundred rows apart.
# The broken correlation sits on a steep rise of `temp_c` (about +12 degrees), so a fan that
# still followed it would climb ~500 rpm; a stuck fan is then clearly out of step.
ANOMALIES = (
    Anomaly("spike", "net_mbps", start=260, length=3),
    Anomaly("level_shift", "mem_used", start=560, length=32),
    Anomaly("shape_change", "cpu_load", start=900, length=40),
    Anomaly("broken_correlation", "fan_rpm", start=1300, length=32),
    Anomaly("noise_burst", "temp_c", start=1650, length=13),
)


def first_order_lag(x: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential smoothing `y[t] = y[t-1] + alpha * (x[t] - y[t-1])`, starting at `x[0]`.

    A thermal mass: `y` follows `x` with a delay of about `1 / alpha` steps. Shape (T,) -> (T,).
    """
    y = np.empty_like(x)
    y[0] = x[0]
    for t in range(1, len(x)):
        y[t] = y[t - 1] + alpha * (x[t] - y[t - 1])
    return y


def ar1(n_steps: int, phi: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """A stationary AR(1) series `e[t] = phi * e[t-1] + N(0, sigma)`, shape (n_steps,)."""
    shocks = rng.normal(0.0, sigma, n_steps)
    e = np.empty(n_steps)
    e[0] = shocks[0] / np.sqrt(1.0 - phi**2)  # start in the stationary distribution
    for t in range(1, n_steps):
        e[t] = phi * e[t - 1] + shocks[t]
    return e


def cycle(t: np.ndarray, period: float, phase: float = 0.0) -> np.ndarray:
    """`sin(2 pi t / period + phase)` for integer steps `t`."""
    return np.sin(2.0 * np.pi * t / period + phase)


def simulate_normal(n_steps: int, rng: np.random.Generator) -> pd.DataFrame:
    """Normal operation of the server for `n_steps` minutes: a frame with `CHANNELS` columns.

    Train and test are cut from one simulation, so test continues train without a jump.
    """
    t = np.arange(n_steps, dtype=float)
    noise = {name: rng.normal(0.0, 1.0, n_steps) for name in CHANNELS}
    cpu = 45.0 + 20.0 * cycle(t, 240) + 8.0 * cycle(t, 90, 1.0) + ar1(n_steps, 0.98, 0.6, rng)
    cpu = np.clip(cpu + 1.5 * noise["cpu_load"], 2.0, 99.0)
    mem = 60.0 + 6.0 * cycle(t, 180, 2.0) + 0.15 * (cpu - 45.0) + 0.5 * noise["mem_used"]
    # The die heats towards a CPU-dependent target with a ~10-step thermal lag.
    temp = first_order_lag(30.0 + 0.45 * cpu, alpha=0.1) + 0.2 * noise["temp_c"]
    fan = 800.0 + 45.0 * temp + 20.0 * noise["fan_rpm"]
    net = 120.0 + 40.0 * cycle(t, 60, 0.5) + 0.8 * (cpu - 45.0) + 5.0 * noise["net_mbps"]
    net = np.clip(net, 1.0, None)
    return pd.DataFrame(dict(zip(CHANNELS, (cpu, mem, temp, fan, net))))


def add_spike(x: np.ndarray, rows: slice, rng: np.random.Generator) -> None:
    """A few readings jump far above the normal range (here +300..400 on top of ~120 Mbps)."""
    n = rows.stop - rows.start
    x[rows] += rng.uniform(300.0, 400.0, n)


def shift_level(x: np.ndarray, rows: slice, rng: np.random.Generator) -> None:
    """The channel's level moves up by a constant (~2 train std of `mem_used`) and back."""
    x[rows] += 10.0


def change_shape(x: np.ndarray, rows: slice, rng: np.random.Generator) -> None:
    """The slow cycle gives way to a fast one (period 10) of similar amplitude, same mean."""
    n = rows.stop - rows.start
    local_mean = x[rows].mean()
    x[rows] = local_mean + 18.0 * cycle(np.arange(n, dtype=float), 10) + rng.normal(0.0, 1.5, n)


def break_correlation(x: np.ndarray, rows: slice, rng: np.random.Generator) -> None:
    """The fan sticks at its speed at the segment start (plus sensor noise) while temp moves on."""
    n = rows.stop - rows.start
    x[rows] = x[rows.start] + rng.normal(0.0, 20.0, n)


def burst_noise(x: np.ndarray, rows: slice, rng: np.random.Generator) -> None:
    """Sensor noise grows ~20-fold (std 4 instead of 0.2) for a short while."""
    n = rows.stop - rows.start
    x[rows] += rng.normal(0.0, 4.0, n)


INJECTORS = {
    "spike": add_spike,
    "level_shift": shift_level,
    "shape_change": change_shape,
    "broken_correlation": break_correlation,
    "noise_burst": burst_noise,
}


def inject_anomalies(
    test: pd.DataFrame, anomalies: tuple[Anomaly, ...], rng: np.random.Generator
) -> pd.DataFrame:
    """A copy of `test` with each anomaly applied to its channel and a `label` column (0/1) last."""
    out = test.copy()
    label = np.zeros(len(out), dtype=np.int64)
    for anomaly in anomalies:
        values = out[anomaly.channel].to_numpy(copy=True)
        INJECTORS[anomaly.kind](values, anomaly.rows, rng)
        out[anomaly.channel] = values
        label[anomaly.rows] = 1
    out["label"] = label
    return out


def round_significant(x: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Round each value to `digits` significant digits (zeros stay zero)."""
    magnitude = np.floor(np.log10(np.abs(np.where(x == 0, 1.0, x))))
    scale = 10.0 ** (digits - 1 - magnitude)
    return np.round(x * scale) / scale


def with_timestamps(frame: pd.DataFrame, first_step: int) -> pd.DataFrame:
    """`frame` with channels rounded and a `timestamp` column first (one-minute steps)."""
    stamps = pd.date_range(START + pd.Timedelta(minutes=first_step), periods=len(frame), freq="min")
    out = frame.copy()
    for name in CHANNELS:
        out[name] = round_significant(out[name].to_numpy())
    out.insert(0, "timestamp", stamps.strftime("%Y-%m-%d %H:%M:%S"))
    return out


def build_samples(seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (train, test) frames exactly as written: train is normal, test carries `label`."""
    rng = np.random.default_rng(seed)
    normal = simulate_normal(TRAIN_ROWS + TEST_ROWS, rng)
    train = normal.iloc[:TRAIN_ROWS].reset_index(drop=True)
    test = normal.iloc[TRAIN_ROWS:].reset_index(drop=True)
    test = inject_anomalies(test, ANOMALIES, rng)
    return with_timestamps(train, 0), with_timestamps(test, TRAIN_ROWS)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` with `\\n` line ends and `%.4g` numbers, so output is the same on every OS."""
    # %.4g prints the already-rounded values exactly; every channel stays in [1e-4, 1e4), where
    # %g never switches to exponent notation.
    frame.to_csv(path, index=False, lineterminator="\n", float_format=f"%.{SIGNIFICANT_DIGITS}g")


def main(out_dir: Path = DEFAULT_OUT_DIR) -> dict[str, Path]:
    """Write `train.csv` and `test.csv` into `out_dir` (created if missing), print a summary.

    Returns the written paths by name (`"train"`, `"test"`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, test = build_samples()
    paths = {"train": out_dir / "train.csv", "test": out_dir / "test.csv"}
    write_csv(train, paths["train"])
    write_csv(test, paths["test"])
    print(f"channels ({len(CHANNELS)}): {', '.join(CHANNELS)}")
    print(f"train: {len(train)} rows -> {paths['train']} ({paths['train'].stat().st_size:,} B)")
    print(
        f"test:  {len(test)} rows, {len(ANOMALIES)} anomalies, anomaly ratio "
        f"{test['label'].mean():.2%} -> {paths['test']} ({paths['test'].stat().st_size:,} B)"
    )
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=DEFAULT_OUT_DIR,
                        help="folder for train.csv and test.csv (default: %(default)s)")
    main(parser.parse_args().out_dir)
