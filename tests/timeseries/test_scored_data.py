"""What a scoring run reads: the scored file of a folder or a CSV, and the channel check
against the model's channels."""
from __future__ import annotations

import pandas as pd
import pytest

from conftest import make_series
from core.errors import DataError
from core.timeseries.data import check_channels, load_scored_series, scored_summary


def test_a_folder_scores_its_test_file_with_the_labels_file(tmp_path):
    make_series(50, 0).to_csv(tmp_path / "train.csv", index=False)
    make_series(30, 1).to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"label": [0] * 29 + [1]}).to_csv(tmp_path / "test_label.csv", index=False)
    series, notes = load_scored_series(tmp_path)
    assert series.source.endswith("test.csv") and len(series.values) == 30
    assert series.labels.tolist() == [0] * 29 + [1] and notes == []
    summary = scored_summary(series, notes)
    assert summary["scored"] == "test" and summary["test"]["label_ratio"] == pytest.approx(1 / 30)


def test_a_folder_without_test_file_scores_train_and_a_file_scores_itself(tmp_path):
    make_series(50, 0).to_csv(tmp_path / "train.csv", index=False)
    assert load_scored_series(tmp_path)[0].source.endswith("train.csv")
    other = tmp_path / "other.csv"
    make_series(20, 2).to_csv(other, index=False)
    assert load_scored_series(other)[0].source == str(other)
    with pytest.raises(DataError, match=r"empty: expected test.csv or train.csv"):
        (tmp_path / "empty").mkdir()
        load_scored_series(tmp_path / "empty")


def test_channels_must_match_by_name_and_order(tmp_path):
    path = tmp_path / "swapped.csv"
    make_series(20, 0)[["timestamp", "b", "a", "c"]].to_csv(path, index=False)
    series, _ = load_scored_series(path)
    check_channels(series, ["b", "a", "c"], "run x")
    with pytest.raises(DataError, match=r"swapped.csv: expected the channel columns in the order "
                                        r"of run x; channel 1 is 'b', expected 'a'"):
        check_channels(series, ["a", "b", "c"], "run x")
    with pytest.raises(DataError, match=r"swapped.csv: .*missing: \['d'\]; extra: \['c'\]"):
        check_channels(series, ["a", "b", "d"], "run x")
