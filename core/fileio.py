"""Small file helpers shared by the progress protocol, runs and jobs.

Files that another process reads (progress.json, index.json, run.yaml) are written atomically:
to a temporary file in the same folder, fsync'd, then renamed over the target, so a reader sees
the old or the new content, never half of it. Readers tolerate a missing file."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename (the folder must exist)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path` for a writer that wants a file name (pandas, numpy,
    torch.save); rename it over `path` when the block succeeds, remove it when it fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as indented JSON (NaN is refused: JSON readers cannot parse it)."""
    write_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON in `path`, or `default` when the file is missing or not (yet) valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return default


def append_jsonl(path: Path, obj: dict) -> None:
    """Append one JSON object as a line; one write call, so lines never interleave."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj, allow_nan=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """Every complete JSON line of `path` ([] when missing); a partial last line is ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
