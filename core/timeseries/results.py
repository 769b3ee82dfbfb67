"""What the Results page shows for one time-series stream of a run, from its files only:
`load_ts_results` (scores, per-channel errors, threshold, metrics, the raw signal, notes),
`top_anomalies` (flagged segments with the channels behind them), `top_channels`,
`metrics_table`, `postprocess_caption` and `baseline_verdict` (the model beside its baselines).

No torch and no streamlit here: the Results page imports this at load."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from core.curves import loss_curves, shift_warnings
from core.errors import DataError
from core.fileio import read_json
from core.timeseries.files import SeriesFiles
from core.progress import read_metrics
from core.results import (ResultsError, load_arrays,
                          metrics_frame, segments)
from core.timeseries.channels import constant_notes, out_of_range_note
from core.timeseries.data import load_ts_dataset

METRIC_LABELS = {"auroc": "AUROC", "auprc": "AUPRC", "best_f1": "best F1",
                 "f1": "F1 at threshold", "pa_f1": "PA-F1 (point-adjusted)"}
TOP_CHANNELS = 3  # channels named per anomaly in `top_anomalies`
NONE_ABOVE_NORMAL = "no channel above its normal error"  # the PCA part or nearby rows flagged it
# per kind of score: a short axis title (it must fit the score panel's height) and the sentence
# under the chart that says what the unit is
SCORE_TITLES = {"plain": "anomaly score (MSE)", "scaled": "anomaly score (÷ normal MSE)",
                "fused": "anomaly score (normal std)"}
SCORE_MEANINGS = {
    "plain": "Anomaly score: the reconstruction's squared error, averaged over channels, in "
             "normalised units.",
    "scaled": "Anomaly score: the reconstruction's squared error averaged over channels, each "
              "channel's divided by its mean error on normal validation data.",
}
PART_WORDS = {"reconstruction": "the reconstruction's error averaged over channels",
              "top_channels": "its error in the most-erring channels (a high quantile over "
                              "channels)",
              "pca": "a PCA's residual (fitted on the training data)"}
CEILING_WORDS = " (at most its channel's usual high on normal data)"


def variance_words(ceiling: bool) -> str:
    """What the variance head did to the errors; `ceiling`: its variances were capped
    (`scoring.json` `log_var_ceiling`)."""
    return (" Each squared error was first divided by the variance the model predicted for that "
            f"value{CEILING_WORDS if ceiling else ''}, so it counts more where the model "
            "expected a close fit.")


@dataclass
class TSResults:
    """Everything the Results page shows for one time-series stream of one run."""
    run_id: str
    stream: str
    stream_dir: Path
    scores: pd.DataFrame  # scores.csv: timestamp|index, score, is_anomaly[, label]; T rows
    errors: np.ndarray  # (T, C) per-channel reconstruction error, in units of `channel_scale`
    channels: list[str]  # C names
    threshold: float  # the run's threshold (score > threshold is flagged)
    percentile: float | None  # the percentile of validation scores it sits at
    metrics: dict | None  # metrics.json (with baselines); None when the data had no labels
    signal: np.ndarray | None  # (T, C) raw values re-read from the scored file; None if gone
    signal_note: str | None  # why `signal` is None, to show the user
    scored_file: str | None
    channel_scale: dict[str, float] | None = None  # errors were divided by these (scoring.json)
    notes: list[str] = field(default_factory=list)  # what a person should know before trusting it
    parts: list[str] = field(default_factory=lambda: ["reconstruction"])  # fused into the score
    channel_normal: dict[str, float] | None = None  # each channel's mean error on normal data
    windows: tuple[int, ...] = (1,)  # the moving means each part was smoothed over (1 or 2)
    variance_head: bool = False  # each squared error was divided by the model's variance for it
    variance_ceiling: bool = False  # that variance was capped per channel (`log_var_ceiling`)

    @cached_property
    def contributions(self) -> np.ndarray:  # (T, C); once per object: the page reads it often
        """Each channel's error above its mean on normal validation data (`channel_normal`, in
        the units of `errors`), clipped at 0: a channel erring as it does on normal data adds
        nothing. What the top anomalies and the default channels rank (against SMD's
        interpretation labels, benchmarks/ts_attribution.py). Runs scored before the mean was
        recorded rank the errors themselves."""
        if not self.channel_normal:
            return self.errors
        normal = np.array([self.channel_normal[c] for c in self.channels])  # (C,)
        return np.maximum(self.errors - normal, 0.0)

    @property
    def score(self) -> np.ndarray:  # (T,)
        return self.scores["score"].to_numpy(dtype=float)

    @property
    def labels(self) -> np.ndarray | None:  # (T,) 0/1
        return self.scores["label"].to_numpy() if "label" in self.scores else None

    @property
    def timestamps(self) -> np.ndarray | None:  # (T,) str
        return self.scores["timestamp"].astype(str).to_numpy() \
            if "timestamp" in self.scores else None

    def signal_of(self, names: list[str]) -> dict[str, np.ndarray]:
        """{channel: (T,) raw values} for the named channels; {} when the signal is gone."""
        if self.signal is None:
            return {}
        return {n: self.signal[:, self.channels.index(n)] for n in names if n in self.channels}

    @property
    def score_kind(self) -> str:
        """The score's unit: `fused` parts count in standard deviations of their log score on
        normal validation data; otherwise, with per-channel scaling (`scaled`), each channel's
        error counts in units of its own mean error there; else (`plain`) normalised units."""
        if len(self.parts) * len(self.windows) > 1:
            return "fused"
        scaled = self.channel_scale and any(v != 1 for v in self.channel_scale.values())
        return "scaled" if scaled else "plain"

    @property
    def score_title(self) -> str:
        return SCORE_TITLES[self.score_kind]

    @property
    def score_meaning(self) -> str:
        return self._unit_meaning() + (variance_words(self.variance_ceiling)
                                       if self.variance_head else "")

    def _unit_meaning(self) -> str:
        if self.score_kind != "fused":
            return SCORE_MEANINGS[self.score_kind]
        words = "; ".join(PART_WORDS.get(name, name) for name in self.parts)
        n = len(self.parts) * len(self.windows)
        if len(self.windows) > 1:
            words += f", each over {' and '.join(map(str, self.windows))}-step moving means"
        return (f"Anomaly score: the mean of {n} log scores, {words}; each in standard "
                f"deviations of its scores on normal validation data.")

    @property
    def checkpoint(self) -> Path | None:
        path = SeriesFiles(self.stream_dir).checkpoint
        return path if path.is_file() else None


def load_ts_results(run_dir: Path, stream: str = "patchtst") -> TSResults:
    """Read a scored time-series stream of a run (ResultsError when it was never scored).

    The raw signal is re-read from the file named in scoring.json; when that file is gone or
    changed, `signal` is None and `signal_note` says why (the scores still show)."""
    out = SeriesFiles(Path(run_dir) / stream)
    scoring = read_json(out.scoring)
    if not scoring or not out.scores.is_file():
        raise ResultsError(f"run {Path(run_dir).name}: expected {stream}/{SeriesFiles.scores} and "
                           f"{stream}/{SeriesFiles.scoring}, found none; was the run scored?")
    scores = pd.read_csv(out.scores)
    arrays = load_arrays(out.channels, ("errors", "channels"))
    errors, channels = arrays["errors"].astype(float), [str(c) for c in arrays["channels"]]
    if errors.shape[0] != len(scores):
        raise ResultsError(f"run {Path(run_dir).name}: {SeriesFiles.channels} has "
                           f"{errors.shape[0]} rows but {SeriesFiles.scores} has {len(scores)}; "
                           f"expected one row per scored row")
    signal, note = _read_signal(scoring.get("scored_file"), channels, len(scores))
    return TSResults(Path(run_dir).name, stream, out.dir, scores, errors, channels,
                     float(scoring["threshold"]), scoring.get("percentile"),
                     read_json(out.metrics), signal, note, scoring.get("scored_file"),
                     scoring.get("channel_scale"), _notes(Path(run_dir), stream, scoring),
                     scoring.get("parts") or ["reconstruction"], scoring.get("channel_normal"),
                     _windows(scoring), bool(scoring.get("variance_head")),
                     scoring.get("log_var_ceiling") is not None)


def _windows(scoring: dict) -> tuple[int, ...]:
    """The moving means a run smoothed each part of its score over (scoring.json): `smooth`,
    and `smooth_long` when the run had a second time scale."""
    long_window = scoring.get("smooth_long") or 0
    return (scoring.get("smooth", 1),) + ((long_window,) if long_window else ())


def _notes(run_dir: Path, stream: str, scoring: dict) -> list[str]:
    """The validation-shift warning of the stream's training, the scored data's distance from
    the training range, then one sentence per channel that was constant in training and
    changes in the scored data."""
    shift = shift_warnings(loss_curves(read_metrics(run_dir))).get(stream)
    far = out_of_range_note(scoring.get("out_of_range") or {},
                            len(scoring.get("channel_scale") or {}))
    return ([shift] if shift else []) + far + constant_notes(
        scoring.get("constant_in_training") or {})


def _read_signal(scored_file: str | None, channels: list[str],
                 n_rows: int) -> tuple[np.ndarray | None, str | None]:
    """(T, C) raw values of the scored file, or (None, why not)."""
    if not scored_file:
        return None, "scoring.json names no scored file: showing the scores without the signal"
    path = Path(scored_file)
    if not path.is_file():
        return None, (f"the scored file {path} is gone: showing the scores without the "
                      "signal")
    try:
        series = load_ts_dataset(path).train  # one file alone is read as a train split
    except DataError as e:
        return None, f"could not re-read the scored file: {e}"
    if series.channels != channels or len(series.values) != n_rows:
        return None, (f"{path.name} changed since it was scored (now {len(series.values):,} "
                      f"rows, channels {series.channels}; scored: {n_rows:,} rows, channels "
                      f"{channels}): showing the scores without the signal")
    return series.values.astype(float), None


def top_anomalies(scores: np.ndarray, errors: np.ndarray, channels: list[str],
                  threshold: float, k: int = 10,
                  timestamps: np.ndarray | None = None) -> pd.DataFrame:
    """The k flagged segments with the highest peak score, highest first.

    scores (T,), errors (T, C): each channel's contribution (`TSResults.contributions`).
    Columns: start, end (timestamps when known, else rows; end is the last flagged row), length
    (rows), peak score, top channels ("b 91% · a 6% · c 3%": the channels with the biggest share
    of the segment's summed contributions; channels with none are left out, and a segment where
    no channel has any says so)."""
    columns = ["start", "end", "length (rows)", "peak score", "top channels"]
    scores, errors = np.asarray(scores, dtype=float), np.asarray(errors, dtype=float)
    segs = np.array(segments(scores > threshold), dtype=int).reshape(-1, 2)  # (S, 2)
    if not len(segs):
        return pd.DataFrame(columns=columns)
    # reduceat over [start0, stop0, start1, stop1, ...]: even slots are the segments; a padding
    # row makes the last stop (== T) a valid index.
    bounds = segs.ravel()
    peak = np.maximum.reduceat(np.append(scores, 0.0), bounds)[::2]  # (S,)
    sums = np.add.reduceat(np.vstack([errors, np.zeros((1, errors.shape[1]))]), bounds,
                           axis=0)[::2]  # (S, C)
    share = sums / np.maximum(sums.sum(axis=1, keepdims=True), 1e-12)  # (S, C)
    order = np.argsort(-peak, kind="stable")[:k]
    at = (lambda i: str(timestamps[i])) if timestamps is not None else int
    rows = []
    for i in order:
        (start, stop), best = segs[i], np.argsort(-share[i], kind="stable")[:TOP_CHANNELS]
        named = " · ".join(f"{channels[c]} {share[i, c]:.0%}" for c in best if share[i, c] > 0)
        rows.append([at(start), at(stop - 1), int(stop - start), float(peak[i]),
                     named or NONE_ABOVE_NORMAL])
    frame = pd.DataFrame(rows, columns=columns)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
    return frame


def top_channels(errors: np.ndarray, channels: list[str], mask: np.ndarray | None = None,
                 n: int = 4) -> list[str]:
    """The n channels with the biggest summed contribution (errors (T, C), as in
    `top_anomalies`) over the flagged rows `mask` (T,), or over all rows when nothing is
    flagged: the default channels to plot."""
    errors = np.asarray(errors, dtype=float)
    rows = errors[mask] if mask is not None and np.any(mask) else errors
    return [channels[c] for c in np.argsort(-rows.sum(axis=0), kind="stable")[:n]]


# ---------------------------------------------------------------- metrics beside baselines

def metrics_table(m: dict) -> pd.DataFrame:
    """Rows model, the parts it fuses (`reconstruction`), pca, random (those present), then the
    same point-wise when metrics.json has them (`model · point-wise`, ...); columns auroc,
    auprc, best_f1, f1, pa_f1, labelled for people (pa_f1 as 'PA-F1 (point-adjusted)'),
    rounded to 3 decimals. None shows as NaN."""
    rows = {"model": m, **(m.get("parts") or {}), **(m.get("baselines") or {})}
    rows |= {f"{name} · point-wise": r for name, r in (m.get("pointwise") or {}).items()}
    return metrics_frame(rows, METRIC_LABELS)


def postprocess_caption(m: dict) -> str | None:
    """What post-processing the headline rows had, in words; None when the run had none."""
    post = m.get("postprocess") or {}
    window, long_window = post.get("smooth", 1), post.get("smooth_long") or 0
    if window <= 1 and not long_window:
        return None
    floor = post.get("fuse_floor")
    means = f"a centred {window}-step moving mean" + (
        f" fused with a {long_window}-step one (each in standard deviations of its scores on "
        "normal validation data" + ("" if floor is None else f", none counting below {floor:+g}")
        + "), so short and sustained anomalies both show" if long_window else "")
    fused = " Each of the model's parts is also scored alone." if m.get("parts") else ""
    return (f"Every detector's score after {means}, applied alike to all; the point-wise rows "
            f"are without it.{fused}")


def baseline_verdict(m: dict) -> str:
    """One sentence: does the model beat the PCA baseline on AUPRC?"""
    model, pca = m.get("auprc"), ((m.get("baselines") or {}).get("pca") or {}).get("auprc")
    if model is None:
        return "AUPRC is undefined: the labels hold one class only."
    if pca is None:
        return f"The model's AUPRC is {model:.3f}; there is no PCA baseline to compare with."
    if model > pca:
        return (f"The model beats the PCA baseline on AUPRC: {model:.3f} against "
                f"{pca:.3f} (+{model - pca:.3f}).")
    return (f"The model does not beat the PCA baseline on AUPRC: {model:.3f} against "
            f"{pca:.3f} ({model - pca:+.3f}).")
