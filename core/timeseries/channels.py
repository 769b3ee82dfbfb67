"""Channels that were constant in training: which ones change in the scored data, and the
sentence a person reads about them (log and Results). numpy only: pages import this."""
from __future__ import annotations

import numpy as np

STD_FLOOR = 1e-3  # the normaliser's least std: a (nearly) constant channel would blow up every change


def constant_channels(std: np.ndarray, train: np.ndarray, target: np.ndarray,
                      channels: list[str]) -> dict[str, bool]:
    """Channels (nearly) constant in training — their training std (C,) was raised to the
    normaliser's floor — → whether the scored rows (T, C) leave the training range by more than
    one floor unit: {name: changes}. `train` and `target` are normalised."""
    flat = std <= STD_FLOOR  # (C,)
    moves = np.abs(target).max(axis=0) > np.abs(train).max(axis=0) + 1.0  # (C,)
    return {c: bool(m) for c, f, m in zip(channels, flat, moves) if f}


def constant_notes(constant: dict[str, bool]) -> list[str]:
    """One sentence per channel that was constant in training and changes in the scored data."""
    return [f"{c} was constant in training and changes here: its share of the score is bounded "
            "(patchtst.score.scale_floor, channel_cap), but any change in it is unlike the "
            "training data."
            for c, changes in constant.items() if changes]


OUT_OF_RANGE_Z = 5.0  # a channel whose typical scored value is this many training stds away


def out_of_range(target: np.ndarray, channels: list[str],
                 constant: dict[str, bool]) -> dict[str, float]:
    """Channels whose median scored value (T, C), in training standard deviations (the rows are
    normalised with training statistics), sits over OUT_OF_RANGE_Z from the training mean:
    {name: distance}. Constant channels are left to `constant_notes`."""
    distance = np.abs(np.median(target, axis=0))  # (C,)
    return {c: round(float(d), 1) for c, d in zip(channels, distance)
            if d > OUT_OF_RANGE_Z and c not in constant}


def out_of_range_note(far: dict[str, float], n_channels: int) -> list[str]:
    """One sentence when the scored data sits outside the training range in some channels."""
    if not far:
        return []
    worst = ", ".join(f"{c} {d:g} std" for c, d in sorted(far.items(), key=lambda x: -x[1])[:3])
    return [f"The scored data is far from the training data in {len(far)} of {n_channels} "
            f"channels ({worst} from the training mean): the model sees an operating point it "
            "never trained on and scores most rows as anomalous. Train on normal data that "
            "covers this operating point; the PCA baseline tolerates such a shift better."]
