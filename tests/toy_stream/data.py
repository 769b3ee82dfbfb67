"""Reading a toy dataset folder: `values.txt` (one number per line), optional `labels.txt`."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DataError


@dataclass
class Levels:
    values: np.ndarray  # (N,)
    labels: np.ndarray | None  # (N,) 0/1


def _numbers(path: Path) -> np.ndarray:
    try:
        return np.array([float(line) for line in path.read_text().split()])
    except ValueError as e:
        raise DataError(f"{path.name}: expected one number per line ({e})") from None


def load_levels(folder: Path) -> Levels:
    path = Path(folder) / "values.txt"
    if not path.is_file():
        raise DataError(f"{folder}: expected values.txt, found none")
    labels_path = Path(folder) / "labels.txt"
    values = _numbers(path)
    labels = _numbers(labels_path) if labels_path.is_file() else None
    if len(values) < 4:
        raise DataError(f"{path}: expected at least 4 values, found {len(values)}")
    return Levels(values, labels)


def summarize(levels: Levels) -> dict:
    return {"values": len(levels.values), "labelled": levels.labels is not None, "warnings": []}
