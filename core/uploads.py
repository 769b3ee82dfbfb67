"""Uploaded datasets: safe names, the dataset store (zip extraction: `core.archive`).

Store layout: `<workspace>/uploads/<kind>/<dataset>/` with `kind` a stream's data kind
("timeseries", "images"). A time-series dataset folder holds `train.csv[.gz]`, optional
`test.csv[.gz]` and `test_label.csv[.gz]` (the layout `core.timeseries.data.load_ts_dataset`
reads); an image dataset folder holds an MVTec tree (`train/good/`, optional `test/<type>/` and
`ground_truth/<type>/`) or a flat folder of training images (what
`core.images.data.load_image_dataset` reads). Each also holds `upload.json` (the names the files
had on the user's machine, and the upload round that saved it). The bundled sample,
`data/samples/<kind>/`, is listed first as the read-only dataset "sample".

Which uploaded file is which comes from its name: for time series its role (`assign_roles`), for
images its place in the MVTec tree (`image_paths`). The Data page saves files the moment they
arrive; files added in the same upload round replace that round's dataset (and only that one: see
`save_timeseries_dataset`'s `round_id`).

A dataset appears at once or not at all: its files are written to a hidden staging folder that is
renamed into place, and deletion renames it away before removing it, so a reader (the Train page,
another tab) never sees half a dataset. A replace renames the old folder away, then the new one in:
a reader sees the old dataset, for an instant none, then the new one. Files are kept even when
they do not validate: nothing a user uploads is lost; `dataset_summary` reports the problem and
the user may delete it.

No streamlit and no torch here: pages and the pipeline both import this module."""
from __future__ import annotations

import csv
import gzip
import io
import os
import re
import secrets
import shutil
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

import pandas as pd

from core.archive import extract_zip, safe_parts
from core.errors import DataError
from core.fileio import read_json, write_json
from core.images.data import IMAGE_SUFFIXES, KINDS, LAYOUT_DIRS, SYSTEM_NAMES
from core.runs import PROJECT_ROOT
from core.streams import STREAMS, resolve
from core.timeseries.data import LABEL_COLUMNS

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


def _csv_suffix(filename: str, role: str) -> str:
    """'.csv' or '.csv.gz' for an upload named `filename`; DataError for other file types."""
    lower = filename.lower()
    if lower.endswith(".csv"):
        return ".csv"
    if lower.endswith(".gz"):  # 'x.csv.gz' and 'x.gz' both hold gzipped CSV
        return ".csv.gz"
    raise DataError(f"{filename} ({role}): expected a .csv or .csv.gz file")


def _write_upload(content: bytes | BinaryIO, path: Path) -> None:
    if isinstance(content, (bytes, bytearray, memoryview)):
        path.write_bytes(content)
        return
    content.seek(0)  # an UploadedFile may have been read already
    with open(path, "wb") as f:
        shutil.copyfileobj(content, f, 1024 * 1024)  # no second copy of a large upload


# the role of an uploaded file from the start of its name (case ignored), checked in this order:
# 'test_label' before 'test'; 'label' covers 'labels'
ROLE_PREFIXES = (("labels", ("test_label", "label")), ("test", ("test",)), ("train", ("train",)))
EXPECTED_NAMES = "train.csv, test.csv, test_label.csv"


