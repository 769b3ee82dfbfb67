"""What the Results, Runs and Home pages show, computed from run folders only.

- Results of one finished time-series run: `load_ts_results` (scores, per-channel errors,
  threshold, metrics, the raw signal, notes), `segments` of a flag mask, `threshold_grid` (the
  slider's positions by flagged share), `at_threshold` (the live counts and F1 behind it),
  `top_anomalies` (flagged segments with the channels behind them), `metrics_table` and
  `baseline_verdict` (the model beside its baselines).
- The runs index as tables: `runs_table`, `compare_metrics`, `compare_configs`, plus
  `finished_runs` (the Results picker), `index_entries` (live statuses refreshed), `run_curves`
  and `job_summary` (the running job in one line).

No torch and no streamlit here: every page imports this at load."""
from __future__ import annotations

import math
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core import jobs, metrics
from core.config import read_yaml
from core.curves import loss_curves, shift_warnings
from core.errors import AtcError, ConfigError, DataError, JobError
from core.fileio import read_json
from core.live import format_eta
from core.progress import read_metrics
from core.runs import RunIndex, runs_dir
from core.streams import STREAMS, Stream
from core.timeseries.channels import constant_notes, out_of_range_note
from core.timeseries.data import load_ts_dataset

SCORES, CHANNELS, SCORING, METRICS, CHECKPOINT = (
    "scores.csv", "channel_scores.npz", "scoring.json", "metrics.json", "best.pt")
METRIC_LABELS = {"auroc": "AUROC", "auprc": "AUPRC", "best_f1": "best F1",
                 "f1": "F1 at threshold", "pa_f1": "PA-F1 (point-adjusted)"}
HEADLINE_COLUMNS = 3  # of each stream's headline metrics, the runs tables show the first three
TOP_CHANNELS = 3  # channels named per anomaly in `top_anomalies`
SCORE_TITLE = "anomaly score (MSE, normalised units)"
SCALED_SCORE_TITLE = "anomaly score (MSE ÷ each channel's normal MSE)"
FUSED_SCORE_TITLE = "anomaly score (reconstruction and PCA log scores, in normal std units)"
EMPTY = "–"  # a table cell with no value (None, a key a run lacks, a stream it did not use)


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


# ---------------------------------------------------------------- one run's results

@dataclass
class TSResults:
    """Everything the Results page shows for one time-series stream of one run."""
    run_id: str
    stream: str
    stream_dir: Path
    scores: pd.DataFrame  # scores.csv: timestamp|index, score, is_anomaly[, label]; T rows
    errors: np.ndarray  # (T, C) per-channel reconstruction error, normalised units
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
    def score_title(self) -> str:
        """The score's unit: fused parts count in standard deviations of their log score on
        normal validation data; otherwise, with per-channel scaling, each channel's error counts
        in units of its own mean error there."""
        if len(self.parts) > 1:
            return FUSED_SCORE_TITLE
        scaled = self.channel_scale and any(v != 1 for v in self.channel_scale.values())
        return SCALED_SCORE_TITLE if scaled else SCORE_TITLE

    @property
    def checkpoint(self) -> Path | None:
        path = self.stream_dir / CHECKPOINT
        return path if path.is_file() else None


def result_streams(run_dir: Path) -> list[Stream]:
    """The streams of `STREAMS` that this run scored (their folder holds scoring.json)."""
    return [s for s in STREAMS.values() if (Path(run_dir) / s.name / SCORING).is_file()]


