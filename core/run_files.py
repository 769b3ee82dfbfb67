"""A run folder's layout, named in one place: `RunFiles(run_dir)` for the run's own files and
`RunFiles(run_dir).stream(name)` (a `StreamFiles`) for what every stream's output folder holds.
A stream's own outputs extend `StreamFiles` in its package (`core/<stream>/files.py`).

On the class an entry is its file name (`RunFiles.config == "run.yaml"`), on an instance its
path (`RunFiles(d).config == d / "run.yaml"`). Stages, output checks, publish, the job control
and the Results views all name files through these; they write them with `core.fileio`
(atomically) and read them back with its forgiving `read_json`.

A leaf: pathlib only, so every layer may import it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class RunFile:
    """A file of a run layout: its name on the class, its path on an instance."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, layout, owner=None):
        return self.name if layout is None else layout.dir / self.name


@dataclass(frozen=True)
class Layout:
    """A folder whose files are `RunFile`s."""
    dir: Path

    def __post_init__(self):
        object.__setattr__(self, "dir", Path(self.dir))  # a str folder is taken too


class StreamFiles(Layout):
    """`<run>/<stream>/`: what every stream writes there."""
    summary = RunFile("data_summary.json")  # the prepared data, for Results and the index
    training = RunFile("training.json")  # how fit() ended: epochs, best epoch, losses
    checkpoint = RunFile("best.pt")  # the best epoch's weights: scoring, export, resume source
    last = RunFile("last.pt")  # the last epoch's full state: resume
    scores = RunFile("scores.csv")  # one anomaly score per step / image
    scoring = RunFile("scoring.json")  # how the scores were made (and the numbers to redo it)
    metrics = RunFile("metrics.json")  # headline metrics beside the baselines


class RunFiles(Layout):
    """`<run>/`: the run's own files, and its streams' folders."""
    config = RunFile("run.yaml")  # the merged config the run was started with
    provenance = RunFile("provenance.json")  # where the run came from (code, data, resumes)
    progress = RunFile("progress.json")  # the live status every page polls
    metrics_log = RunFile("metrics.jsonl")  # one line per logged step: the loss curves
    log = RunFile("pipeline.log")  # the pipeline's log
    stdout = RunFile("stdout.log")  # the job's stdout and stderr (tracebacks land here)
    validation = RunFile("validation.json")  # the output checks' verdicts
    summary = RunFile("summary.json")  # every stream's data, training and metrics in one file
    export = RunFile("export")  # a folder: the exported models (the CLI's `export`)
    stop_request = RunFile("stop_requested.json")  # a Stop asked for, with its grace

    def stream(self, name: str) -> StreamFiles:
        return StreamFiles(self.dir / name)
