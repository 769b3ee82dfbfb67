"""Loss curves from metrics.jsonl, ready to draw: per stream, training loss by step (optionally
smoothed) and validation loss by epoch, downsampled so a long run stays fast to draw (each
bucket's lowest and highest loss, `core.downsample`)."""
from __future__ import annotations

import numpy as np

from core.downsample import minmax_indices

DEFAULT_MAX_POINTS = 1500
SHIFT_RATIO = 3.0  # validation loss over this many times the training loss: the data shifted


def ema(y: np.ndarray, smoothing: float) -> np.ndarray:
    """Exponential moving average with weight `smoothing` in [0, 1) on the past (0: unchanged),
    bias-corrected so the curve does not start at zero."""
    if smoothing <= 0 or len(y) == 0:
        return y
    out, acc, weight = np.empty_like(y, dtype=float), 0.0, 0.0
    for i, value in enumerate(y):
        acc = smoothing * acc + (1 - smoothing) * value
        weight = smoothing * weight + (1 - smoothing)
        out[i] = acc / weight
    return out


def loss_curves(lines: list[dict], smoothing: float = 0.0,
                max_points: int = DEFAULT_MAX_POINTS) -> dict[str, dict[str, np.ndarray]]:
    """metrics.jsonl lines → {curve: {"step", "train_loss", "epoch", "val_loss",
    "epoch_train_loss"}} as float arrays; a curve is a stream's network (its `curve`, else the
    stream's name: "patchtst", "swinmae", "swinmae head"); steps are that network's optimizer
    steps."""
    out: dict[str, dict[str, list]] = {}
    for line in lines:
        curve = out.setdefault(line.get("curve") or line.get("stream", "?"), {k: [] for k in (
            "step", "train_loss", "epoch", "val_loss", "epoch_train_loss")})
        if line.get("kind") == "step":
            curve["step"].append(line["step"])
            curve["train_loss"].append(line["train_loss"])
        elif line.get("kind") == "epoch":
            curve["epoch"].append(line["epoch"])
            curve["val_loss"].append(line["val_loss"])
            curve["epoch_train_loss"].append(line["train_loss"])
    result = {}
    for stream, curve in out.items():
        arrays = {k: np.asarray(v, dtype=float) for k, v in curve.items()}
        train = ema(arrays["train_loss"], smoothing)
        keep = minmax_indices(train, max_points)
        result[stream] = arrays | {"step": arrays["step"][keep], "train_loss": train[keep]}
    return result


def shift_warning(train_loss: float, val_loss: float) -> str | None:
    """One sentence a person can act on when an epoch's validation loss is over SHIFT_RATIO
    times its training loss (the held-out normal data is unlike the training data); else None."""
    if not (train_loss > 0 and val_loss > SHIFT_RATIO * train_loss):
        return None
    return (f"Validation loss {val_loss:.3g} is {val_loss / train_loss:.0f}× the training loss "
            f"{train_loss:.3g}: the held-out normal data (the end of the training data) is "
            "unlike what the model trained on, so scores and the threshold may be unreliable. "
            "Check the end of the training data for a level shift or anomalies, or train on "
            "longer, more varied normal data.")


def shift_warnings(curves: dict[str, dict[str, np.ndarray]]) -> dict[str, str]:
    """{stream: warning} for each stream of `loss_curves` whose last epoch shows a shift."""
    out = {}
    for stream, curve in curves.items():
        if len(curve["val_loss"]):
            text = shift_warning(float(curve["epoch_train_loss"][-1]), float(curve["val_loss"][-1]))
            if text:
                out[stream] = text
    return out