def _listed(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


ROLES = ("train", "test", "labels", "ignore")  # what a time-series upload can be


def role_from_name(name: str) -> str | None:
    """The role a file's name says (see `assign_roles`), or None."""
    base = re.split(r"[/\\]", name)[-1].lower()
    return next((r for r, prefixes in ROLE_PREFIXES if base.startswith(prefixes)), None)


def labelled_share(up: Upload) -> float | None:
    """The share of rows a CSV upload's label-like column (`LABEL_COLUMNS`) marks anomalous;
    None when it has none or cannot be read (reading it is the loader's job, with errors)."""
    name, content = up
    try:
        raw = content if isinstance(content, (bytes, bytearray)) else content.getvalue()
        if name.lower().endswith(".gz"):
            raw = gzip.decompress(raw)
        frame = pd.read_csv(io.BytesIO(raw), sep=None, engine="python",
                            usecols=lambda c: str(c).strip().lower() in LABEL_COLUMNS)
    except (ValueError, OSError, EOFError, AttributeError, csv.Error, pd.errors.ParserError):
        return None
    if frame.empty or not len(frame.columns):
        return None
    return float(pd.to_numeric(frame.iloc[:, 0], errors="coerce").fillna(0).gt(0).mean())


def guess_roles(files: list[Upload]) -> dict[str, str]:
    """{file name: role in ROLES}: what its name says (see `assign_roles`); a single file whose
    name says nothing is the training data. Files whose name says nothing fill the roles still
    free, training data first and from the files with the fewest labelled anomalies (SKAB's
    `anomaly-free.csv` before `valve1/0.csv`); any left over are ignored."""
    roles = {up[0]: role_from_name(up[0]) for up in files}
    if len(files) == 1:
        return {name: role or "train" for name, role in roles.items()}
    unknown = sorted((up for up in files if roles[up[0]] is None),
                     key=lambda up: labelled_share(up) or 0.0)
    free = [r for r in ("train", "test") if r not in roles.values()]
    for up in unknown:
        roles[up[0]] = free.pop(0) if free else "ignore"
    return roles


def assign_roles(files: list[Upload], picked: dict[str, str] | None = None
                 ) -> dict[str, Upload]:
    """Which uploads are the training data, the test data and the labels.

    `picked` ({file name: role in ROLES}) wins; otherwise the name says: a name starting with
    `train` is the training data; `test_label` or `label` (so `labels`) the labels; any other
    starting with `test` the test data (case ignored). A single file whose name says none of
    these is the training data; a file picked "ignore" is left out. Returns the roles found,
    keyed like the arguments of `save_timeseries_dataset` ("train", "test", "labels"). Reads
    names only, never contents. DataError when a file has no role (several files, a name that
    says nothing and no pick), when two files claim one role, or when no file is the training
    data.

    >>> sorted(assign_roles([("Test.csv", b""), ("train.csv.gz", b""), ("labels.csv", b"")]))
    ['labels', 'test', 'train']
    >>> assign_roles([("machine-1.csv", b"")])["train"][0]
    'machine-1.csv'
    >>> sorted(assign_roles([("a.csv", b""), ("b.csv", b"")], {"a.csv": "train", "b.csv": "test"}))
    ['test', 'train']
    """
    if not files:
        raise DataError(f"expected at least one CSV file ({EXPECTED_NAMES}), found none")
    picked = picked or {}
    by_role: dict[str, list[Upload]] = {}
    unknown = []
    for up in files:
        role = picked.get(up[0]) or role_from_name(up[0])
        if role is None and len(files) == 1:
            role = "train"
        if role is None:
            unknown.append(up[0])
        elif role != "ignore":
            by_role.setdefault(role, []).append(up)
    if unknown:
        raise DataError(f"{_listed(unknown)}: cannot tell which file is which; expected names "
                        f"starting with train, test or test_label ({EXPECTED_NAMES}), or a role "
                        f"picked for each file")
    for role, ups in by_role.items():
        if len(ups) > 1:
            raise DataError(f"{_listed([u[0] for u in ups])}: expected one {role} file, "
                            f"found {len(ups)}")
    if "train" not in by_role:
        raise DataError(f"{_listed([u[0] for u in files])}: expected a training file too "
                        f"(a name starting with train, e.g. train.csv, or a file picked as "
                        f"train)")
    return {role: by_role[role][0] for role in ROLES if role in by_role}  # train, test, labels


def save_timeseries_dataset(ws: Path, dataset: str, train: Upload, test: Upload | None = None,
                            labels: Upload | None = None, *, round_id: str | None = None) -> Path:
    """Store uploaded CSVs as the dataset `<ws>/uploads/timeseries/<dataset>/` and return it.

    Files become `train.csv`, `test.csv`, `test_label.csv` (`.csv.gz` kept); the original names
    and `round_id` go to `upload.json`. The content is not validated here (see
    `dataset_summary`): an invalid upload is kept so the user can see why and delete it.

    `round_id` names an upload round (one tab's files, added to one uploader): saving again with
    the same id replaces the dataset that round saved, so files added to the round join it. A
    dataset saved by any other round (an earlier one, another tab) or without an id is never
    replaced. Raises DataError for a bad name or file type, labels without a test file, or an
    existing dataset of that name that this round did not save.
    """
    name = _dataset_name(dataset)
    if labels is not None and test is None:
        raise DataError(f"{labels[0]} (labels): expected a test CSV too; "
                        f"labels give one 0/1 per test row")
    roles = (("train", "training data", train), ("test", "test data", test),
             ("test_label", "labels", labels))
    files = {f"{stem}{_csv_suffix(up[0], role)}": up for stem, role, up in roles if up}

    def fill(staging: Path) -> None:
        for stored, (_, content) in files.items():
            _write_upload(content, staging / stored)

    meta = {"files": {stored: up[0] for stored, up in files.items()}}
    return _store(ws, "timeseries", name, fill, meta, round_id)


def save_image_dataset(ws: Path, dataset: str, files: list[Upload], *,
                       round_id: str | None = None) -> Path:
    """Store uploaded images, or one zip of them, as `<ws>/uploads/images/<dataset>/`.

    A `.zip` (alone: one archive is one dataset) is extracted with `extract_zip`; when it wraps
    everything in one top-level folder (`bottle/train/good/...`), that folder is dropped. Image
    files are placed by `image_paths`: normal training images in `train/good/` unless their name,
    a path inside a folder the user uploaded, already follows the MVTec layout. `upload.json`
    keeps the uploaded names under "uploaded". Pixels are not checked here (see
    `dataset_summary`); `round_id` and replacing work as in `save_timeseries_dataset`.

    Raises DataError for a bad dataset name, no files, a zip with other files, a file that is not
    a zip or an image by its name, an unsafe path, two files that would be stored at one path,
    an unsafe or unreadable archive, or an existing dataset this round did not save.
    """
    name = _dataset_name(dataset)
    if not files:
        raise DataError(f"expected a .zip archive or {KINDS} image files, found none")
    zips = [up for up in files if up[0].lower().endswith(".zip")]
    if zips and len(files) > 1:
        raise DataError(f"{_listed([up[0] for up in files])}: expected one .zip archive on its "
                        f"own, or image files without an archive; found {len(zips)} archive(s) "
                        f"among {len(files)} files")
    placed = {} if zips else image_paths(files)

    def fill(staging: Path) -> None:
        if zips:
            content = zips[0][1]
            if not isinstance(content, (bytes, bytearray, memoryview)):
                content.seek(0)  # an UploadedFile may have been read already
            try:
                extract_zip(content, staging)
            except DataError as e:
                raise DataError(f"{zips[0][0]}: {e}") from None
            _drop_top_folder(staging)
        for rel, (_, content) in placed.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            _write_upload(content, staging / rel)

    return _store(ws, "images", name, fill, {"uploaded": [up[0] for up in files]}, round_id)


def save_files_dataset(ws: Path, kind: str, dataset: str, files: list[Upload], *,
                       round_id: str | None = None) -> Path:
    """Store uploaded files as they are (names sanitised) as `<ws>/uploads/<kind>/<dataset>/`:
    the upload of a stream whose data needs no layout of its own. DataError for a bad name, no
    files, or two files with one name; `round_id` as in `save_timeseries_dataset`."""
    name = _dataset_name(dataset)
    if not files:
        raise DataError("expected at least one file, found none")
    stored = {sanitize_name(up[0]): up for up in files}
    if len(stored) < len(files) or META_FILE in stored:
        raise DataError(f"{_listed([up[0] for up in files])}: expected files with different "
                        f"names, none of them {META_FILE}")

    def fill(staging: Path) -> None:
        for file_name, (_, content) in stored.items():
            _write_upload(content, staging / file_name)

    return _store(ws, kind, name, fill, {"files": {k: up[0] for k, up in stored.items()}},
                  round_id)


def image_paths(files: list[Upload]) -> dict[str, Upload]:
    """Where each uploaded image goes in an image dataset: {relative path: upload}.

    A name may be a path: a folder upload names each file by its path inside the chosen folder,
    that folder first (`bottle/test/crack/000.png`). When all such paths share one first folder
    that is not `train`, `test` or `ground_truth`, it is dropped. A path that then follows the
    MVTec layout (`train/good/x.png`, `test/<type>/x.png`, `ground_truth/<type>/x_mask.png`) is
    kept; any other file is a normal training image, `train/good/<its folders and name joined
    by _>`. Every part is sanitised (`sanitize_name`); files hidden by the OS (`.DS_Store`,
    `._x.png`, `__MACOSX/`) are left out. DataError for an absolute path or `..`, a name that is
    not an image's (.png, .jpg, ...), two files stored at one path, or no image left.

    >>> sorted(image_paths([("b/test/crack/0.png", b""), ("b/c d/1.jpg", b""), ("2.png", b"")]))
    ['test/crack/0.png', 'train/good/2.png', 'train/good/c_d_1.jpg']
    """
    visible = []
    for up in files:
        rel = safe_parts(up[0], "file")
        if not rel:
            raise DataError(f"file {up[0]!r}: expected a file name, found none")
        if not any(p.startswith(".") or p.lower() in SYSTEM_NAMES for p in rel):
            visible.append((up, rel))
    tops = {rel[0] for _, rel in visible if len(rel) > 1}
    if len(tops) == 1 and tops.isdisjoint(LAYOUT_DIRS):  # the uploaded folder's own name
        visible = [(up, rel[1:] if len(rel) > 1 else rel) for up, rel in visible]
    placed: dict[str, list[Upload]] = {}
    for up, rel in visible:
        suffix = PurePosixPath(rel[-1]).suffix
        if suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{up[0]}: expected a .zip archive or a {KINDS} image "
                            f"({', '.join(sorted(IMAGE_SUFFIXES))}), found "
                            f"{repr(suffix) if suffix else 'no extension'}")
        mvtec = len(rel) == 3 and rel[0] in LAYOUT_DIRS
        safe = ([sanitize_name(p) for p in rel] if mvtec
                else ["train", "good", sanitize_name("_".join(rel))])
        placed.setdefault("/".join(safe), []).append(up)
    for rel, ups in placed.items():
        if len(ups) > 1:
            raise DataError(f"{_listed([up[0] for up in ups])}: would all be stored as {rel}; "
                            f"expected names that differ in letters or digits")
    if not placed:
        raise DataError(f"{_listed([up[0] for up in files])}: expected {KINDS} image files, "
                        f"found only files the system hides")
    return {rel: ups[0] for rel, ups in placed.items()}


def _drop_top_folder(folder: Path) -> None:
    """Move the content of `folder`'s only entry up when that is a folder not named like a layout
    folder (a zip of `bottle/`); OS clutter (`__MACOSX/`, `.DS_Store`) does not count."""
    entries = [p for p in folder.iterdir()
               if not (p.name.startswith(".") or p.name.lower() in SYSTEM_NAMES)]
    if len(entries) != 1 or not entries[0].is_dir() or entries[0].name in LAYOUT_DIRS:
        return
    top = folder / f".top-{secrets.token_hex(4)}"
    os.rename(entries[0], top)  # first, so a child named like the folder can move up
    for child in top.iterdir():
        os.rename(child, folder / child.name)
    top.rmdir()


def _dataset_name(dataset: str) -> str:
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


def _store(ws: Path, kind: str, name: str, fill: Callable[[Path], None], meta: dict,
           round_id: str | None) -> Path:
    """Write the dataset `<ws>/uploads/<kind>/<name>/` at once or not at all: `fill(folder)`
    writes its files into a hidden staging folder, `upload.json` gets `meta`, the save time and
    `round_id`, then the folder is renamed into place (replacing this round's own dataset). On
    any error nothing changes. See `save_timeseries_dataset` for `round_id`."""
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