def load_ts_results(run_dir: Path, stream: str = "patchtst") -> TSResults:
    """Read a scored time-series stream of a run (ResultsError when it was never scored).

    The raw signal is re-read from the file named in scoring.json; when that file is gone or
    changed, `signal` is None and `signal_note` says why (the scores still show)."""
    out = Path(run_dir) / stream
    scoring = read_json(out / SCORING)
    if not scoring or not (out / SCORES).is_file():
        raise ResultsError(f"run {Path(run_dir).name}: expected {stream}/{SCORES} and "
                           f"{stream}/{SCORING}, found none; was the run scored?")
    scores = pd.read_csv(out / SCORES)
    arrays = load_arrays(out / CHANNELS, ("errors", "channels"))
    errors, channels = arrays["errors"].astype(float), [str(c) for c in arrays["channels"]]
    if errors.shape[0] != len(scores):
        raise ResultsError(f"run {Path(run_dir).name}: {CHANNELS} has {errors.shape[0]} rows "
                           f"but {SCORES} has {len(scores)}; expected one row per scored row")
    signal, note = _read_signal(scoring.get("scored_file"), channels, len(scores))
    return TSResults(Path(run_dir).name, stream, out, scores, errors, channels,
                     float(scoring["threshold"]), scoring.get("percentile"),
                     read_json(out / METRICS), signal, note, scoring.get("scored_file"),
                     scoring.get("channel_scale"), _notes(Path(run_dir), stream, scoring),
                     scoring.get("parts") or ["reconstruction"])


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


# ---------------------------------------------------------------- thresholds and anomalies

def segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of True in a (T,) mask as half-open (start, stop) pairs, like slices.

    Example: [0, 1, 1, 0, 1] -> [(1, 3), (4, 5)]; [] -> []."""
    m = np.asarray(mask, dtype=bool).ravel()
    edges = np.diff(np.concatenate(([0], m.astype(np.int8), [0])))  # (T+1,) +1 start, -1 stop
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def at_threshold(scores: np.ndarray, labels: np.ndarray | None, threshold: float) -> dict:
    """What a threshold flags: `flagged` rows, their `share`, `segments`; with labels also
    precision, recall, f1 and pa_f1 (point-adjusted) from `core.metrics.evaluate`."""
    scores = np.asarray(scores, dtype=float)
    flagged = scores > threshold  # (T,) the convention of core.metrics
    out = {"threshold": float(threshold), "flagged": int(flagged.sum()),
           "share": float(flagged.mean()) if len(scores) else 0.0,
           "segments": len(segments(flagged))}
    if labels is not None:
        m = metrics.evaluate(scores, labels, threshold)
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


def top_anomalies(scores: np.ndarray, errors: np.ndarray, channels: list[str],
                  threshold: float, k: int = 10,
                  timestamps: np.ndarray | None = None) -> pd.DataFrame:
    """The k flagged segments with the highest peak score, highest first.

    scores (T,), errors (T, C). Columns: start, end (timestamps when known, else rows; end is
    the last flagged row), length (rows), peak score, top channels ("b 91% · a 6% · c 3%": the
    channels with the biggest share of the segment's summed reconstruction error)."""
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
        rows.append([at(start), at(stop - 1), int(stop - start), float(peak[i]),
                     " · ".join(f"{channels[c]} {share[i, c]:.0%}" for c in best)])
    frame = pd.DataFrame(rows, columns=columns)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
    return frame


def top_channels(errors: np.ndarray, channels: list[str], mask: np.ndarray | None = None,
                 n: int = 4) -> list[str]:
    """The n channels with the biggest summed error over the flagged rows `mask` (T,), or over
    all rows when nothing is flagged: the default channels to plot."""
    errors = np.asarray(errors, dtype=float)
    rows = errors[mask] if mask is not None and np.any(mask) else errors
    return [channels[c] for c in np.argsort(-rows.sum(axis=0), kind="stable")[:n]]


# ---------------------------------------------------------------- metrics beside baselines

def metrics_table(m: dict) -> pd.DataFrame:
    """Rows model, the parts it fuses (`reconstruction`), pca, random (those present), then the same point-wise when metrics.json has
    them (`model · point-wise`, ...); columns auroc, auprc, best_f1, f1, pa_f1, labelled for
    people (pa_f1 as 'PA-F1 (point-adjusted)'), rounded to 3 decimals. None shows as NaN."""
    rows = {"model": m, **(m.get("parts") or {}), **(m.get("baselines") or {})}
    rows |= {f"{name} · point-wise": r for name, r in (m.get("pointwise") or {}).items()}
    frame = pd.DataFrame([[_num(r.get(k)) for k in METRIC_LABELS] for r in rows.values()],
                         index=pd.Index(list(rows), name="scores"),
                         columns=list(METRIC_LABELS.values()))
    return frame.round(3)


def postprocess_caption(m: dict) -> str | None:
    """What post-processing the headline rows had, in words; None when the run had none."""
    window = (m.get("postprocess") or {}).get("smooth", 1)
    if window <= 1:
        return None
    fused = (" The model's score is the mean of its parts' log scores (reconstruction and a PCA "
             "fitted on the training data), each in standard deviations of its normal "
             "validation scores; each part is also scored alone.") if m.get("parts") else ""
    return (f"Every detector's score after a centred {window}-step moving mean, applied alike "
            f"to all; the point-wise rows are without it.{fused}")


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


def _num(value) -> float:
    return float("nan") if value is None else float(value)


# ---------------------------------------------------------------- the runs index as tables

def index_entries(ws: Path) -> list[dict]:
    """The runs index, newest first, with the status of live runs re-read from their folder
    (so a lost run shows `failed (lost)`, and a run that just ended shows its end state)."""
    out = []
    for entry in RunIndex(ws).entries():
        if entry.get("status") in jobs.LIVE_STATES:
            try:
                entry = entry | {"status": jobs.run_status(runs_dir(ws) / entry["run_id"])["label"]}
            except JobError:
                pass  # no progress.json yet: keep what the index says
        out.append(entry)
    return sorted(out, key=lambda e: e["run_id"], reverse=True)


def finished_runs(ws: Path) -> list[dict]:
    """Index entries of done runs whose folder still exists, newest first."""
    return [e for e in index_entries(ws)
            if e.get("status") == "done" and (runs_dir(ws) / e["run_id"]).is_dir()]


def human_time(ts: float | None) -> str:
    """'2026-11-29 00:30' (local time) from a Unix time; '' when unknown."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def human_duration(seconds: float | None) -> str:
    """'19 s', '3 min 05 s', '2 h 04 min'; '' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    return format_eta(seconds)


def _short_path(path: str) -> str:
    """The last two parts of a data path ('samples/timeseries'): enough to tell datasets apart."""
    return "/".join(Path(path).parts[-2:])


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v is not None and k != "device")


