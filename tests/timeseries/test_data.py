"""Tests of core/timeseries/data.py: loading, validation messages, gap filling, and the real
SMD and SKAB files from the shared datasets folder."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import DataError
from core.timeseries.data import load_ts_dataset, read_table, summarize

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
SMD = DATASETS / "smd" / "machine-1-2"
SKAB = DATASETS / "skab"


def write(path: Path, text: str) -> Path:
    """Write `text` as UTF-8 (gzipped when the name ends in .gz) and return the path."""
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def load_error(path: Path, test_path: Path | None = None) -> str:
    """The message of the DataError that loading raises."""
    with pytest.raises(DataError) as e:
        load_ts_dataset(path, test_path)
    return str(e.value)


# ---------------------------------------------------------------- layouts


def test_folder_with_train_test_and_label_file(tmp_path):
    write(tmp_path / "train.csv", "a,b\n1,2\n3,4\n5,7\n")
    write(tmp_path / "test.csv", "a,b\n1,2\n9,9\n")
    write(tmp_path / "test_label.csv", "label\n0\n1\n")
    ds = load_ts_dataset(tmp_path)
    assert ds.train.channels == ["a", "b"]
    assert ds.train.values.dtype == np.float32 and ds.train.values.shape == (3, 2)
    np.testing.assert_array_equal(ds.train.values[:, 1], [2, 4, 7])
    assert ds.train.labels is None and ds.train.timestamps is None
    assert ds.test.values.shape == (2, 2)
    assert ds.test.labels.dtype == np.int8
    assert ds.test.labels.tolist() == [0, 1]
    assert ds.train.source == str(tmp_path / "train.csv")
    assert ds.warnings == [] and ds.nan_filled == 0


def test_label_column_inside_test_csv(tmp_path):
    write(tmp_path / "train.csv", "a,b\n1,2\n3,4\n")
    write(tmp_path / "test.csv", "a,b,label\n1,2,0\n3,4,1\n5,6,1\n")
    ds = load_ts_dataset(tmp_path)
    assert ds.test.channels == ["a", "b"]
    assert ds.test.labels.tolist() == [0, 1, 1]


def test_label_wins_over_anomaly_and_float_labels_accepted(tmp_path):
    write(tmp_path / "train.csv", "a\n1\n2\n")
    write(tmp_path / "test.csv", "anomaly,a,Label\n1.0,1,0.0\n0.0,2,1.0\n")
    ds = load_ts_dataset(tmp_path)
    assert ds.test.channels == ["a"]
    assert ds.test.labels.tolist() == [0, 1]


def test_explicit_test_path_overrides_folder_test(tmp_path):
    write(tmp_path / "train.csv", "a\n1\n2\n")
    write(tmp_path / "test.csv", "a\n1\n")
    other = write(tmp_path / "other.csv", "a,anomaly\n1,0\n2,0\n3,1\n")
    ds = load_ts_dataset(tmp_path, test_path=other)
    assert ds.test.source == str(other)
    assert ds.test.labels.tolist() == [0, 0, 1]


def test_gzipped_files(tmp_path):
    write(tmp_path / "train.csv.gz", "a,b\n1,2\n3,4\n")
    write(tmp_path / "test.csv.gz", "a,b\n1,2\n")
    write(tmp_path / "test_label.csv.gz", "label\n1\n")
    ds = load_ts_dataset(tmp_path)
    assert ds.train.values.shape == (2, 2)
    assert ds.test.labels.tolist() == [1]


@pytest.mark.parametrize("sep", [";", "\t"])
def test_semicolon_and_tab_delimiters(tmp_path, sep):
    rows = ["x,y".replace(",", sep), "1.5,2".replace(",", sep), "3,4.25".replace(",", sep)]
    ds = load_ts_dataset(write(tmp_path / "d.csv", "\n".join(rows) + "\n"))
    assert ds.train.channels == ["x", "y"]
    np.testing.assert_allclose(ds.train.values, [[1.5, 2], [3, 4.25]])


def test_utf8_bom_is_dropped(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbftemp,p\n1,2\n3,4\n")
    assert load_ts_dataset(path).train.channels == ["temp", "p"]


def test_timestamp_kept_as_strings_not_a_channel(tmp_path):
    text = "datetime;s1;s2\n2020-03-09 10:14:33;1;2\n2020-03-09 10:14:34;3;4\n"
    ds = load_ts_dataset(write(tmp_path / "d.csv", text))
    assert ds.train.channels == ["s1", "s2"]
    assert ds.train.timestamps.tolist() == ["2020-03-09 10:14:33", "2020-03-09 10:14:34"]


def test_unnamed_datetime_text_column_is_the_timestamp(tmp_path):
    text = "when,a\n2021-01-01 00:00:05,1\n2021-01-01 00:00:06,2\n"
    ds = load_ts_dataset(write(tmp_path / "d.csv", text))
    assert ds.train.channels == ["a"]
    assert ds.train.timestamps[0] == "2021-01-01 00:00:05"


def test_label_like_columns_are_never_channels(tmp_path):
    text = "a,ANOMALY,changepoint,label,b\n1,0,0,0,2\n3,1,1,1,4\n"
    ds = load_ts_dataset(write(tmp_path / "d.csv", text))
    assert ds.train.channels == ["a", "b"]
    assert ds.train.labels.tolist() == [0, 1]  # kept for information, never trained on


# ---------------------------------------------------------------- errors


def test_non_numeric_cell_names_file_column_row_and_value(tmp_path):
    rows = "\n".join(f"{i},{i * 2}" for i in range(1, 1300))
    text = "a,temp\n" + rows.replace("1204,2408", "1204,n/a") + "\n"
    msg = load_error(write(tmp_path / "train.csv", text))
    assert "train.csv" in msg and "column 'temp'" in msg
    assert "row 1,204" in msg and "'n/a'" in msg


def test_two_text_columns_are_both_named(tmp_path):
    text = "timestamp,a,status,mode\n2020-01-01,1,ok,x\n2020-01-02,2,ok,y\n"
    msg = load_error(write(tmp_path / "train.csv", text))
    assert "train.csv" in msg
    assert "column 'status' row 1" in msg and "'ok'" in msg
    assert "column 'mode' row 1" in msg and "'x'" in msg
    assert "'timestamp' is the timestamp column" in msg


def test_second_time_column_is_an_error(tmp_path):
    text = "date,time,a\n2020-01-01,10:00,1\n2020-01-01,10:01,2\n"
    msg = load_error(write(tmp_path / "train.csv", text))
    assert "column 'time' row 1" in msg and "'10:00'" in msg and "'date'" in msg


def test_mismatched_test_columns(tmp_path):
    write(tmp_path / "train.csv", "a,b,c\n1,2,3\n4,5,6\n")
    write(tmp_path / "test.csv", "a,b,d\n1,2,3\n")
    msg = load_error(tmp_path)
    assert "test.csv" in msg and "train.csv" in msg
    assert "'c'" in msg and "'d'" in msg


def test_misordered_test_columns(tmp_path):
    write(tmp_path / "train.csv", "a,b,c\n1,2,3\n4,5,6\n")
    write(tmp_path / "test.csv", "a,c,b\n1,2,3\n")
    msg = load_error(tmp_path)
    assert "test.csv" in msg and "order" in msg and "'c'" in msg and "'b'" in msg


def test_empty_file(tmp_path):
    msg = load_error(write(tmp_path / "train.csv", ""))
    assert "train.csv" in msg and "empty" in msg


def test_header_only_file(tmp_path):
    msg = load_error(write(tmp_path / "train.csv", "a,b\n"))
    assert "train.csv" in msg and "no data rows" in msg


def test_non_utf8_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"a,b\n1,2\ncaf\xe9,3\n")
    msg = load_error(path)
    assert "train.csv" in msg and "UTF-8" in msg
    assert "0xe9" in msg and "line 3" in msg and "offset 11" in msg


def test_non_utf8_file_with_bom_counts_offset_from_file_start(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"\xef\xbb\xbfa\n\xe9\n")
    msg = load_error(path)
    assert "0xe9" in msg and "offset 5" in msg and "line 2" in msg


def test_all_nan_column(tmp_path):
    msg = load_error(write(tmp_path / "train.csv", "a,b\n1,\n2,\n3,\n"))
    assert "train.csv" in msg and "column 'b'" in msg


def test_infinite_value(tmp_path):
    msg = load_error(write(tmp_path / "train.csv", "a,b\n1,2\n2,inf\n"))
    assert "train.csv" in msg and "column 'b'" in msg and "row 2" in msg


def test_bad_label_value(tmp_path):
    write(tmp_path / "train.csv", "a\n1\n2\n")
    write(tmp_path / "test.csv", "a,label\n1,0\n2,1\n3,2\n")
    msg = load_error(tmp_path)
    assert "test.csv" in msg and "column 'label'" in msg and "row 3" in msg and "'2'" in msg


def test_label_file_length_mismatch(tmp_path):
    write(tmp_path / "train.csv", "a\n1\n2\n")
    write(tmp_path / "test.csv", "a\n1\n2\n3\n")
    write(tmp_path / "test_label.csv", "label\n0\n1\n")
    msg = load_error(tmp_path)
    assert "test_label.csv" in msg and "test.csv" in msg
    assert "2 rows" in msg and "3" in msg


def test_folder_without_train(tmp_path):
    write(tmp_path / "test.csv", "a\n1\n")
    write(tmp_path / "notes.txt", "x")
    msg = load_error(tmp_path)
    assert "train.csv" in msg and "test.csv" in msg and "notes.txt" in msg


def test_no_channels(tmp_path):
    msg = load_error(write(tmp_path / "train.csv", "timestamp,label\n2020-01-01,0\n2020-01-02,1\n"))
    assert "train.csv" in msg and "channel" in msg


def test_single_train_row(tmp_path):
    msg = load_error(write(tmp_path / "train.csv", "a\n1\n"))
    assert "train.csv" in msg and "at least 2" in msg


def test_read_table_sniffs_and_strips(tmp_path):
    df = read_table(write(tmp_path / "d.csv", " a ; b\n1;2\n"))
    assert list(df.columns) == ["a", "b"] and df.shape == (1, 2)


# ---------------------------------------------------------------- gaps and warnings


def test_nan_forward_fill_counted_and_warned(tmp_path):
    write(tmp_path / "train.csv", "a,f3\n1,\n2,5\n3,\n4,nan\n5,6\n")
    write(tmp_path / "test.csv", "a,f3\n1,2\n,3\n")
    ds = load_ts_dataset(tmp_path)
    np.testing.assert_array_equal(ds.train.values[:, 1], [5, 5, 5, 5, 6])  # leading one back-filled
    np.testing.assert_array_equal(ds.test.values[:, 0], [1, 1])
    assert ds.nan_filled == 4
    assert any(w.startswith("train.csv: column 'f3': 3 missing values forward-filled")
               for w in ds.warnings)
    assert "test.csv: column 'a': 1 missing values forward-filled" in ds.warnings


def test_constant_column_warns(tmp_path):
    ds = load_ts_dataset(write(tmp_path / "train.csv", "a,f7\n1,3\n2,3\n"))
    assert ds.warnings == ["column 'f7' is constant in train.csv; it carries no signal"]


def test_summarize_is_json_able(tmp_path):
    rows = "2020-01-01 00:00:00,1\n2020-01-01 00:00:01,\n2020-01-01 00:00:02,3\n"
    write(tmp_path / "train.csv", "time,a\n" + rows)
    write(tmp_path / "test.csv", "time,a,label\n2020-01-02 00:00:00,1,0\n2020-01-02 00:00:01,2,1\n")
    s = json.loads(json.dumps(summarize(load_ts_dataset(tmp_path))))
    assert set(s) == {"channels", "train", "test", "nan_filled", "warnings"}
    assert s["channels"] == {"count": 1, "names": ["a"]}
    assert set(s["train"]) == {"source", "rows", "time_span", "label_ratio"}
    assert s["train"]["rows"] == 3 and s["train"]["label_ratio"] is None
    span = {"first": "2020-01-01 00:00:00", "last": "2020-01-01 00:00:02"}
    assert s["train"]["time_span"] == span
    assert s["test"]["label_ratio"] == 0.5
    assert s["nan_filled"] == 1 and len(s["warnings"]) == 1


def test_summarize_without_test(tmp_path):
    s = summarize(load_ts_dataset(write(tmp_path / "d.csv", "a\n1\n2\n")))
    assert s["test"] is None and s["train"]["time_span"] is None


# ---------------------------------------------------------------- real datasets


def test_smd_machine_1_2():
    ds = load_ts_dataset(SMD)  # how fast it loads is measured by benchmarks, not asserted here
    assert ds.train.channels == [f"f{i}" for i in range(38)]
    assert ds.train.values.shape[1] == 38 and ds.test.values.shape[1] == 38
    assert len(ds.test.labels) == len(ds.test.values)
    assert 0.01 < ds.test.labels.mean() < 0.05  # README: 2.3 % anomalies
    assert not np.isnan(ds.train.values).any()


def test_skab_anomaly_free_with_valve_test():
    ds = load_ts_dataset(SKAB / "anomaly-free" / "anomaly-free.csv",
                         test_path=SKAB / "valve1" / "0.csv")
    assert len(ds.train.channels) == 8 and ds.test.channels == ds.train.channels
    assert "datetime" not in ds.train.channels and "anomaly" not in ds.test.channels
    assert ds.test.timestamps[0] == "2020-03-09 10:14:33"
    assert len(ds.test.labels) == len(ds.test.values) and ds.test.labels.sum() > 0


def test_skab_valve_file_alone_as_train():
    ds = load_ts_dataset(SKAB / "valve1" / "0.csv")
    assert len(ds.train.channels) == 8 and ds.test is None
    assert "changepoint" not in ds.train.channels
