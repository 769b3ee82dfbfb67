"""The dataset store: uploaded datasets under safe names, written and deleted atomically.

Store layout: `<workspace>/uploads/<kind>/<dataset>/` with `kind` a stream's data kind
("timeseries", "images"). A time-series dataset folder holds `train.csv[.gz]`, optional
`test.csv[.gz]` and `test_label.csv[.gz]` (the layout `core.timeseries.data.load_ts_dataset`
reads); an image dataset folder holds an MVTec tree (`train/good/`, optional `test/<type>/` and
`ground_truth/<type>/`) or a flat folder of training images (what
`core.images.data.load_image_dataset` reads). Each also holds `upload.json` (the names the files
had on the user's machine, and the upload round that saved it). The bundled sample,
`data/samples/<kind>/`, is listed first as the read-only dataset "sample".

How a stream's uploaded files become a dataset lives in its package: for time series their roles
from their names (`core/timeseries/uploads.py`), for images their place in the MVTec tree and
zips (`core/images/uploads.py`); a stream without its own keeps the files as they are
(`save_files_dataset`). All of them write through `store`. The Data page saves files the moment
they arrive; files added in the same upload round replace that round's dataset (and only that
one: see `store`'s `round_id`).

A dataset appears at once or not at all: its files are written to a hidden staging folder that is
renamed into place, and deletion renames it away before removing it, so a reader (the Train page,
another tab) never sees half a dataset. A replace renames the old folder away, then the new one in:
a reader sees the old dataset, for an instant none, then the new one. Files are kept even when
they do not validate: nothing a user uploads is lost; `dataset_summary` reports the problem and
the user may delete it.

No streamlit and no torch here: pages and the pipeline both import this module."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable


from core.errors import DataError
from core.fileio import read_json, write_json
from core.runs import PROJECT_ROOT
from core.streams import STREAMS, resolve

MAX_NAME = 100
SAMPLE = "sample"  # the bundled dataset's name; reserved, so an upload cannot shadow it
META_FILE = "upload.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

Upload = tuple[str, "bytes | BinaryIO"]  # (the user's file name, its content)


@dataclass
class Dataset:
    """One stored dataset of a kind: an upload, or the bundled sample (read-only)."""

    name: str
    path: Path
    sample: bool


# ---------------------------------------------------------------- names

def sanitize_name(name: str) -> str:
    """A safe file or folder name from a user-supplied one.

    Keeps the base name only (`/` and `\\` both separate folders), drops accents ('é' → 'e'),
    replaces every other character outside `[A-Za-z0-9._-]` by `_` (runs collapse to one),
    strips leading dots and dashes and trailing dots, caps the length at 100. Raises DataError
    when no letter or digit is left (so never '', '.', '..' or '___').

    >>> sanitize_name("../../etc/passwd"), sanitize_name("C:\\\\x\\\\Données été.csv")
    ('passwd', 'Donnees_ete.csv')
    """
    base = re.split(r"[/\\]", str(name))[-1].strip()
    plain = "".join(c for c in unicodedata.normalize("NFKD", base)
                    if not unicodedata.combining(c))
    safe = _UNSAFE.sub("_", plain).lstrip(".-")[:MAX_NAME].rstrip(".")
    if not re.search(r"[A-Za-z0-9]", safe):
        raise DataError(f"name {name!r}: expected at least one letter (A-Z) or digit in it, "
                        f"found none after removing unsafe characters")
    return safe


def _check_kind(kind: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]+", kind):
        raise ValueError(f"data kind {kind!r}: expected lowercase letters, digits or '_'")
    return kind


def uploads_dir(ws: Path, kind: str) -> Path:
    """`<workspace>/uploads/<kind>` (not created)."""
    return Path(ws) / "uploads" / _check_kind(kind)


def sample_dir(kind: str) -> Path:
    """The bundled sample of a kind (`data/samples/<kind>/` in the project); may not exist."""
    return PROJECT_ROOT / "data" / "samples" / _check_kind(kind)


# ---------------------------------------------------------------- the store

def list_datasets(ws: Path, kind: str) -> list[Dataset]:
    """The bundled sample first (when the project has one), then uploads sorted by name."""
    out = [Dataset(SAMPLE, sample_dir(kind), True)] if sample_dir(kind).is_dir() else []
    root = uploads_dir(ws, kind)
    if root.is_dir():
        folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        out += [Dataset(p.name, p, False) for p in sorted(folders, key=lambda p: p.name.lower())]
    return out


def write_upload(content: bytes | BinaryIO, path: Path) -> None:
    if isinstance(content, (bytes, bytearray, memoryview)):
        path.write_bytes(content)
        return
    content.seek(0)  # an UploadedFile may have been read already
    with open(path, "wb") as f:
        shutil.copyfileobj(content, f, 1024 * 1024)  # no second copy of a large upload


def listed(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def save_files_dataset(ws: Path, kind: str, dataset: str, files: list[Upload], *,
                       round_id: str | None = None) -> Path:
    """Store uploaded files as they are (names sanitised) as `<ws>/uploads/<kind>/<dataset>/`:
    the upload of a stream whose data needs no layout of its own. DataError for a bad name, no
    files, or two files with one name; `round_id` as in `store`."""
    name = dataset_name(dataset)
    if not files:
        raise DataError("expected at least one file, found none")
    stored = {sanitize_name(up[0]): up for up in files}
    if len(stored) < len(files) or META_FILE in stored:
        raise DataError(f"{listed([up[0] for up in files])}: expected files with different "
                        f"names, none of them {META_FILE}")

    def fill(staging: Path) -> None:
        for file_name, (_, content) in stored.items():
            write_upload(content, staging / file_name)

    return store(ws, kind, name, fill, {"files": {k: up[0] for k, up in stored.items()}},
                  round_id)


def dataset_name(dataset: str) -> str:
    """The sanitised dataset name; DataError for the sample's reserved name."""
    name = sanitize_name(dataset)
    if name == SAMPLE:
        raise DataError(f"dataset name '{SAMPLE}' is reserved for the bundled sample; "
                        f"expected another name")
    return name


