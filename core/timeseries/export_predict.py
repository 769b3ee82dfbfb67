"""Score a CSV with an exported PatchTST model: `python predict.py DATA.csv --out scores.csv`.

Needs only numpy, pandas and onnxruntime; model.onnx and model.json sit beside this file. The
steps are those of the run that was exported: the channels named in model.json, in its order,
standardised with the training mean and std; windows every `stride` rows (the last one ending
at the last row) reconstructed by model.onnx, each step's squared error per channel (over the
variance the model predicted for it, when the model has a variance head: model.onnx computes
that too) averaged over the windows that cover it; each channel divided by its scale and capped;
the mean over channels; a centred moving mean over `smooth` steps. When model.json has a
`top_quantile`, that quantile over channels of the scaled errors (uncapped) is another part, and
when it has a `pca`, the PCA's residual of the standardised rows is another, each smoothed the
same way; when it has a `smooth_long`, every part is also smoothed over that many steps, as a
term named `part@smooth_long`. With several terms the score is the mean of their log scores,
each standardised with its `log_units` (mean, std of its log score on the run's validation
rows), raised to at least the `fusion` floor when it has one, and weighted by its part's
`fusion` weight (1 when none is given).
Flagged above `threshold`.
`--channels channels.csv` also writes each row's per-channel error in units of its scale (what
the run's channel_scores.npz holds; the console's top channels rank each channel's error above
its `channel_normal`, its mean error on normal data).
(This file is shipped verbatim by `python -m core.pipeline export`; it imports nothing of the
project that made it.)"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
LABELS = ("label", "is_anomaly", "anomaly")  # the first one present gives the labels
NOT_CHANNELS = LABELS + ("changepoint",)
TIME_NAMES = ("timestamp", "time", "datetime", "date")


def read_rows(path: Path, channels: list) -> tuple:
    """(values (T, C) float32 in model order, first column (name, values), labels or None)."""
    frame = pd.read_csv(path, sep=None, engine="python", keep_default_na=False,
                        na_values=["", "nan", "NaN", "NAN"], encoding="utf-8-sig")
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in channels if c not in frame.columns]
    if missing:
        sys.exit(f"{path.name}: expected the channel columns {channels}; missing: {missing}")
    values = frame[channels].apply(pd.to_numeric, errors="coerce")
    text = values.isna() & frame[channels].notna()  # a cell that is not a number
    if text.any().any():
        column = text.any().idxmax()
        row = int(text[column].to_numpy().argmax())
        sys.exit(f"{path.name}: column '{column}' row {row + 1:,}: expected a number, found "
                 f"'{frame[column].iloc[row]}'")
    empty = [c for c in channels if values[c].isna().all()]
    if empty:
        sys.exit(f"{path.name}: column '{empty[0]}' has no numbers")
    values = values.ffill().bfill().to_numpy(dtype=np.float32)  # gaps filled as in training
    lower = {c.lower(): c for c in frame.columns}
    label = next((lower[n] for n in LABELS if n in lower), None)
    labels = frame[label].to_numpy() if label else None
    return values, first_column(frame, channels, len(values)), labels


def first_column(frame: pd.DataFrame, channels: list, rows: int) -> tuple:
    """('timestamp', texts) when the file has a timestamp column (named like one, or text that
    parses as dates), else ('index', 0..T-1)."""
    others = [c for c in frame.columns if c not in channels and c.lower() not in NOT_CHANNELS]
    named = [c for c in others if c.lower() in TIME_NAMES]
    for column in named or [c for c in others if frame[c].dtype == object]:
        is_text = frame[column].dtype == object
        parsed = pd.to_datetime(frame[column], errors="coerce") if is_text else None
        if parsed is not None and not parsed.isna().any():
            return "timestamp", parsed.astype(str).to_numpy()
        if named:
            return "timestamp", frame[column].fillna("").astype(str).to_numpy()
    return "index", np.arange(rows)


def window_starts(rows: int, window: int, stride: int) -> np.ndarray:
    starts = np.arange(0, rows - window + 1, min(stride, window))
    return starts if starts[-1] == rows - window else np.append(starts, rows - window)


def channel_errors(session, series: np.ndarray, window: int, stride: int,
                   batch: int) -> np.ndarray:
    """Normalised rows (T, C) → per-step squared error (T, C), averaged over covering windows."""
    starts = window_starts(len(series), window, stride)
    total = np.zeros(series.shape, np.float64)
    count = np.zeros(len(series), np.float64)
    offsets = np.arange(window)
    for i in range(0, len(starts), batch):
        rows = starts[i:i + batch, None] + offsets  # (B, L)
        err = session.run(None, {"windows": series[rows]})[0]  # (B, L, C)
        np.add.at(total, rows.ravel(), err.reshape(-1, err.shape[-1]).astype(np.float64))
        np.add.at(count, rows.ravel(), 1.0)
    return (total / count[:, None]).astype(np.float32)


def moving_mean(x: np.ndarray, size: int) -> np.ndarray:
    """Centred moving mean over `size` steps, edges padded with the first and last value."""
    x = np.asarray(x, np.float64)
    if size <= 1:
        return x
    left = size // 2
    padded = np.concatenate([np.full(left, x[0]), x, np.full(size - 1 - left, x[-1])])
    cumsum = np.concatenate([[0.0], np.cumsum(padded)])
    return (cumsum[size:] - cumsum[:-size]) / size


def pca_residual(series: np.ndarray, pca: dict) -> np.ndarray:
    """Standardised rows (T, C) → (T,) mean squared residual off the PCA's kept axes."""
    mean, axes = np.asarray(pca["mean"], np.float64), np.asarray(pca["axes"], np.float64)
    axes = axes.reshape(-1, len(mean))  # (k, C); k may be 0
    centred = series.astype(np.float64) - mean
    return np.mean((centred - (centred @ axes.T) @ axes) ** 2, axis=1)