def _metric_column(stream: Stream, key: str) -> str:
    """'AUPRC' while there is one stream; 'patchtst AUPRC' once there are several."""
    label = stream.headline[key]
    return label if len(STREAMS) == 1 else f"{stream.name} {label}"


def grouped_by_model(entries: list[dict]) -> list[dict]:
    """`entries` (newest first) with each model run's scorings right after it, newest first; a
    scoring whose model run is not listed keeps its place."""
    listed = {e["run_id"] for e in entries}
    scorings: dict[str, list[dict]] = {}
    for e in entries:
        if e.get("from_run") in listed:
            scorings.setdefault(e["from_run"], []).append(e)
    out = []
    for e in entries:
        if e.get("from_run") not in listed:
            out += [e, *scorings.get(e["run_id"], [])]
    return out


def runs_table(entries: list[dict]) -> pd.DataFrame:
    """One row per run: status, start time, duration, streams, data, key params, headline
    metrics (NaN where missing); a scoring says which model run scored. Indexed by run id."""
    rows = []
    for e in entries:
        model = e.get("from_run")
        row = {"name": e.get("name") or EMPTY, "status": e.get("status", ""),
               "model": f"↳ scoring with {model}" if model else "trained here",
               "started": human_time(e.get("started")) or EMPTY,
               "duration": human_duration(e.get("duration_s")) or EMPTY,
               "streams": ", ".join(e.get("streams") or []),
               "data": ", ".join(_short_path(p) for p in (e.get("data") or {}).values() if p),
               "params": _params_text(e.get("params") or {}) or EMPTY}
        for stream in STREAMS.values():
            got = (e.get("metrics") or {}).get(stream.name) or {}
            row |= {_metric_column(stream, k): _num(got.get(k))
                    for k in list(stream.headline)[:HEADLINE_COLUMNS]}
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index([e["run_id"] for e in entries], name="run"))


