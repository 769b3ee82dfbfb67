"""Time-series CSV inputs (issue 13, items 9, 10, 13): duplicate column names, decimal commas,
files too large for memory or over the row cap are clear DataErrors; large files are read
without holding their text in memory."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from core.errors import DataError
from core.timeseries import data
from core.timeseries.data import load_ts_dataset, memory_needed, read_table


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path) -> str:
    with pytest.raises(DataError) as e:
        load_ts_dataset(path)
    return str(e.value)


@pytest.mark.parametrize("header, first, second", [("a,a,b", 1, 2), ("t,x;y, x ,z", 0, 0),
                                                   ("a;b;c;b", 2, 4)])
def test_a_column_name_used_twice_is_refused_naming_it(tmp_path, header, first, second):
    if first == 0:  # ' x ' and 'x' are one name once stripped
        header, first, second = "t,x,y, x ,z", 2, 4
    sep = ";" if ";" in header else ","
    rows = "\n".join(sep.join(str(i + j) for j in range(header.count(sep) + 1)) for i in range(3))
    message = error_of(write(tmp_path / "train.csv", f"{header}\n{rows}\n"))
    name = header.split(sep)[second - 1].strip()
    assert f"column '{name}' appears twice in the header (columns {first} and {second})" in message
    assert message.startswith("train.csv:")


def test_semicolon_csv_with_decimal_commas_says_so(tmp_path):
    text = "time;a;b\n2026-01-01 00:00;0,0421;1,5\n2026-01-01 00:01;0,0433;1,6\n"
    message = error_of(write(tmp_path / "train.csv", text))
    assert "found '0,0421'" in message and "decimal separator looks like a comma" in message


def test_other_text_gets_no_decimal_comma_hint(tmp_path):
    message = error_of(write(tmp_path / "train.csv", "a;b\n1;n/a\n2;3\n"))
    assert "found 'n/a'" in message and "decimal" not in message


def test_text_deep_in_a_numeric_column_is_still_found_by_row(tmp_path):
    rows = [f"{i},{i * 0.5}" for i in range(5000)]
    rows[4321] = "4321,oops"
    message = error_of(write(tmp_path / "train.csv", "a,b\n" + "\n".join(rows) + "\n"))
    assert "column 'b' row 4,322: expected a number, found 'oops'" in message


def test_channels_are_read_as_float32_exactly(tmp_path):
    ds = load_ts_dataset(write(tmp_path / "train.csv", "timestamp,a,label\n"
                               "1700000000,0.1,0\n1700000001,1e30,1\n1700000002,,0\n"))
    assert ds.train.values.dtype == np.float32
    np.testing.assert_array_equal(ds.train.values[:, 0], np.float32([0.1, 1e30, 1e30]))
    assert ds.train.timestamps.tolist()[1] == "1700000001"  # stamps are never squeezed to float32


def test_a_value_beyond_float32_is_named(tmp_path):
    message = error_of(write(tmp_path / "train.csv", "a,b\n1,2\n2,1e39\n"))
    assert "column 'b' row 2: expected a finite number within ±3.4e38" in message


def test_a_file_that_would_not_fit_in_memory_is_refused_before_loading(tmp_path, monkeypatch):
    path = write(tmp_path / "train.csv", "a,b\n" + "".join(f"{i},{i}\n" for i in range(10_000)))
    monkeypatch.setattr(data, "available_memory", lambda: 100_000)
    monkeypatch.setattr(data, "read_table", lambda p: pytest.fail("read despite the estimate"))
    message = error_of(path)
    assert message.startswith("train.csv: about ") and "GB of memory to load" in message


def test_the_memory_estimate_is_close_for_plain_and_gzipped_files(tmp_path):
    text = "t,a,b\n" + "".join(f"2026-01-01 00:{i % 60:02d},{i * 0.25},{i % 7}\n"
                               for i in range(20_000))
    plain = write(tmp_path / "train.csv", text)
    packed = tmp_path / "train.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    for path in (plain, packed):
        rows, need = memory_needed(path)
        assert 15_000 <= rows <= 25_000, (path.name, rows)  # from the first lines' length
        assert need >= rows * 3 * 4  # at least one float32 per cell


def test_more_rows_than_the_cap_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_ROWS", 100)
    message = error_of(write(tmp_path / "train.csv", "a\n" + "1\n" * 101))
    assert "expected at most 100 data rows, found more" in message
    assert len(read_table(write(tmp_path / "ok.csv", "a\n" + "1\n" * 100))) == 100


def test_bad_utf8_past_the_first_chunk_is_found_in_a_gzipped_file(tmp_path):
    body = b"a,b\n" + b"1,2\n" * 400_000 + b"caf\xe9,3\n"  # past the first 1 MB chunk
    path = tmp_path / "train.csv.gz"
    path.write_bytes(gzip.compress(body))
    message = error_of(path)
    assert "found byte 0xe9" in message and f"line {400_002:,}" in message
    assert f"offset {len(body) - 4:,}" in message
