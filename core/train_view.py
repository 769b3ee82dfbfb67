"""What the Train page shows, computed from run files only, and the one call that starts a run.

- `live_view(run_dir)`: everything the live panel draws (status, stage states and durations,
  the active stage `i/n`, epoch and step progress, ETA, throughput, device, loss curves, the end
  of the log), read from progress.json, metrics.jsonl, run.yaml and pipeline.log. Nothing here
  talks to the training process, so a reload, a second tab or a restarted server sees the same.
- `latest_run(ws)`: the run the page follows (the running job, else the newest run).
- `training_overrides`, `preview_config`, `start_training`: the form's values → the merged
  runtime config → a run folder and a started job; `run_form`: back from a run.yaml to the
  form's values.

No torch here (the console imports this at page load)."""
from __future__ import annotations

import functools
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core import jobs
from core.config import PipelineConfig, choices, load_config, read_config, read_yaml, to_dict
from core.curves import DEFAULT_MAX_POINTS, loss_curves, shift_warnings
from core.errors import AtcError
from core.run_files import RunFiles
from core.runs import RunIndex, new_run, runs_dir
from core.runner import preflight
from core.streams import STREAMS, Stream, plan


# --- the form: fields a user may override, per stream kind ---------------------------------

def pipeline_choices(key: str) -> tuple[str, ...]:
    """The allowed values of a `pipeline` config key with choices (device, precision...)."""
    return choices(PipelineConfig, key)


FORM_PIPELINE_KEYS = ("name", "seed", "device", "precision", "distributed", "nproc", "compile")


def _field_values(stream: Stream, section: dict) -> dict[str, Any]:
    """{field key: value} of the form's fields in a stream's config section."""
    values = {}
    for f in stream.form_fields:
        node = section
        for part in f.key.split("."):
            node = node[part]
        values[f.key] = node
    return values


def preset_values(stream: Stream, preset: str) -> dict[str, Any]:
    """The form's starting values: {field key: value} of `stream` under `preset`."""
    cfg = to_dict(load_config({f"{stream.name}.preset": preset}))
    return _field_values(stream, cfg[stream.name])


@dataclass
class RunForm:
    """The Train form's values that started a run (from its run.yaml), keyed like the form."""
    data: dict[str, str | None]  # {stream: data path or None}
    presets: dict[str, str]  # {stream: preset}
    values: dict[str, dict[str, Any]]  # {stream: {field key: value}}
    pipeline: dict[str, Any]  # FORM_PIPELINE_KEYS


def run_form(run_dir: Path) -> RunForm | None:
    """What the form held when `run_dir` was started, so a reload mid-run shows the run's
    settings rather than the defaults; None when its run.yaml is missing or unreadable."""
    try:
        cfg = to_dict(read_config(RunFiles(run_dir).config))
    except (AtcError, OSError):
        return None
    return RunForm(
        data={name: cfg["pipeline"][s.data_key] for name, s in STREAMS.items()},
        presets={name: cfg[name]["preset"] for name in STREAMS},
        values={name: _field_values(s, cfg[name]) for name, s in STREAMS.items()},
        pipeline={k: cfg["pipeline"][k] for k in FORM_PIPELINE_KEYS})


def training_overrides(data: dict[str, Path | str | None], presets: dict[str, str],
                       values: dict[str, dict[str, Any]],
                       pipeline: dict[str, Any]) -> dict[str, Any]:
    """The form → dotted overrides for `load_config`. `data`, `presets`, `values` are keyed by
    stream name (`values[stream][field key]`); a stream whose data is None is not trained.
    `pipeline` holds `pipeline` keys: name, seed, device, precision, distributed, nproc,
    compile."""
    overrides: dict[str, Any] = {f"pipeline.{key}": value for key, value in pipeline.items()}
    for name, stream in STREAMS.items():
        path = data.get(name)
        overrides[f"pipeline.{stream.data_key}"] = str(path) if path else None
        if name in presets:
            overrides[f"{name}.preset"] = presets[name]
        for key, value in (values.get(name) or {}).items():
            overrides[f"{name}.{key}"] = value
    return overrides


def preview_config(overrides: dict[str, Any]) -> str:
    """The merged runtime config as YAML, exactly what run.yaml will hold (ConfigError names
    the bad key)."""
    return yaml.safe_dump(to_dict(load_config(overrides)), sort_keys=False)


def check_run(overrides: dict[str, Any]) -> list[str]:
    """The dry run's checks (`core.runner.preflight`: device, processes, each stream's data
    loaded and fitted to the config) on the form's config; what was found, in lines. Raises
    ConfigError or DataError naming the problem, before any run folder exists."""
    return preflight(load_config(overrides))  # imports torch: only when asked


def start_training(ws: Path, overrides: dict[str, Any]) -> Path:
    """Check the config, device and data as a dry run does (`check_run`), create the run
    folder, start the pipeline job; returns the run folder. Raises ConfigError (bad value or
    device), DataError (missing or unusable data), JobError (a job is running); a failed check
    leaves no run behind."""
    def make_run() -> Path:
        check_run(overrides)
        return new_run(ws, overrides)
    return jobs.start_new(ws, make_run)


