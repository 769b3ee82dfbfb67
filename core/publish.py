"""The `publish` stage: a run summary beside the outputs and the run's entry in the runs index."""
from __future__ import annotations

from core.fileio import read_json, write_json
from core.run_files import RunFiles
from core.runs import RunIndex
from core.runner import Context, streams_with_data


def publish(ctx: Context) -> None:
    run = RunFiles(ctx.run_dir)
    summary = {"run_id": ctx.run_dir.name, "streams": {}}
    for stream in streams_with_data(ctx.cfg):
        out = run.stream(stream)
        summary["streams"][stream] = {
            "data": read_json(out.summary),
            "training": read_json(out.training),
            "metrics": read_json(out.metrics),
        }
    write_json(run.summary, summary)
    RunIndex(ctx.run_dir.parent.parent).update(ctx.run_dir)
    ctx.log.info("    run folder: %s", ctx.run_dir)
