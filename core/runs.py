"""The workspace, run folders and the runs index.

Workspace (default `artifacts/` at the project root; `--workdir` or `ATC_WORKDIR` override):
`uploads/`, `runs/<run_id>/` (one folder per run), `runs/index.json`. The index holds one entry
per run, derived only from that run's folder (`summarize_run`), so it can always be rebuilt; it
is rewritten atomically under a file lock, so the pipeline and the console can both update it."""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import secrets
import shutil
import time
from pathlib import Path

from core.config import RunConfig, load_config, read_yaml, save_config
from core.errors import ConfigError, DataError, JobError
from core.fileio import read_json, write_json
from core.progress import read_progress
from core.run_files import RunFiles
from core.runner import streams_with_data
from core.streams import STREAMS, path_keys

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INDEX_FILE = "index.json"


def workspace(workdir: str | Path | None = None) -> Path:
    """The workspace folder, created if needed: `workdir`, else $ATC_WORKDIR, else artifacts/.
    DataError when it cannot be a folder (a file is in the way, no permission...)."""
    path = Path(workdir or os.environ.get("ATC_WORKDIR") or PROJECT_ROOT / "artifacts")
    try:
        (path / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        found = "a file" if path.is_file() else e.strerror or str(e)
        raise DataError(f"workspace {path}: expected a folder (or a place to create one), "
                        f"found {found}") from None
    return path.resolve()


def runs_dir(ws: Path) -> Path:
    return Path(ws) / "runs"


def workspace_of(run_dir: Path) -> Path:
    """The workspace a run folder belongs to (`<workspace>/runs/<run_id>`); JobError for a
    folder that is not in a `runs/` folder (its lock and index would land in a stranger's)."""
    run_dir = Path(run_dir).resolve()
    if run_dir.parent.name != "runs":
        raise JobError(f"{run_dir}: expected a run folder inside a workspace's runs/ folder "
                       "(<workspace>/runs/<run_id>)")
    return run_dir.parent.parent


def new_run_dir(ws: Path) -> Path:
    """A fresh, empty run folder named by start time plus a random suffix (sortable, unique)."""
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    path = runs_dir(ws) / run_id
    path.mkdir(parents=True)
    return path


def new_run(ws: Path | str | None, overrides: list[str] | dict) -> Path:
    """Merge the config with `overrides`, check that every named data path exists (stored
    absolute, so the run does not depend on the working directory), then create the run
    folder in workspace `ws` (nothing is created when a check fails)."""
    cfg = load_config(overrides)
    if not streams_with_data(cfg):
        raise DataError("no data given: choose a dataset for at least one stream "
                        "(CLI: --ts-data FOLDER_OR_CSV and/or --img-data FOLDER_OR_ZIP)")
    for key in path_keys():
        value = getattr(cfg.pipeline, key)
        if value:
            path = Path(value).expanduser().resolve()
            if not path.exists():
                raise DataError(f"pipeline.{key}: {path}: no such file or folder")
            setattr(cfg.pipeline, key, str(path))
    return create_run(workspace(ws), cfg)


def create_run(ws: Path, cfg: RunConfig) -> Path:
    """A new run folder holding the runtime config (run.yaml) the run will use."""
    run_dir = new_run_dir(ws)
    save_config(cfg, RunFiles(run_dir).config)
    return run_dir


MAX_ENTRY_BYTES = 16 * 1024  # an index entry larger than this (a huge run.yaml) is refused


def _run_yaml(run_dir: Path) -> dict:
    """run.yaml as {section: mapping}; ConfigError naming the problem when it is not that."""
    path = RunFiles(run_dir).config
    cfg = read_yaml(path)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, found {type(cfg).__name__}")
    for section, value in cfg.items():
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{path}: '{section}' is {type(value).__name__}; expected a "
                              "mapping of keys")
    return cfg


