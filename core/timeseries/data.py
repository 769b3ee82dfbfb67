"""Loading and validating multivariate time-series CSV datasets.

A dataset is a train split and an optional test split, each a `Series` of T rows by C channels.
`load_ts_dataset` accepts a folder (`train.csv[.gz]`, optional `test.csv[.gz]` and
`test_label.csv[.gz]`) or a single CSV file taken as train data. Every problem the user can fix
is a `DataError` naming the file and, where it can, the column and the data row (1-based, as a
person counts data rows: the header is not a row). Fixable-by-us issues (NaN gaps, constant
columns) become warnings instead.

Column roles, in order of precedence:
  - label-like (`label`, `is_anomaly`, `anomaly`, `changepoint`, any case): never channels;
    `label` (else `is_anomaly`, else `anomaly`) gives the 0/1 labels of that file (a training
    file with anomalies labelled gets a warning: they would be learned as normal);
  - one timestamp (named `timestamp`/`time`/`datetime`/`date`, or else the first non-numeric
    column that parses fully as datetimes): kept as strings for display;
  - everything else must be numeric: the channels, in file order.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataError

# never channels; `label`, `is_anomaly` or `anomaly` (in that order) gives the labels
LABEL_COLUMNS = ("label", "is_anomaly", "anomaly", "changepoint")
TIME_NAMES = ("timestamp", "time", "datetime", "date")
DELIMITERS = ",;\t"
MISSING = ["", "nan", "NaN", "NAN"]  # the only cell texts read as missing ('n/a' is an error)
SNIFF_BYTES = 8192
MAX_ROWS = 10_000_000  # data rows per file; float32 cells keep that within a few GB


@dataclass
class Series:
    """One split. `values` is (T, C) float32 with gaps already filled; labels are 0/1 or None."""

    values: np.ndarray  # (T, C) float32
    channels: list[str]  # C names, in file order
    timestamps: np.ndarray | None  # (T,) str, e.g. "2020-03-09 10:14:33"
    labels: np.ndarray | None  # (T,) int8 0/1, None when unknown
    source: str  # the file it came from


@dataclass
class TSDataset:
    """A train split, an optional test split, and what was fixed while loading them."""

    train: Series
    test: Series | None
    warnings: list[str]  # one human-readable line per issue
    nan_filled: int  # cells forward/back-filled over train + test


# ---------------------------------------------------------------- reading one file

def _row(i: int) -> str:
    """'row 1,204' for the 0-based data index 1203."""
    return f"row {i + 1:,}"


def _open_bytes(path: Path):
    """The file's bytes as a stream: gunzipped when its name ends in `.gz`."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _check_text(path: Path) -> str:
    """Check, streaming, that the file is non-empty UTF-8 (gunzipped if `.gz`; a BOM is
    dropped); returns its first SNIFF_BYTES characters. Memory stays at one chunk whatever the
    file's size."""
    name = path.name
    if not path.is_file():
        raise DataError(f"{name}: expected a CSV file at {path}, found none")
    decoder = codecs.getincrementaldecoder("utf-8")()
    head, offset, lines, seen_text = "", 0, 0, False
    try:
        with _open_bytes(path) as f:
            while chunk := f.read(1 << 20):
                if offset == 0 and chunk.startswith(codecs.BOM_UTF8):
                    chunk, offset = chunk[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as e:
                    at = offset + e.start  # offset in the file's (decompressed) bytes
                    line = lines + chunk[:e.start].count(b"\n") + 1
                    raise DataError(
                        f"{name}: expected UTF-8 text, found byte 0x{chunk[e.start]:02x} at byte "
                        f"offset {at:,} (line {line:,}); save the file as UTF-8") from None
                head = head or text[:SNIFF_BYTES]
                seen_text = seen_text or bool(chunk.strip())
                offset, lines = offset + len(chunk), lines + chunk.count(b"\n")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{name}: expected gzip-compressed CSV, found unreadable data ({e})"
                        ) from None
    if not seen_text:
        raise DataError(f"{name}: the file is empty; expected a header line and data rows")
    return head