def smoothed(parts: dict, window: int, long_window: int) -> dict:
    """Point-wise (T,) parts → the terms: each over `window` steps, and over `long_window`
    steps too (named `part@long_window`) when that is above 0."""
    terms = {name: moving_mean(p, window) for name, p in parts.items()}
    if long_window > 0:
        terms |= {f"{name}@{long_window}": moving_mean(p, long_window)
                  for name, p in parts.items()}
    return terms


def fused(terms: dict, units: dict, fusion: dict) -> np.ndarray:
    """Smoothed (T,) terms → the weighted mean of their logs, each in its validation
    (mean, std) and at least `fusion["floor"]` when that is set; a term of part p (`p@...`)
    weighs `fusion["weights"][p]`, 1 when absent."""
    z = np.array([(np.log(p + 1e-12) - units[name][0]) / units[name][1]
                  for name, p in terms.items()])  # (terms, T)
    if fusion.get("floor") is not None:
        z = np.maximum(z, fusion["floor"])
    weights = fusion.get("weights") or {}
    return np.average(z, axis=0, weights=[weights.get(name.partition("@")[0], 1.0)
                                          for name in terms])


def score(path: Path, spec: dict, session) -> tuple:
    """(scores: first column, score, is_anomaly[, label]; channel errors (T, C) in units of each
    channel's scale)."""
    values, (first, column), labels = read_rows(path, spec["channels"])
    if len(values) < spec["window"]:
        sys.exit(f"{path.name}: {len(values)} rows are fewer than the model's window of "
                 f"{spec['window']} rows")
    mean, std = (np.asarray(spec["normalizer"][k], np.float32) for k in ("mean", "std"))
    series = ((values - mean) / std).astype(np.float32)
    errors = channel_errors(session, series, spec["window"], spec["stride"], spec["batch_size"])
    errors = errors / np.asarray(spec["channel_scale"], np.float32)
    cap = spec["channel_cap"]
    parts = {"reconstruction": (np.minimum(errors, cap) if cap > 0 else errors).mean(axis=1)}
    if spec.get("top_quantile"):
        parts["top_channels"] = np.quantile(errors, spec["top_quantile"], axis=1)
    if spec.get("pca"):
        parts["pca"] = pca_residual(series, spec["pca"])
    terms = smoothed(parts, spec["smooth"], spec.get("smooth_long") or 0)
    scores = (fused(terms, spec["log_units"], spec.get("fusion") or {}) if len(terms) > 1
              else terms["reconstruction"])
    frame = pd.DataFrame({first: column, "score": scores,
                          "is_anomaly": (scores > spec["threshold"]).astype(np.int8)})
    if labels is not None:
        frame["label"] = labels
    return frame, errors


def main() -> None:
    import onnxruntime as ort
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="a CSV file with the model's channel columns")
    parser.add_argument("--out", type=Path, default=Path("scores.csv"))
    parser.add_argument("--channels", type=Path, default=None,
                        help="also write each row's per-channel error (a CSV, a column each)")
    args = parser.parse_args()
    spec = json.loads((HERE / "model.json").read_text(encoding="utf-8"))
    session = ort.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
    frame, errors = score(args.data, spec, session)
    frame.to_csv(args.out, index=False, float_format="%.6g")
    if args.channels:
        per_channel = pd.DataFrame(errors, columns=spec["channels"])
        per_channel.insert(0, frame.columns[0], frame.iloc[:, 0])
        per_channel.to_csv(args.channels, index=False, float_format="%.6g")
    print(f"{len(frame)} rows scored, {int(frame['is_anomaly'].sum())} above the threshold "
          f"{spec['threshold']:.4g}: {args.out}" + (f", {args.channels}" if args.channels else ""))


if __name__ == "__main__":
    main()