def compare_metrics(entries: list[dict]) -> pd.DataFrame:
    """Rows '<stream>: <metric>' (the headline metrics that any of the runs has), one
    column per run; NaN where a run lacks one."""
    table = {}
    for e in entries:
        got = e.get("metrics") or {}
        table[e["run_id"]] = {f"{s.name}: {label}": _num((got.get(s.name) or {}).get(k))
                              for s in STREAMS.values() for k, label in s.headline.items()}
    return pd.DataFrame(table).dropna(how="all").rename_axis("metric")


def _flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


_UNUSED = object()  # a run's setting of a stream it did not train


def _used_settings(cfg: dict) -> dict:
    """A run.yaml's dotted settings, those of streams the run had no data for marked unused."""
    flat = _flatten(cfg)
    pipeline = cfg.get("pipeline")
    pipeline = pipeline if isinstance(pipeline, dict) else {}  # a bad run.yaml: nothing used
    for s in STREAMS.values():
        if not pipeline.get(s.data_key):
            flat |= {k: _UNUSED for k in flat if k.startswith(f"{s.name}.")}
    return flat


def compare_configs(run_dirs: list[Path]) -> pd.DataFrame:
    """The dotted run.yaml keys whose values differ between the runs: one row per key, one
    column per run (values as text). A stream's settings are compared only between the runs
    that trained that stream; a run that did not, or lacks the key, shows '–'."""
    flat = {}
    for d in map(Path, run_dirs):
        try:
            cfg = read_yaml(d / "run.yaml")
        except (ConfigError, OSError):
            cfg = None
        flat[d.name] = _used_settings(cfg) if isinstance(cfg, dict) else {}
    rows = {}
    for key in sorted(set().union(*flat.values())) if flat else []:
        values = [f.get(key) for f in flat.values()]
        if len({repr(v) for v in values if v is not _UNUSED}) > 1:
            rows[key] = [EMPTY if v is _UNUSED or v is None or v == "" else str(v)
                         for v in values]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(flat)).rename_axis(
        "config key")


def run_curves(ws: Path, run_ids: list[str]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """{run_id: {stream: loss curves}} from each run's metrics.jsonl (see core.curves)."""
    return {rid: loss_curves(read_metrics(runs_dir(ws) / rid)) for rid in run_ids}


def job_summary(ws: Path) -> dict | None:
    """The running job, if any: run_id, status label and a one-line `text` of where it is
    ('train_patchtst (2/6), epoch 2/3, step 40/120, ETA 12 s')."""
    run_id = jobs.running_run_id(ws)  # also a job spawned a moment ago, still importing
    if not run_id:
        return None
    try:
        progress = jobs.run_status(runs_dir(ws) / run_id)
    except JobError:
        return {"run_id": run_id, "status": "starting", "text": "starting"}
    a = progress.get("active") or {}
    parts = [f"{a['stage']} ({a.get('index')}/{a.get('n')})"] if a.get("stage") else []
    if a.get("n_epochs"):
        parts.append(f"epoch {a.get('epoch')}/{a['n_epochs']}")
    if a.get("n_steps"):
        parts.append(f"step {a.get('step')}/{a['n_steps']}")
    if a.get("eta_s") is not None:
        parts.append(f"ETA {human_duration(a['eta_s'])}")
    return {"run_id": run_id, "status": progress["label"],
            "text": ", ".join(parts) or progress["label"]}
