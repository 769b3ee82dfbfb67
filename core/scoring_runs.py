"""Scoring runs: the models of a finished run score new data, as a run of its own.

A scoring run is a run folder like any other (`runs/<id>/`, progress, log, index, Results); its
run.yaml is the model run's config with `pipeline.from_run` naming that run and the data keys
naming the new data, and its stages are `core.streams.plan(scoring=True)`. Each stream's scoring
module (its spec's `scoring`) has `load(cfg) -> (prepared, data_summary, log lines)`, `score(ctx)`
and `evaluate(ctx)`. Nothing here imports torch."""
from __future__ import annotations

import importlib
from pathlib import Path

from core import jobs
from core.config import RunConfig, read_config, run_settings
from core.errors import DataError
from core.fileio import write_json
from core.progress import read_progress
from core.run_files import RunFiles, StreamFiles
from core.runs import create_run, workspace, workspace_of
from core.runner import Context, streams_with_data
from core.streams import STREAMS, path_keys


def model_run_config(run_dir: Path, to: str) -> RunConfig:
    """The config of `run_dir`, a finished run that trained models (`to`: what the caller does
    with them, for the message). DataError naming the run when it is not in a workspace, not
    done, or a scoring run (which holds no model of its own)."""
    run_dir = Path(run_dir).resolve()
    workspace_of(run_dir)
    progress = read_progress(run_dir)
    status = progress.get("status") if isinstance(progress, dict) else None
    if status != "done":
        raise DataError(f"run {run_dir.name}: expected a finished (done) run to {to}, found "
                        f"{status or 'no progress.json'}")
    cfg = read_config(RunFiles(run_dir).config)
    if cfg.pipeline.from_run:
        raise DataError(f"run {run_dir.name} is a scoring run and holds no model; {to} its "
                        f"model run {Path(cfg.pipeline.from_run).name}")
    return cfg


def scoring_config(model_run: Path, data: dict[str, str | Path | None],
                   name: str = "") -> RunConfig:
    """The config of a scoring run: `model_run`'s, with `from_run` set and the data keys naming
    `data` ({stream: path}, absolute). DataError naming the run or path when the model run is
    not finished, is itself a scoring run, did not train a stream asked for, or a path is
    missing."""
    model_run = Path(model_run).resolve()
    cfg = model_run_config(model_run, "score with")
    given = {stream: path for stream, path in data.items() if path}
    if not given:
        flags = " and/or ".join(s.data[0].flag for s in STREAMS.values())
        raise DataError(f"no data given: pass {flags}")
    for key in path_keys():
        setattr(cfg.pipeline, key, None)
    for stream, path in given.items():
        if not RunFiles(model_run).stream(stream).checkpoint.is_file():
            raise DataError(f"run {model_run.name} trained no {STREAMS[stream].title} model "
                            f"({stream}/best.pt is missing); expected a run that did")
        resolved = Path(path).expanduser().resolve()
        if not resolved.exists():
            raise DataError(f"{resolved}: no such file or folder")
        setattr(cfg.pipeline, STREAMS[stream].data_key, str(resolved))
    cfg.pipeline.from_run = str(model_run)
    cfg.pipeline.name = name or f"scores with {model_run.name}"
    return cfg


def new_scoring_run(model_run: Path, data: dict[str, str | Path | None],
                    workdir: str | Path | None = None, name: str = "") -> Path:
    """A new scoring run folder (run.yaml only) in `workdir`, else in the model run's
    workspace."""
    cfg = scoring_config(model_run, data, name)
    ws = workspace(workdir) if workdir else workspace_of(Path(model_run).resolve())
    return create_run(ws, cfg)


def model_run_of(run_dir: Path) -> str | None:
    """The model run (its id) a scoring run scored with; None for a training run or an
    unreadable run.yaml."""
    pipe = run_settings(run_dir).get("pipeline")
    return Path(str(pipe["from_run"])).name if isinstance(pipe, dict) and pipe.get("from_run") \
        else None


def scoring_module(stream: str):
    return importlib.import_module(STREAMS[stream].scoring)


def check_scoring(cfg: RunConfig) -> list[str]:
    """Every stream's new data loaded and checked against the model, as the run would (raises
    DataError naming file and column); what was found, in lines."""
    lines = []
    for stream in streams_with_data(cfg):
        lines += [f"{stream}: {line}" for line in scoring_module(stream).load(cfg)[2]]
    return lines


def prepare_data(ctx: Context) -> None:
    """The scoring run's first stage: each stream's data, checked against the model run's
    model before anything is computed."""
    for stream in streams_with_data(ctx.cfg):
        data, summary, lines = scoring_module(stream).load(ctx.cfg)
        ctx.state[stream] = data
        write_json(StreamFiles(ctx.stream_dir(stream)).summary,
                   summary | {"from_run": ctx.cfg.pipeline.from_run})
        for line in lines:
            ctx.log.info("    %s", line)


def start_scoring(ws: Path, model_run: Path, data: dict[str, str | Path | None]) -> Path:
    """The console's Score new data: check the model run and the data as the run would, create
    the scoring run in `ws`, start its job; returns its folder. DataError or JobError (a job
    is running) with nothing left behind."""
    def make_run() -> Path:
        cfg = scoring_config(model_run, data)
        check_scoring(cfg)
        return create_run(ws, cfg)
    return jobs.start_new(ws, make_run)