def _scalar(value):
    """A value fit for the index: a finite number, bool, None, or a string (capped)."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)[:200]


def summarize_run(run_dir: Path) -> dict:
    """The index entry of one run, from its run.yaml, progress.json and metrics files. A run
    whose run.yaml cannot be read is listed with status `unreadable` and the reason in `error`
    (one bad run folder never hides the others)."""
    run_dir = Path(run_dir)
    try:
        cfg, problem = _run_yaml(run_dir), None
    except FileNotFoundError:
        cfg, problem = {}, None  # not written yet: nothing to show, nothing wrong
    except (ConfigError, OSError) as e:
        cfg, problem = {}, str(e)
    entry = _entry(run_dir, cfg)
    if problem is None and len(json.dumps(entry)) > MAX_ENTRY_BYTES:
        problem = f"{run_dir / 'run.yaml'}: its index entry is over {MAX_ENTRY_BYTES:,} bytes"
        entry = _entry(run_dir, {})
    if problem:
        entry.update(status="unreadable", error=problem[:500])
    return entry


def _entry(run_dir: Path, cfg: dict) -> dict:
    pipe = cfg.get("pipeline") or {}
    progress = read_progress(run_dir)
    progress = progress if isinstance(progress, dict) else {}
    started, finished = (_scalar(progress.get(k)) for k in ("started", "finished"))
    timed = all(isinstance(t, (int, float)) and not isinstance(t, bool)
                for t in (started, finished))
    streams = [s for s in STREAMS.values() if pipe.get(s.data_key)]
    metrics = {}
    for s in streams:
        m = read_json(RunFiles(run_dir).stream(s.name).metrics)
        m = m if isinstance(m, dict) else {}
        metrics[s.name] = {k: _scalar(m[k]) for k in s.headline if k in m}
    return {
        "run_id": run_dir.name,
        "name": _scalar(pipe.get("name", "")),
        "status": _scalar(progress.get("status", "unknown")),
        "error": _scalar(progress.get("error")),
        "started": started,
        "finished": finished,
        "duration_s": round(finished - started, 1) if timed else None,
        "streams": [s.name for s in streams],
        "from_run": Path(str(pipe["from_run"])).name if pipe.get("from_run") else None,
        "data": {s.kind: _scalar(pipe.get(s.data_key)) for s in streams},
        "params": _key_params(pipe, cfg),
        "metrics": metrics,
    }


def _key_params(pipe: dict, cfg: dict) -> dict:
    """{"device": ..., "patchtst.preset": ..., "patchtst.epochs": ..., ...} for the streams run."""
    params = {"device": _scalar(pipe.get("device"))} if pipe else {}
    for stream, spec in STREAMS.items():
        section = cfg.get(stream)
        if pipe.get(spec.data_key) and section:
            params[f"{stream}.preset"] = _scalar(section.get("preset"))
            for part, key in spec.key_params:
                group = section.get(part)
                params[f"{stream}.{key}"] = _scalar(group.get(key)) \
                    if isinstance(group, dict) else None
    return params


class RunIndex:
    """`runs/index.json`: a list of run entries, newest first."""

    def __init__(self, ws: Path):
        self.dir = runs_dir(ws)
        self.path = self.dir / INDEX_FILE

    @contextlib.contextmanager
    def _locked(self):
        with open(self.dir / ".index.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _stored(self) -> list[dict] | None:
        """index.json's entries; None when it is missing, unreadable or not a list of entries
        (valid JSON of another shape counts as corrupt)."""
        data = read_json(self.path)
        ok = isinstance(data, list) and all(
            isinstance(e, dict) and isinstance(e.get("run_id"), str) for e in data)
        return data if ok else None

    def entries(self) -> list[dict]:
        """The index; rebuilt from the run folders when it is missing or unreadable."""
        data = self._stored()
        return data if data is not None else self.rebuild()

    def _write(self, entries: list[dict]) -> None:
        entries.sort(key=lambda e: e["run_id"], reverse=True)
        write_json(self.path, entries)

    def _scan(self) -> list[dict]:
        return [summarize_run(p) for p in sorted(self.dir.iterdir())
                if p.is_dir() and RunFiles(p).config.exists()]

    def _current(self) -> list[dict]:
        """The stored entries, or a fresh scan when index.json is missing or unreadable (so an
        update never drops the other runs). Call with the lock held."""
        data = self._stored()
        return data if data is not None else self._scan()

    def update(self, run_dir: Path) -> dict:
        """Recompute the entry of `run_dir` and put it in the index."""
        entry = summarize_run(run_dir)
        with self._locked():
            entries = [e for e in self._current() if e.get("run_id") != entry["run_id"]]
            self._write(entries + [entry])
        return entry

    def remove(self, run_id: str) -> None:
        with self._locked():
            self._write([e for e in self._current() if e.get("run_id") != run_id])

    def rebuild(self) -> list[dict]:
        """Scan every run folder and rewrite the index from scratch."""
        with self._locked():
            entries = self._scan()
            self._write(entries)
        return entries


def runs_using(ws: Path, path: Path) -> list[str]:
    """The runs (ids, newest first) whose run.yaml names `path` or a file inside it as data;
    runs whose run.yaml cannot be read are left out."""
    target = Path(path).resolve()
    users = []
    for run_dir in sorted(runs_dir(ws).iterdir(), reverse=True):
        if not run_dir.is_dir():
            continue
        try:
            pipe = _run_yaml(run_dir).get("pipeline") or {}
        except (ConfigError, OSError):
            continue
        named = [Path(str(pipe[k])) for k in path_keys() if pipe.get(k)]
        if any(p == target or target in p.parents for p in named):
            users.append(run_dir.name)
    return users


def delete_run(ws: Path, run_id: str) -> None:
    """Remove a run folder and its index entry. The caller checks that it is not running
    (`core.jobs.delete_run` does)."""
    path = runs_dir(ws) / run_id
    if path.resolve().parent != runs_dir(ws).resolve() or not path.is_dir():
        raise FileNotFoundError(f"no run {run_id!r} in {runs_dir(ws)}")
    shutil.rmtree(path)
    RunIndex(ws).remove(run_id)