def free_name(ws: Path, kind: str, wanted: str) -> str:
    """`wanted`, sanitised, or with '-2', '-3'... appended when a dataset of the kind (or the
    sample) has that name: a name the console proposes never collides with a stored one."""
    base = sanitize_name(wanted)
    taken = {d.name.lower() for d in list_datasets(ws, kind)} | {SAMPLE}
    name, n = base, 1
    while name.lower() in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def store(ws: Path, kind: str, name: str, fill: Callable[[Path], None], meta: dict,
           round_id: str | None) -> Path:
    """Write the dataset `<ws>/uploads/<kind>/<name>/` at once or not at all: `fill(folder)`
    writes its files into a hidden staging folder, `upload.json` gets `meta`, the save time and
    `round_id`, then the folder is renamed into place (replacing this round's own dataset). On
    any error nothing changes.

    `round_id` names an upload round (one tab's files, added to one uploader): saving again with
    the same id replaces the dataset that round saved, so files added to the round join it. A
    dataset saved by any other round (an earlier one, another tab) or without an id is never
    replaced: DataError when `name` is taken by any other."""
    root = uploads_dir(ws, kind)
    target = root / name
    exists = DataError(f"dataset '{name}' already exists; expected a new name "
                       f"(or delete the old one first)")
    if target.exists() and not _saved_by(target, round_id):
        raise exists
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{name}-{secrets.token_hex(4)}"
    old = root / f".replacing-{name}-{secrets.token_hex(4)}"
    try:
        try:
            staging.mkdir()
            fill(staging)
            write_json(staging / META_FILE, {"saved": time.strftime("%Y-%m-%d %H:%M:%S")}
                       | meta | ({"round": round_id} if round_id else {}))
        except OSError as e:  # a full disk, no permission...: a message, not a traceback
            raise DataError(f"dataset '{name}' could not be stored in {root} "
                            f"({e.strerror or e}); nothing was saved") from None
        if _saved_by(target, round_id):
            try:
                os.rename(target, old)  # this round's own dataset, out of the way
            except FileNotFoundError:
                pass  # deleted meanwhile: save it afresh
        try:
            os.rename(staging, target)  # atomic; fails if another save took the name meanwhile
        except OSError:
            raise exists from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def _saved_by(path: Path, round_id: str | None) -> bool:
    """Whether the dataset folder `path` exists and was saved by upload round `round_id`."""
    meta = read_json(path / META_FILE) if path.is_dir() else None
    return bool(round_id) and isinstance(meta, dict) and meta.get("round") == round_id


