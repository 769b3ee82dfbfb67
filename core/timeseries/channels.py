"""Channels that were constant in training: which ones change in the scored data, and the
sentence a person reads about them (log and Results). numpy only: pages import this."""
from __future__ import annotations

import numpy as np


def constant_channels(train: np.ndarray, target: np.ndarray,
                      channels: list[str]) -> dict[str, bool]:
    """Channels constant in the training rows (T_fit, C) → whether they change in the scored
    rows (T, C): {name: changes}."""
    flat = np.ptp(train, axis=0) == 0  # (C,)
    moves = np.abs(target - train[0]).max(axis=0) > 0  # (C,) differs from the training value
    return {c: bool(m) for c, f, m in zip(channels, flat, moves) if f}


def constant_notes(constant: dict[str, bool]) -> list[str]:
    """One sentence per channel that was constant in training and changes in the scored data."""
    return [f"{c} was constant in training and changes here: its share of the score is bounded "
            "(patchtst.score.scale_floor), but any change in it is unlike the training data."
            for c, changes in constant.items() if changes]