def _sniff_delimiter(text: str) -> str:
    """`,`, `;` or tab, guessed from the first few KB; `,` when the sniffer cannot tell."""
    if not any(d in text.split("\n", 1)[0] for d in DELIMITERS):
        return ","  # one column (a labels file): nothing to sniff, and the sniffer is slow on it
    sample = text[:SNIFF_BYTES]
    if len(text) >= SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _check_header(head: str, sep: str, name: str) -> None:
    """DataError for a column name used twice (pandas would silently rename it 'a.1')."""
    header = next(csv.reader(io.StringIO(head), delimiter=sep), [])
    first: dict[str, int] = {}
    for i, column in enumerate(c.strip() for c in header):
        if column in first:
            raise DataError(f"{name}: column '{column}' appears twice in the header (columns "
                            f"{first[column] + 1} and {i + 1}); expected unique column names")
        first[column] = i


def read_table(path: Path) -> pd.DataFrame:
    """Parse one CSV (`.csv` or `.csv.gz`, `,`/`;`/tab) into a DataFrame of raw columns.

    Only empty cells and 'nan' read as missing; column names are stripped of surrounding spaces.
    The file is read from disk by pandas (never held as text), columns that look numeric in the
    first rows as float32, so memory is about 4 bytes per cell (see `memory_needed`).
    Raises DataError for a missing, empty, header-only, non-UTF-8 or malformed file, a column
    name used twice, or more than MAX_ROWS data rows.
    """
    path = Path(path)
    head = _check_text(path)
    sep = _sniff_delimiter(head)
    _check_header(head, sep, path.name)
    options = dict(sep=sep, keep_default_na=False, na_values=MISSING, encoding="utf-8-sig",
                   compression="gzip" if path.suffix == ".gz" else None)
    try:
        lines = head[: head.rindex("\n")] if "\n" in head else head  # whole lines only
        sample = pd.read_csv(io.StringIO(lines), **(options | {"encoding": None,
                                                              "compression": None}))
        floats = {c: np.float32 for c in sample.columns if sample[c].dtype.kind in "fi"
                  and str(c).strip().lower() not in LABEL_COLUMNS + TIME_NAMES}
        try:
            with np.errstate(over="ignore"):  # beyond float32 becomes inf: _check_finite names it
                df = pd.read_csv(path, nrows=MAX_ROWS + 1, dtype=floats, **options)
        except ValueError:  # text further down a numeric-looking column: let _check_numeric
            df = pd.read_csv(path, nrows=MAX_ROWS + 1, **options)  # find and name it
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path.name}: expected a well-formed CSV table, found: {e}") from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise DataError(f"{path.name}: found a header but no data rows")
    if len(df) > MAX_ROWS:
        raise DataError(f"{path.name}: expected at most {MAX_ROWS:,} data rows, found more")
    return df


def memory_needed(path: Path) -> tuple[int, int]:
    """(rows, bytes): an estimate, from the file's size and its first lines, of the data rows in
    a CSV and the memory loading it takes (beyond the ~100 MB of the process itself)."""
    path = Path(path)
    with _open_bytes(path) as f:
        head = f.read(SNIFF_BYTES)
    size = path.stat().st_size
    if path.suffix == ".gz" and size >= 4:  # gzip's trailer: the uncompressed size mod 2**32
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            size = max(size, int.from_bytes(f.read(4), "little"))
    lines = head.splitlines()[:50]
    if len(lines) < 2:
        return 1, 0
    per_row = max(1, sum(len(line) + 1 for line in lines[1:]) / (len(lines) - 1))
    rows = int(size / per_row)
    columns = len(next(csv.reader([lines[0].decode("utf-8", "replace")],
                                  delimiter=_sniff_delimiter(head.decode("utf-8", "replace")))))
    # per cell: pandas' float64 parse, its float32 copy, the filled values; per row: a timestamp's
    # text and its string form (benchmarks/csv_memory.py: 1.03 GB peak for 501 MB, 38 channels)
    return rows, rows * (columns * 16 + 160)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (MemAvailable), None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_memory(path: Path) -> None:
    """DataError, before reading, when loading `path` would take more memory than is free."""
    rows, need = memory_needed(path)
    free = available_memory()
    if free is not None and need > free:
        raise DataError(f"{path.name}: about {rows:,} rows need about {need / 2**30:.1f} GB of "
                        f"memory to load, and {free / 2**30:.1f} GB is free; expected a smaller "
                        "file (or free some memory)")


