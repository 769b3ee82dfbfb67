"""The toy stream's stages: train (the first half's mean and std), score (distance from it)."""
from pathlib import Path

import numpy as np

from core.fileio import read_json, write_json
from core.runner import Context
from tests.toy_stream.data import Levels, load_levels, summarize

STREAM = "toy"


def load(cfg) -> tuple[Levels, Levels]:
    levels = load_levels(Path(cfg.pipeline.toy_data))
    return levels, levels


def describe(levels: Levels, dataset: Levels) -> list[str]:
    return [f"{len(levels.values)} values"]


def summary(levels: Levels, dataset: Levels) -> dict:
    return summarize(levels)


def _levels(ctx: Context) -> Levels:
    return ctx.state.get(STREAM) or load(ctx.cfg)[0]


def train(ctx: Context) -> None:
    train_values = _levels(ctx).values[: len(_levels(ctx).values) // 2]
    for epoch in range(1, ctx.cfg.toy.train.epochs + 1):
        ctx.metrics.log(stage="train_toy", stream=STREAM, kind="epoch", epoch=epoch,
                        train_loss=float(train_values.var()), val_loss=float(train_values.var()))
    write_json(ctx.stream_dir(STREAM) / "model.json",
               {"mean": float(train_values.mean()), "std": float(train_values.std() or 1.0)})


def score(ctx: Context) -> None:
    out = ctx.stream_dir(STREAM)
    model = read_json(out / "model.json")
    levels = _levels(ctx)
    scores = np.abs(levels.values - model["mean"]) / model["std"]
    flagged = scores > ctx.cfg.toy.score.threshold
    write_json(out / "scoring.json", {"rows": len(scores), "flagged": int(flagged.sum())})
    np.savetxt(out / "scores.txt", scores)
    if levels.labels is not None:
        anomalies = levels.labels > 0
        write_json(out / "metrics.json",
                   {"hit_rate": float(flagged[anomalies].mean()) if anomalies.any() else None})


def check_outputs(out: Path, checks, checkpoint: Path | None = None) -> None:
    scoring = read_json(out / "scoring.json") or {}
    checks.add("toy/scoring.json has one score per value",
               (out / "scores.txt").is_file()
               and len(np.loadtxt(out / "scores.txt", ndmin=1)) == scoring.get("rows"))
