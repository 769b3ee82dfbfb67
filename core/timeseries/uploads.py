"""Time-series uploads: which CSV is the training data, the test data and the labels (from
their names, or picked), stored as a dataset folder the loader reads (`train.csv[.gz]`,
`test.csv[.gz]`, `test_label.csv[.gz]`) through the dataset store (`core.uploads.store`)."""
from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path

import pandas as pd

from core.errors import DataError
from core.timeseries.data import LABEL_COLUMNS
from core.uploads import Upload, dataset_name, listed, store, write_upload


# the role of an uploaded file from the start of its name (case ignored), checked in this order:
# 'test_label' before 'test'; 'label' covers 'labels'
ROLE_PREFIXES = (("labels", ("test_label", "label")), ("test", ("test",)), ("train", ("train",)))
EXPECTED_NAMES = "train.csv, test.csv, test_label.csv"


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
        raise DataError(f"{listed(unknown)}: cannot tell which file is which; expected names "
                        f"starting with train, test or test_label ({EXPECTED_NAMES}), or a role "
                        f"picked for each file")
    for role, ups in by_role.items():
        if len(ups) > 1:
            raise DataError(f"{listed([u[0] for u in ups])}: expected one {role} file, "
                            f"found {len(ups)}")
    if "train" not in by_role:
        raise DataError(f"{listed([u[0] for u in files])}: expected a training file too "
                        f"(a name starting with train, e.g. train.csv, or a file picked as "
                        f"train)")
    return {role: by_role[role][0] for role in ROLES if role in by_role}  # train, test, labels


def _csv_suffix(filename: str, role: str) -> str:
    """'.csv' or '.csv.gz' for an upload named `filename`; DataError for other file types."""
    lower = filename.lower()
    if lower.endswith(".csv"):
        return ".csv"
    if lower.endswith(".gz"):  # 'x.csv.gz' and 'x.gz' both hold gzipped CSV
        return ".csv.gz"
    raise DataError(f"{filename} ({role}): expected a .csv or .csv.gz file")


def save_timeseries_dataset(ws: Path, dataset: str, train: Upload, test: Upload | None = None,
                            labels: Upload | None = None, *, round_id: str | None = None) -> Path:
    """Store uploaded CSVs as the dataset `<ws>/uploads/timeseries/<dataset>/` and return it.

    Files become `train.csv`, `test.csv`, `test_label.csv` (`.csv.gz` kept); the original names
    and `round_id` go to `upload.json`. The content is not validated here (see
    `dataset_summary`): an invalid upload is kept so the user can see why and delete it.
    `round_id`: see `core.uploads.store`. Raises DataError for a bad name or file type, labels
    without a test file, or an existing dataset of that name that this round did not save.
    """
    name = dataset_name(dataset)
    if labels is not None and test is None:
        raise DataError(f"{labels[0]} (labels): expected a test CSV too; "
                        f"labels give one 0/1 per test row")
    roles = (("train", "training data", train), ("test", "test data", test),
             ("test_label", "labels", labels))
    files = {f"{stem}{_csv_suffix(up[0], role)}": up for stem, role, up in roles if up}

    def fill(staging: Path) -> None:
        for stored, (_, content) in files.items():
            write_upload(content, staging / stored)

    meta = {"files": {stored: up[0] for stored, up in files.items()}}
    return store(ws, "timeseries", name, fill, meta, round_id)