def latest_run(ws: Path) -> Path | None:
    """The run the Train page follows: the one holding the job lock (or just spawned), else the
    newest run in the index (so a reload, a new tab or a restarted server lands on the same
    run)."""
    active = jobs.running_run_id(ws)  # also one spawned a moment ago (a resume from Runs)
    if active and (runs_dir(ws) / active).is_dir():
        return runs_dir(ws) / active
    for entry in RunIndex(ws).entries():  # newest first
        path = runs_dir(ws) / entry["run_id"]
        if RunFiles(path).progress.exists():  # a folder never started has nothing to show
            return path
    return None


# --- the live view ----------------------------------------------------------------------------

@dataclass
class StageView:
    name: str
    status: str  # idle, running, done, failed, stopped, skipped
    seconds: float | None  # time spent (so far, when running)
    message: str | None = None
    stream: str | None = None


@dataclass
class LiveView:
    run_id: str
    status: str  # starting, running, done, failed, stopped (planned for a dry run)
    label: str  # status for display: "failed (lost)" for a run whose process vanished
    live: bool  # starting or running
    error: str | None
    stages: list[StageView]
    active: StageView | None
    active_index: int | None  # 1-based `i` of `i/n`
    n_stages: int
    stage_text: str  # "2/6 train_patchtst", "2/6 train_patchtst (stopped)", "6/6 done"
    epoch: int | None
    n_epochs: int | None
    step: int | None
    n_steps: int | None
    fraction: float | None  # training progress in [0, 1]; None outside training
    eta_s: float | None
    eta_text: str
    samples_per_s: float | None
    device: str  # "cuda:0 NVIDIA H200 (bf16) · 3.1 GB in use", "cpu (2 threads)", "—"
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_tail: list[str] = field(default_factory=list)
    elapsed_s: float | None = None
    warnings: dict[str, str] = field(default_factory=dict)  # {stream: validation-shift warning}

    @property
    def stage_count(self) -> str:
        """'2/6' of `stage_text` (the stage a run is at or ended in); '—' before it has one."""
        count = self.stage_text.split(" ", 1)[0]
        return count if "/" in count else "—"


def format_eta(seconds: float | None) -> str:
    """'—' when unknown, '45 s', '3 min 05 s', '2 h 04 min'."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def live_view(run_dir: Path, smoothing: float = 0.0, max_points: int = DEFAULT_MAX_POINTS,
              log_lines: int = 30, now: float | None = None) -> LiveView:
    """Everything the live panel draws for one run, from its files. `smoothing` (EMA weight in
    [0, 1)) and `max_points` shape the training-loss curves; `log_lines` lines of the log tail."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    progress = jobs.run_status(run_dir)
    stream_of = {s.name: s.stream for s in plan()}
    stages = [StageView(s["name"], s["status"], _duration(s, now), s.get("message"),
                        stream_of.get(s["name"])) for s in progress["stages"]]
    active = progress.get("active") or {}
    current = next((s for s in stages if s.name == active.get("stage")), None)
    lines = read_metrics_cached(RunFiles(run_dir).metrics_log)
    curves = loss_curves(lines, smoothing, max_points)
    for stream, curve in curves.items():
        curve["val_step"] = _epoch_end_steps(lines, stream)
    step, n_steps = active.get("step"), active.get("n_steps")
    status = progress["status"]
    fraction = min(1.0, step / n_steps) if step and n_steps else 1.0 if status == "done" else None
    stream = current.stream if current else next(iter(curves), None)
    epoch, n_epochs = _epochs(run_dir, stream, active, curves)
    eta = active.get("eta_s")
    return LiveView(
        run_id=progress.get("run_id", run_dir.name), status=status, label=progress["label"],
        live=status in jobs.LIVE_STATES, error=progress.get("error"), stages=stages,
        active=current, active_index=active.get("index"), n_stages=len(stages),
        stage_text=_stage_text(stages, current, active.get("index"), status),
        epoch=epoch, n_epochs=n_epochs, step=step, n_steps=n_steps, fraction=fraction,
        eta_s=eta, eta_text=_eta_text(eta, status) if current and n_steps else "—",
        samples_per_s=active.get("samples_per_s") or _last_throughput(lines),
        device=_device_text(progress, active), curves=curves,
        log_tail=tail_log(run_dir, log_lines), warnings=shift_warnings(curves),
        elapsed_s=((progress.get("finished") or now) - progress["started"])
        if progress.get("started") else None)


def _eta_text(eta: float | None, status: str) -> str:
    """The ETA of a training stage; a live run has none until two steps were reported."""
    if eta is None and status in jobs.LIVE_STATES:
        return "estimating…"
    return format_eta(eta)


