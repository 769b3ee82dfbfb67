"""The `publish` stage: a run summary beside the outputs and the run's entry in the runs index."""
from __future__ import annotations

from core.fileio import read_json, write_json
from core.runs import RunIndex
from core.runner import Context, streams_with_data


def publish(ctx: Context) -> None:
    summary = {"run_id": ctx.run_dir.name, "streams": {}}
    for stream in streams_with_data(ctx.cfg):
        out = ctx.run_dir / stream
        summary["streams"][stream] = {
            "data": read_json(out / "data_summary.json"),
            "training": read_json(out / "training.json"),
            "metrics": read_json(out / "metrics.json"),
        }
    write_json(ctx.run_dir / "summary.json", summary)
    RunIndex(ctx.run_dir.parent.parent).update(ctx.run_dir)
    ctx.log.info("    run folder: %s", ctx.run_dir)