# ---------------------------------------------------------------- column roles

def _is_datetime_column(col: pd.Series) -> bool:
    """True when every non-empty cell of a text column parses as a datetime."""
    cells = col.dropna()
    if cells.empty:
        return False
    with warnings.catch_warnings():  # pandas warns when it falls back to dateutil
        warnings.simplefilter("ignore")
        if pd.to_datetime(cells.head(20), errors="coerce").isna().any():
            return False  # cheap screen before parsing a long text column
        return not pd.to_datetime(cells, errors="coerce").isna().any()


def _find_timestamp(df: pd.DataFrame, candidates: list[str]) -> str | None:
    """The timestamp column among `candidates`: the first one named like a time, else the first
    text column that parses fully as datetimes, else None."""
    for c in candidates:
        if c.lower() in TIME_NAMES:
            return c
    for c in candidates:
        if df[c].dtype == object and _is_datetime_column(df[c]):
            return c
    return None


def _format_timestamps(col: pd.Series) -> np.ndarray:
    """(T,) strings: ISO form from pandas when the whole column parses, else the cells as read."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(col, errors="coerce") if col.dtype == object else None
    if parsed is not None and not parsed.isna().any():
        return parsed.astype(str).to_numpy(dtype=str)
    return col.fillna("").astype(str).to_numpy(dtype=str)


def _first_non_number(col: pd.Series) -> tuple[int, str] | None:
    """(0-based row, cell) of the first non-empty cell that is not a number, or None."""
    if col.dtype != object:
        return None  # pandas already read the whole column as numbers
    parsed = pd.to_numeric(col, errors="coerce")
    bad = parsed.isna() & col.notna() & (col.astype(str).str.strip() != "")
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad.to_numpy())[0])
    return i, str(col.iloc[i])


DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")


def _check_numeric(df: pd.DataFrame, columns: list[str], stamp: str | None, name: str) -> None:
    """Raise one DataError listing every non-numeric column with its first offending cell."""
    bad, commas = [], False
    for c in columns:
        hit = _first_non_number(df[c])
        if hit is not None:
            bad.append(f"column '{c}' {_row(hit[0])}: expected a number, found '{hit[1]}'")
            commas = commas or bool(DECIMAL_COMMA.fullmatch(hit[1].strip()))
    if not bad:
        return
    kept = f" ('{stamp}' is the timestamp column; only one is kept)" if stamp else ""
    if commas:
        kept += ("; the decimal separator looks like a comma: save the file with '.' as the "
                 "decimal separator")
    if len(bad) == 1:
        raise DataError(f"{name}: {bad[0]}{kept}")
    raise DataError(f"{name}: expected numeric channels and at most one timestamp column{kept}, "
                    f"found {len(bad)} text columns: " + "; ".join(bad))


def _parse_labels(col: pd.Series, name: str) -> np.ndarray:
    """(T,) int8 labels from a 0/1 column (0.0/1.0 accepted); anything else is a DataError."""
    numbers = pd.to_numeric(col, errors="coerce")
    bad = ~numbers.isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        cell = "an empty cell" if pd.isna(col.iloc[i]) else f"'{col.iloc[i]}'"
        raise DataError(f"{name}: column '{col.name}' {_row(i)}: expected 0 or 1, found {cell}")
    return numbers.to_numpy().astype(np.int8)


def _label_column(columns: list[str]) -> str | None:
    """The column holding labels: `label`, else `is_anomaly`, else `anomaly` (any case); None
    if none."""
    by_lower = {c.lower(): c for c in columns}
    return by_lower.get("label") or by_lower.get("is_anomaly") or by_lower.get("anomaly")


# ---------------------------------------------------------------- values and gaps

def _fill_gaps(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, int, list[str]]:
    """Forward- then back-fill NaN per column. Returns ((T, C) float32, cells filled, warnings)."""
    missing = frame.isna().sum()
    notes = []
    for c, n in missing[missing > 0].items():
        if n == len(frame):
            raise DataError(f"{name}: column '{c}' has no values (all {n:,} rows empty); "
                            "expected at least one number to fill the gaps from")
        leading = int(frame[c].notna().to_numpy().argmax())
        tail = f" ({leading:,} leading ones back-filled)" if leading else ""
        notes.append(f"{name}: column '{c}': {n:,} missing values forward-filled{tail}")
    filled = frame.ffill().bfill() if missing.any() else frame
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf: reported below
        values = filled.to_numpy(dtype=np.float32)
    _check_finite(values, list(frame.columns), name)
    return values, int(missing.sum()), notes


def _check_finite(values: np.ndarray, channels: list[str], name: str) -> None:
    """Raise a DataError at the first infinite (or float32-overflowing) cell."""
    big = ~np.isfinite(values)
    if big.any():
        i, j = np.argwhere(big)[0]
        raise DataError(f"{name}: column '{channels[j]}' {_row(int(i))}: expected a finite "
                        f"number within ±3.4e38, found {values[i, j]!r}")


def _constant_warnings(series: Series, name: str) -> list[str]:
    """One warning per channel whose values never change."""
    flat = np.ptp(series.values, axis=0) == 0  # (C,)
    return [f"column '{c}' is constant in {name}; it carries no signal"
            for c, is_flat in zip(series.channels, flat) if is_flat]


def _load_series(path: Path) -> tuple[Series, int, list[str]]:
    """Read one file into a Series. Returns (series, cells filled, warnings)."""
    name = path.name
    _check_memory(path)
    df = read_table(path)
    columns = list(df.columns)
    labels_from = _label_column(columns)
    others = [c for c in columns if c.lower() not in LABEL_COLUMNS]
    stamp = _find_timestamp(df, others)
    channels = [c for c in others if c != stamp]
    if not channels:
        raise DataError(f"{name}: expected at least one numeric channel column, "
                        f"found only {columns}")
    _check_numeric(df, channels, stamp, name)
    numbers = df[channels]
    if any(numbers[c].dtype.kind not in "fi" for c in channels):
        numbers = numbers.apply(pd.to_numeric, errors="coerce")
    values, filled, notes = _fill_gaps(numbers, name)
    series = Series(
        values=values,
        channels=channels,
        timestamps=_format_timestamps(df[stamp]) if stamp else None,
        labels=_parse_labels(df[labels_from], name) if labels_from else None,
        source=str(path),
    )
    return series, filled, notes


# ---------------------------------------------------------------- the dataset

def _find_file(folder: Path, stem: str) -> Path | None:
    """`folder/stem.csv` or `folder/stem.csv.gz`, whichever exists (plain first)."""
    candidates = (folder / f"{stem}.csv", folder / f"{stem}.csv.gz")
    return next((c for c in candidates if c.is_file()), None)


def _resolve_paths(path: Path, test_path: Path | None) -> tuple[Path, Path | None]:
    """(train file, test file or None) from a folder or a single file."""
    if path.is_file():
        return path, test_path
    if not path.is_dir():
        raise DataError(f"{path}: expected a CSV file or a dataset folder, found nothing there")
    train = _find_file(path, "train")
    if train is None:
        found = sorted(p.name for p in path.iterdir()) or ["nothing"]
        raise DataError(f"{path.name}: expected train.csv or train.csv.gz in the folder, "
                        f"found: {', '.join(found)}")
    return train, test_path or _find_file(path, "test")


def _label_file_for(test: Path) -> Path | None:
    """`test_label.csv[.gz]` beside a file named `test.csv[.gz]`; None otherwise."""
    if test.name not in ("test.csv", "test.csv.gz"):
        return None
    return _find_file(test.parent, "test_label")


def _attach_label_file(test: Series, label_path: Path, notes: list[str]) -> None:
    """Replace `test.labels` with the `label` column of a separate labels file."""
    table = read_table(label_path)
    column = _label_column(list(table.columns))
    if column is None:
        raise DataError(f"{label_path.name}: expected a 'label' column, "
                        f"found {list(table.columns)}")
    test_name = Path(test.source).name
    if len(table) != len(test.values):
        raise DataError(f"{label_path.name} has {len(table):,} rows but {test_name} has "
                        f"{len(test.values):,}; expected one label per test row")
    if test.labels is not None:
        notes.append(f"{test_name}: its own label column is ignored; "
                     f"labels come from {label_path.name}")
    test.labels = _parse_labels(table[column], label_path.name)


def _check_same_channels(train: Series, test: Series) -> None:
    """Test channels must equal train channels, names and order."""
    check_channels(test, train.channels, Path(train.source).name)


def check_channels(series: Series, expected: list[str], expected_from: str) -> None:
    """DataError naming the file and the columns when `series` does not have the channel
    columns `expected` (those of `expected_from`), by name and in that order."""
    if series.channels == expected:
        return
    name = Path(series.source).name
    missing = [c for c in expected if c not in series.channels]
    extra = [c for c in series.channels if c not in expected]
    if missing or extra:
        raise DataError(f"{name}: expected the same channel columns as {expected_from}; "
                        f"missing: {missing or 'none'}; extra: {extra or 'none'}")
    k = next(k for k, (a, b) in enumerate(zip(expected, series.channels)) if a != b)
    raise DataError(f"{name}: expected the channel columns in the order of {expected_from}; "
                    f"channel {k + 1} is '{series.channels[k]}', expected '{expected[k]}'")


def load_ts_dataset(path: str | Path, test_path: str | Path | None = None) -> TSDataset:
    """Load and validate a dataset from a folder or a single train CSV (+ optional test CSV).

    Raises DataError naming the file (and column and row where it can) for anything unusable.
    """
    train_path, test_file = _resolve_paths(Path(path), Path(test_path) if test_path else None)
    train, filled, notes = _load_series(train_path)
    if len(train.values) < 2:
        raise DataError(f"{train_path.name}: expected at least 2 data rows, found 1")
    notes += _constant_warnings(train, train_path.name)
    if train.labels is not None and train.labels.any():
        notes.append(f"{train_path.name}: its label column marks {train.labels.mean():.1%} of "
                     "the training rows as anomalies, but the model learns the training data "
                     "as normal; train on anomaly-free data and use this file as test data")
    test = None
    if test_file is not None:
        test, test_filled, test_notes = _load_series(test_file)
        _check_same_channels(train, test)
        filled += test_filled
        notes += test_notes
        label_path = _label_file_for(test_file)
        if label_path is not None:
            _attach_label_file(test, label_path, notes)
    return TSDataset(train=train, test=test, warnings=notes, nan_filled=filled)


def load_scored_series(path: str | Path) -> tuple[Series, list[str]]:
    """The series a scoring run scores, and warnings: a CSV file itself, or from a folder its
    test.csv (labels from test_label.csv beside it) or else its train.csv. A `label` column
    gives the labels; DataError naming the file for anything unusable."""
    path = Path(path)
    if path.is_dir():
        file = _find_file(path, "test") or _find_file(path, "train")
        if file is None:
            found = sorted(p.name for p in path.iterdir()) or ["nothing"]
            raise DataError(f"{path.name}: expected test.csv or train.csv (or .csv.gz) in the "
                            f"folder, found: {', '.join(found)}")
    elif path.is_file():
        file = path
    else:
        raise DataError(f"{path}: expected a CSV file or a dataset folder, found nothing there")
    series, _, notes = _load_series(file)
    label_path = _label_file_for(file)
    if label_path is not None:
        _attach_label_file(series, label_path, notes)
    return series, notes


def scored_summary(series: Series, notes: list[str]) -> dict:
    """data_summary.json of a scoring run: the scored file as the `test` split."""
    return {"channels": {"count": len(series.channels), "names": list(series.channels)},
            "train": None, "test": _split_summary(series), "scored": "test",
            "warnings": list(notes)}


def _split_summary(s: Series) -> dict:
    """Rows, source, time span and label ratio of one split (JSON-able)."""
    span = None
    if s.timestamps is not None:
        span = {"first": str(s.timestamps[0]), "last": str(s.timestamps[-1])}
    ratio = None if s.labels is None else float(s.labels.mean())
    return {"source": s.source, "rows": int(len(s.values)), "time_span": span,
            "label_ratio": ratio}


def summarize(ds: TSDataset) -> dict:
    """JSON-able overview: channels (count, names), per split rows / time span / label ratio
    (test None when absent), cells filled and warnings."""
    return {
        "channels": {"count": len(ds.train.channels), "names": list(ds.train.channels)},
        "train": _split_summary(ds.train),
        "test": _split_summary(ds.test) if ds.test is not None else None,
        "nan_filled": ds.nan_filled,
        "warnings": list(ds.warnings),
    }