def _stage_text(stages: list[StageView], current: StageView | None, index: int | None,
                status: str) -> str:
    """'2/6 train_patchtst' while a stage runs; where a run ended otherwise."""
    n = len(stages)
    if current is not None and index:
        return f"{index}/{n} {current.name}"
    for i, stage in enumerate(stages, 1):
        if stage.status in ("failed", "stopped"):
            return f"{i}/{n} {stage.name} ({stage.status})"
    return f"{n}/{n} done" if status == "done" else "—"


def _epochs(run_dir: Path, stream: str | None, active: dict,
            curves: dict) -> tuple[int | None, int | None]:
    """(epoch, n_epochs): the active stage's counts; for an ended run, the last epoch logged.
    Before the first epoch ends progress.json has no n_epochs: it comes from run.yaml."""
    epoch = active.get("epoch")
    if epoch is None and stream in curves and len(curves[stream]["epoch"]):
        epoch = int(curves[stream]["epoch"][-1])
    return epoch, active.get("n_epochs") or _config_epochs(run_dir, stream)


def _duration(stage: dict, now: float) -> float | None:
    if not stage.get("started"):
        return None
    return (stage.get("ended") or now) - stage["started"]


def _epoch_end_steps(lines: list[dict], stream: str) -> list[float]:
    """The optimizer step at which each epoch ended (the last step line before its epoch line:
    the loop always logs an epoch's last step), so validation points share the step axis."""
    out, last = [], 0.0
    for line in lines:
        if line.get("stream") != stream:
            continue
        if line.get("kind") == "step":
            last = float(line["step"])
        elif line.get("kind") == "epoch":
            out.append(last)
    return out


def _last_throughput(lines: list[dict]) -> float | None:
    for line in reversed(lines):
        if line.get("kind") == "step" and line.get("samples_per_s") is not None:
            return line["samples_per_s"]
    return None


def _device_text(progress: dict, active: dict) -> str:
    """The device the run reported, the processes the active stage runs on (torchrun), and GPU
    memory in use when the trainer reports `gpu_mem_gb` (rank 0's, with several processes)."""
    device = progress.get("device") or "—"
    if active.get("processes"):
        device += f" × {active['processes']} processes"
    memory = active.get("gpu_mem_gb")
    return f"{device} · {memory:.1f} GB in use" if memory is not None else device


def _config_epochs(run_dir: Path, stream: str | None) -> int | None:
    """`<stream>.train.epochs` of the run's run.yaml (parsed once per change of the file)."""
    if stream is None:
        return None
    path = RunFiles(run_dir).config
    try:
        cfg = _yaml_cached(str(path), path.stat().st_mtime_ns)
    except OSError:
        return None
    return ((cfg or {}).get(stream) or {}).get("train", {}).get("epochs")


@functools.lru_cache(maxsize=32)
def _yaml_cached(path: str, mtime_ns: int) -> Any:
    return read_yaml(Path(path))


# --- reading the growing files cheaply --------------------------------------------------------

class _JsonlTail:
    """Parsed lines of one append-only JSON-lines file; each read parses only the new bytes."""

    def __init__(self):
        self.lock, self.inode, self.offset, self.lines = threading.Lock(), None, 0, []

    def read(self, path: Path) -> list[dict]:
        with self.lock:
            try:
                with open(path, "rb") as f:
                    st = os.fstat(f.fileno())
                    if st.st_ino != self.inode or st.st_size < self.offset:  # new or truncated
                        self.inode, self.offset, self.lines = st.st_ino, 0, []
                    f.seek(self.offset)
                    chunk = f.read()
            except FileNotFoundError:
                self.inode, self.offset, self.lines = None, 0, []
                return []
            end = chunk.rfind(b"\n") + 1  # a partial last line waits for its newline
            for raw in chunk[:end].splitlines():
                try:
                    self.lines.append(json.loads(raw))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
            self.offset += end
            return list(self.lines)


_TAILS: dict[str, _JsonlTail] = {}
_TAILS_LOCK = threading.Lock()


def read_metrics_cached(path: Path) -> list[dict]:
    """Like `core.fileio.read_jsonl`, but incremental across calls (one cache per file, shared
    by every browser session of this server): a live panel polling a long run parses each line
    once instead of every second."""
    key = str(Path(path).resolve())
    with _TAILS_LOCK:
        if key not in _TAILS:
            if len(_TAILS) >= 16:  # a few runs at a time are watched; forget the oldest
                _TAILS.pop(next(iter(_TAILS)))
            _TAILS[key] = _JsonlTail()
        tail = _TAILS[key]
    return tail.read(Path(path))


def tail_lines(path: Path, n: int, block: int = 8192) -> list[str]:
    """The last `n` lines of a text file, reading backwards from its end in blocks (never the
    whole file); [] when it is missing."""
    if n <= 0:
        return []
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return []
    with f:
        pos = f.seek(0, os.SEEK_END)
        data = b""
        while pos > 0 and data.count(b"\n") <= n:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-n:]


def tail_log(run_dir: Path, n: int) -> list[str]:
    """The end of pipeline.log, or of stdout.log when the pipeline never got to start its log."""
    files = RunFiles(run_dir)
    return tail_lines(files.log if files.log.exists() else files.stdout, n)