def delete_dataset(ws: Path, kind: str, name: str) -> None:
    """Remove an uploaded dataset. DataError for the sample, a missing one, or a name that is not
    a plain dataset name (no path tricks)."""
    if name == SAMPLE:
        raise DataError(f"'{SAMPLE}' is the bundled sample dataset; it is read-only")
    root = uploads_dir(ws, kind)
    path = root / name
    plain = name and not name.startswith(".") and "/" not in name and "\\" not in name
    if not plain or path.resolve().parent != root.resolve() or not path.is_dir():
        raise DataError(f"no dataset {name!r} in {root}")
    trash = root / f".deleting-{name}-{secrets.token_hex(4)}"
    os.rename(path, trash)  # gone from listings at once, even if removal takes a while
    shutil.rmtree(trash, ignore_errors=True)


def stored_files(path: Path) -> list[dict]:
    """The data files directly in a dataset folder: name, size in bytes, and the uploaded name if
    known (time series; an image dataset's files are in subfolders)."""
    path = Path(path)
    originals = upload_meta(path).get("files", {})
    return [{"name": p.name, "bytes": p.stat().st_size, "uploaded_as": originals.get(p.name)}
            for p in sorted(path.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.name != META_FILE]


def upload_meta(path: Path) -> dict:
    """A dataset's `upload.json` ({} for the sample or when unreadable): "saved", "round", and
    "files" ({stored name: uploaded name}, time series) or "uploaded" ([names], images)."""
    meta = read_json(Path(path) / META_FILE)
    return meta if isinstance(meta, dict) else {}


def dataset_stamp(path: Path) -> tuple:
    """Changes whenever a file of the dataset (in any subfolder) changes:
    ((relative path, size, mtime_ns), ...); a cache key beside the path."""
    path = Path(path)
    if not path.is_dir():
        return ()
    files = [(p, p.stat()) for p in sorted(path.rglob("*")) if p.is_file()]
    return tuple((p.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns) for p, st in files)


# ---------------------------------------------------------------- validation

def check_dataset(path: Path, kind: str = "timeseries") -> tuple[dict, object | None]:
    """(`dataset_summary(path, kind)`, the loaded dataset or None when it does not validate):
    read and summarised by the functions the kind's stream spec names."""
    spec = STREAMS.by_kind(_check_kind(kind))
    load, summarize_kind = resolve(spec.load_dataset), resolve(spec.summarize)
    try:
        ds = load(path)
    except DataError as e:
        return {"error": str(e), "warnings": []}, None
    return summarize_kind(ds) | {"error": None}, ds


def dataset_summary(path: Path, kind: str = "timeseries") -> dict:
    """The kind's summary of the dataset (`core.timeseries.data.summarize`,
    `core.images.data.summarize_images`) plus `error`: None when it loads, else the core's
    message (naming the file, and for a CSV the column and row). On error the summary holds only
    `error` and `warnings` ([]). An image dataset's corrupt files are skipped and named in its
    `skipped` and `warnings`; it is an error only when no training image is left."""
    return check_dataset(path, kind)[0]
