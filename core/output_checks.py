"""The `validate_outputs` stage: check what the run produced before calling it done.

Per stream that ran, by the check its spec names (`check_outputs`, built from the helpers
here): files present, the checkpoint loads with `weights_only=True`, one score
per scored row, no NaN, metrics finite. The findings go to `validation.json`; any failed check
fails the run (`ValidationFailed`), naming what is wrong."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import ValidationFailed
from core.fileio import read_json, write_json
from core.runner import Context, streams_with_data
from core.streams import STREAMS, resolve
from core.run_files import RunFiles, StreamFiles
from core.training import load_checkpoint


class Checks:
    def __init__(self):
        self.items: list[dict] = []

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append({"check": name, "ok": bool(ok), "detail": detail})
        return ok

    @property
    def failed(self) -> list[dict]:
        return [c for c in self.items if not c["ok"]]


def _finite_numbers(obj) -> bool:
    """True when every number in a nested JSON value is finite (None is allowed: 'n/a')."""
    if isinstance(obj, dict):
        return all(_finite_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite_numbers(v) for v in obj)
    return not isinstance(obj, float) or math.isfinite(obj)


def check_common(out: Path, files: tuple[str, ...], checks: Checks,
                  checkpoint: Path | None = None) -> dict:
    """Files present, checkpoint loads (`checkpoint`: a scoring run's is the model run's), one
    finite score per scored item; returns scoring.json."""
    stream, layout = out.name, StreamFiles(out)
    own = () if checkpoint else (StreamFiles.checkpoint,)
    for name in (StreamFiles.summary, *own, StreamFiles.scores, StreamFiles.scoring, *files):
        checks.add(f"{stream}/{name} exists", (out / name).exists())
    try:
        ckpt = load_checkpoint(checkpoint or layout.checkpoint)
        checks.add(f"{stream} checkpoint loads (weights_only=True)", "model" in ckpt)
    except Exception as e:  # any failure to load is the finding itself
        checks.add(f"{stream} checkpoint loads (weights_only=True)", False,
                   f"{type(e).__name__}: {e}")
    scoring = read_json(layout.scoring, {})
    if layout.scores.exists():
        scores = pd.read_csv(layout.scores)
        checks.add(f"{stream}: one score per scored item", len(scores) == scoring.get("rows"),
                   f"{len(scores)} scores, {scoring.get('rows')} scored")
        checks.add(f"{stream}: no NaN scores", bool(scores["score"].notna().all()),
                   f"{int(scores['score'].isna().sum())} NaN")
    return scoring


def check_metrics(out: Path, expected: bool, checks: Checks) -> None:
    if expected:
        m = read_json(StreamFiles(out).metrics)
        checks.add(f"{out.name}/{StreamFiles.metrics} exists", m is not None)
        checks.add(f"{out.name} metrics finite", m is not None and _finite_numbers(m))


def check_array(out: Path, file: str, key: str, scoring: dict, checks: Checks) -> None:
    """`file`'s array `key` is finite and has one entry per scored item."""
    if (out / file).exists():
        with np.load(out / file) as z:
            array = z[key]
        checks.add(f"{out.name}/{file}: finite, one entry per scored item",
                   len(array) == scoring.get("rows") and bool(np.isfinite(array).all()),
                   f"shape {array.shape}")


def validate_outputs(ctx: Context) -> None:
    checks = Checks()
    model_run = ctx.cfg.pipeline.from_run  # a scoring run: the model run holds the checkpoints
    for stream in streams_with_data(ctx.cfg):
        resolve(STREAMS[stream].check_outputs)(
            ctx.run_dir / stream, checks,
            RunFiles(model_run).stream(stream).checkpoint if model_run else None)
    write_json(RunFiles(ctx.run_dir).validation,
               {"ok": not checks.failed, "checks": checks.items})
    if checks.failed:
        raise ValidationFailed("output checks failed: " + "; ".join(
            f"{c['check']} ({c['detail']})" if c["detail"] else c["check"] for c in checks.failed))
    ctx.log.info("    %d checks passed", len(checks.items))
