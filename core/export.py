"""Export a finished run's models to run without this project: one folder per trained stream,
`OUT/patchtst/` and `OUT/swinmae/`, each holding `model.onnx` (the network, traced with
`torch.onnx`), `model.json` (everything else scoring needs: channels, normalisation, windows,
scales, post-processing, threshold; image size, mode, normal-map statistics, score method) and
`predict.py` (numpy, pandas, pillow and onnxruntime only), which writes the same scores.csv as
the run (the image one, with `--maps`, its pixel maps as well). Each stream's exporter (its
spec's `exporter`) has `export(run_dir, folder)` and traces its network with
`core.onnx_export`. Importing this module does not import torch."""
from __future__ import annotations

import importlib
import io
import shutil
import zipfile
from pathlib import Path

from core.errors import AtcError, DataError
from core.run_files import RunFiles
from core.scoring_runs import model_run_config
from core.streams import STREAMS

def exportable_streams(run_dir: Path) -> list[str]:
    """The streams whose model the run trained and scored."""
    run = RunFiles(run_dir)
    return [s for s, spec in STREAMS.items() if spec.exporter
            and run.stream(s).checkpoint.is_file() and run.stream(s).scoring.is_file()]


def export_run(run_dir: Path, out: Path | None = None, keep_existing: bool = False
               ) -> list[Path]:
    """Export every trained stream of the finished run `run_dir` to `out` (default
    RUN_DIR/export/); returns the stream folders. `keep_existing`: a stream whose folder is
    already complete is kept, not traced again (a finished run's models do not change).
    DataError naming the run when it is not finished, is a scoring run, or trained nothing."""
    run_dir = Path(run_dir).resolve()
    model_run_config(run_dir, "export")
    streams = exportable_streams(run_dir)
    if not streams:
        raise DataError(f"run {run_dir.name}: expected a trained and scored model "
                        "(<stream>/best.pt and scoring.json), found none")
    out = Path(out) if out else RunFiles(run_dir).export
    out.mkdir(parents=True, exist_ok=True)
    return [out / stream if keep_existing and (out / stream / "predict.py").is_file()
            else _export_stream(run_dir, stream, out) for stream in streams]


def _export_stream(run_dir: Path, stream: str, out: Path) -> Path:
    """One stream's folder, written beside its final place and then moved there, so a reader
    never sees half an export."""
    final, partial = out / stream, out / f".{stream}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        importlib.import_module(STREAMS[stream].exporter).export(run_dir, partial)
    except AtcError:
        raise
    except Exception as e:  # torch.onnx's exporter: an operator it cannot trace, ...
        shutil.rmtree(partial, ignore_errors=True)
        raise AtcError(f"run {run_dir.name}: exporting the {stream} model failed "
                       f"({type(e).__name__}: {str(e)[:300]})") from None
    for path in partial.iterdir():
        path.chmod(0o644)  # readable by whoever the folder is handed to
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final


def export_zip(run_dir: Path) -> bytes:
    """The run's export as zip bytes, with `patchtst/` and `swinmae/` at the top: what
    RUN_DIR/export/ holds, and the streams it lacks exported there now (tracing a model takes
    seconds to a minute; a second download takes none)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for folder in export_run(run_dir, keep_existing=True):
            for path in sorted(folder.iterdir()):
                z.write(path, f"{folder.name}/{path.name}")
    return buffer.getvalue()
