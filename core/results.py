"""What every stream's Results view shares, computed from run folders only: `ResultsError`,
`load_arrays` (an .npz the pipeline wrote, never unpickled), `result_streams` (the streams a
run scored), and the threshold controls' arithmetic:
`segments` of a flag mask, `at_threshold` (the live counts and F1 behind a threshold),
`threshold_grid` (the slider's positions by flagged share), `nearest`, `flagged_share`, and
`metrics_frame` (a metrics table).
A stream's own view model lives in its package (`core/timeseries/results.py`,
`core/images/results.py`); the runs index as tables in `core/runs_tables.py`.

No torch and no streamlit here: every page imports this at load."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from core import metrics
from core.errors import AtcError
from core.run_files import RunFiles
from core.streams import STREAMS, Stream


class ResultsError(AtcError):
    """A run folder lacks what the results view needs (e.g. the run was never scored)."""


def load_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays `keys` of an .npz the pipeline wrote; ResultsError naming the file when it is
    unreadable, lacks one, or holds pickled objects (never loaded: `allow_pickle=False`)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in keys}
    except KeyError as e:
        raise ResultsError(f"{path}: expected arrays {', '.join(keys)}, found no {e}") from None
    except ValueError as e:
        found = "pickled Python objects" if "allow_pickle" in str(e) else str(e)
        raise ResultsError(f"{path}: expected plain numeric and text arrays, found {found}"
                           ) from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ResultsError(f"{path}: cannot be read ({e})") from None


def result_streams(run_dir: Path) -> list[Stream]:
    """The streams of `STREAMS` that this run scored (their folder holds scoring.json)."""
    return [s for s in STREAMS.values() if RunFiles(run_dir).stream(s.name).scoring.is_file()]



# ---------------------------------------------------------------- thresholds

def segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of True in a (T,) mask as half-open (start, stop) pairs, like slices.

    Example: [0, 1, 1, 0, 1] -> [(1, 3), (4, 5)]; [] -> []."""
    m = np.asarray(mask, dtype=bool).ravel()
    edges = np.diff(np.concatenate(([0], m.astype(np.int8), [0])))  # (T+1,) +1 start, -1 stop
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def at_threshold(scores: np.ndarray, labels: np.ndarray | None, threshold: float) -> dict:
    """What a threshold flags: `flagged` rows (or images) and their `share`; when the labels
    hold both classes also precision, recall, f1 and pa_f1 (point-adjusted, for series) from
    `core.metrics.evaluate`."""
    scores = np.asarray(scores, dtype=float)
    flagged = scores > threshold  # (N,) the convention of core.metrics
    out = {"threshold": float(threshold), "flagged": int(flagged.sum()),
           "share": float(flagged.mean()) if len(scores) else 0.0}
    if labels is not None and len(np.unique(labels)) == 2:
        m = metrics.evaluate(scores, np.asarray(labels), threshold)
        out |= {k: m[k] for k in ("precision", "recall", "f1", "pa_f1")}
    return out


def threshold_grid(scores: np.ndarray, threshold: float, n: int = 200,
                   shares: tuple[float, float] = (1e-4, 0.5)) -> list[float]:
    """The threshold slider's positions, ascending: the scores' quantiles at which the flagged
    share runs geometrically from `shares[1]` down to `shares[0]` (at least one row), plus the
    run's own threshold. Positions by share, not by score, so a heavy tail (a few huge scores)
    cannot squeeze every useful threshold into one step."""
    scores = np.asarray(scores, dtype=float)
    low = max(shares[0], 1 / max(len(scores), 1))
    flagged = np.geomspace(shares[1], low, n)  # (n,) shares to reach
    grid = np.quantile(scores, 1 - flagged) if len(scores) else np.zeros(0)
    return sorted(set(grid.tolist()) | {float(threshold)})


def nearest(grid: list[float], value: float) -> float:
    """The position of `grid` closest to `value` (a typed threshold shown on the slider)."""
    return min(grid, key=lambda g: abs(g - value))


def flagged_share(scores: np.ndarray, threshold: float) -> float:
    """Share of rows with score > threshold."""
    scores = np.asarray(scores, dtype=float)
    return float((scores > threshold).mean()) if len(scores) else 0.0


def num(value) -> float:
    """A metric for a table: None (undefined) as NaN."""
    return float("nan") if value is None else float(value)


def metrics_frame(rows: dict[str, dict], labels: dict[str, str]) -> pd.DataFrame:
    """{row name: metrics} → a table with one row per name and one column per key of `labels`
    (named by its label), rounded to 3 decimals; a missing or None metric is NaN."""
    frame = pd.DataFrame([[num(r.get(k)) for k in labels] for r in rows.values()],
                         index=pd.Index(list(rows), name="scores"), columns=list(labels.values()))
    return frame.round(3)
