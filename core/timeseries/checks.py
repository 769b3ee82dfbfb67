"""The time-series stream's output checks (`validate_outputs`, through its spec)."""
from __future__ import annotations

from pathlib import Path

from core.fileio import read_json
from core.timeseries.files import SeriesFiles
from core.output_checks import Checks, check_array, check_common, check_metrics


def check_outputs(out: Path, checks: Checks, checkpoint: Path | None = None) -> None:
    """Common checks, the per-channel errors finite with one row per scored step, and metrics
    when the scored data had labels."""
    scoring = check_common(out, (SeriesFiles.channels,), checks, checkpoint)
    check_array(out, SeriesFiles.channels, "errors", scoring, checks)
    summary = read_json(SeriesFiles(out).summary, {})
    labelled = (summary.get(summary.get("scored", "test")) or {}).get("label_ratio") is not None
    check_metrics(out, labelled, checks)
