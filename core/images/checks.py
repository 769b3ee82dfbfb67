"""The image stream's output checks (`validate_outputs`, through its spec)."""
from __future__ import annotations

from pathlib import Path

from core.fileio import read_json
from core.images.files import ImageFiles
from core.output_checks import Checks, check_array, check_common, check_metrics


def check_outputs(out: Path, checks: Checks, checkpoint: Path | None = None) -> None:
    """Common checks, the maps finite with one per scored image, and metrics when the scored
    test images include defects."""
    scoring = check_common(out, (ImageFiles.maps,), checks, checkpoint)
    check_array(out, ImageFiles.maps, "maps", scoring, checks)
    summary = read_json(ImageFiles(out).summary, {})
    check_metrics(out, summary.get("scored") == "test" and summary.get("test_defect", 0) > 0,
                  checks)
