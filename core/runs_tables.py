"""The runs index as tables for the Runs and Results pages: `runs_table`, `compare_metrics`,
`compare_configs`, `grouped_by_model`, plus `finished_runs` (the Results picker),
`index_entries` (live statuses refreshed), `run_curves` and `job_summary` (the running job in
one line). Each stream's columns come from its spec (headline metrics and labels).

No torch and no streamlit here: every page imports this at load."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core import jobs
from core.config import run_settings
from core.curves import loss_curves
from core.errors import JobError
from core.train_view import format_eta
from core.progress import read_metrics
from core.results import num
from core.runs import RunIndex, runs_dir
from core.streams import STREAMS, Stream

HEADLINE_COLUMNS = 3  # of each stream's headline metrics, the runs tables show the first three
EMPTY = "–"  # a table cell with no value (None, a key a run lacks, a stream it did not use)


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
            row |= {_metric_column(stream, k): num(got.get(k))
                    for k in list(stream.headline)[:HEADLINE_COLUMNS]}
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index([e["run_id"] for e in entries], name="run"))


def compare_metrics(entries: list[dict]) -> pd.DataFrame:
    """Rows '<stream>: <metric>' (the headline metrics that any of the runs has), one
    column per run; NaN where a run lacks one."""
    table = {}
    for e in entries:
        got = e.get("metrics") or {}
        table[e["run_id"]] = {f"{s.name}: {label}": num((got.get(s.name) or {}).get(k))
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
        cfg = run_settings(d)
        flat[d.name] = _used_settings(cfg) if cfg else {}
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
