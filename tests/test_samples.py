"""The bundled time-series sample (`data/samples/timeseries/`) and its generator
`data/make_samples.py`.

The committed files must be exactly what the generator writes, well-formed, and carry anomalies
that a detector can find in principle.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data" / "make_samples.py"
SAMPLES = REPO / "data" / "samples" / "timeseries"
FILES = ("train.csv", "test.csv")


def load_script() -> ModuleType:
    """Import `data/make_samples.py` by path (`data/` is not a package)."""
    spec = importlib.util.spec_from_file_location("make_samples", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return load_script()


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return pd.read_csv(SAMPLES / "train.csv")


@pytest.fixture(scope="module")
def test_frame() -> pd.DataFrame:
    return pd.read_csv(SAMPLES / "test.csv")


def segment(frame: pd.DataFrame, anomaly) -> pd.DataFrame:
    """The rows of `frame` that `anomaly` covers."""
    return frame.iloc[anomaly.rows]


def anomaly_of_kind(gen: ModuleType, kind: str):
    (found,) = [a for a in gen.ANOMALIES if a.kind == kind]
    return found


@pytest.mark.parametrize("name", FILES)
def test_committed_files_exist_and_are_small(name: str) -> None:
    path = SAMPLES / name
    assert path.is_file(), f"{path} missing: run `python data/make_samples.py`"
    assert path.stat().st_size < 250_000


def test_regenerating_gives_byte_identical_files(gen: ModuleType, tmp_path: Path, capsys) -> None:
    paths = gen.main(tmp_path / "fresh")
    assert "anomaly ratio" in capsys.readouterr().out
    for name in FILES:
        fresh = (tmp_path / "fresh" / name).read_bytes()
        assert fresh == (SAMPLES / name).read_bytes(), f"{name} differs from a fresh run"
    assert sorted(p.name for p in paths.values()) == sorted(FILES)


def test_build_samples_equals_what_is_written(gen: ModuleType, train, test_frame) -> None:
    built_train, built_test = gen.build_samples()
    # check_dtype=False: whole numbers (fan_rpm) read back as int64.
    for built, written in ((built_train, train), (built_test, test_frame)):
        pd.testing.assert_frame_equal(built, written, check_dtype=False, rtol=1e-12)


def test_columns_rows_and_timestamps(gen: ModuleType, train, test_frame) -> None:
    assert list(train.columns) == ["timestamp", *gen.CHANNELS]
    assert list(test_frame.columns) == [*train.columns, "label"]
    assert len(train) == gen.TRAIN_ROWS and len(test_frame) == gen.TEST_ROWS
    stamps = pd.to_datetime(pd.concat([train["timestamp"], test_frame["timestamp"]]))
    assert stamps.iloc[0] == pd.Timestamp("2026-01-01 00:00:00")
    assert (stamps.diff().iloc[1:] == pd.Timedelta(minutes=1)).all(), "test must continue train"
    assert train["timestamp"].iloc[0] == "2026-01-01 00:00:00"  # ISO text, not epoch numbers


def test_values_are_finite_numbers(gen: ModuleType, train, test_frame) -> None:
    for frame in (train, test_frame):
        values = frame[list(gen.CHANNELS)]
        # fan_rpm reads as int64: 4 significant digits of ~3000 rpm are whole numbers.
        assert all(pd.api.types.is_numeric_dtype(dtype) for dtype in values.dtypes)
        assert not frame.isna().any().any()
        assert np.isfinite(values.to_numpy(dtype=float)).all()


def test_labels_are_binary_with_a_plausible_ratio(gen: ModuleType, test_frame) -> None:
    label = test_frame["label"]
    assert set(label.unique()) == {0, 1}
    assert 0.02 <= label.mean() <= 0.08


def test_labels_are_exactly_the_anomaly_segments(gen: ModuleType, test_frame) -> None:
    expected = np.zeros(len(test_frame), dtype=int)
    for anomaly in gen.ANOMALIES:
        expected[anomaly.rows] = 1
        assert anomaly.start >= 150
    np.testing.assert_array_equal(test_frame["label"].to_numpy(), expected)
    starts = np.flatnonzero(np.diff(np.r_[0, expected]) == 1)
    assert len(starts) == len(gen.ANOMALIES), "segments must be separate, not touching"
    assert {a.kind for a in gen.ANOMALIES} == set(gen.INJECTORS)


def test_train_is_strongly_cross_correlated(train) -> None:
    corr = train[["cpu_load", "temp_c", "fan_rpm"]].corr()
    assert corr.loc["temp_c", "fan_rpm"] > 0.95
    assert corr.loc["cpu_load", "temp_c"] > 0.8


def test_spike_stands_far_above_normal_rows(gen: ModuleType, train, test_frame) -> None:
    spike = anomaly_of_kind(gen, "spike")
    ch = spike.channel
    z = ((test_frame[ch] - train[ch].mean()) / train[ch].std()).abs()
    normal_max = z[test_frame["label"] == 0].max()
    assert segment(z.to_frame(), spike)[ch].max() > 3 * normal_max


def test_level_shift_moves_the_mean(gen: ModuleType, test_frame) -> None:
    shift = anomaly_of_kind(gen, "level_shift")
    ch = shift.channel
    inside = segment(test_frame, shift)[ch].mean()
    before = test_frame[ch].iloc[shift.start - shift.length : shift.start].mean()
    after = test_frame[ch].iloc[shift.rows.stop : shift.rows.stop + shift.length].mean()
    assert inside - (before + after) / 2 > 5.0


def test_noise_burst_raises_step_to_step_jitter(gen: ModuleType, test_frame) -> None:
    burst = anomaly_of_kind(gen, "noise_burst")
    ch = burst.channel
    jitter = test_frame[ch].diff().abs()
    inside = segment(jitter.to_frame(), burst)[ch].iloc[1:].median()
    normal = jitter[test_frame["label"] == 0].median()
    assert inside > 5 * normal


def test_shape_change_speeds_up_the_cycle(gen: ModuleType, test_frame) -> None:
    change = anomaly_of_kind(gen, "shape_change")
    ch = change.channel
    jitter = test_frame[ch].diff().abs()
    inside = segment(jitter.to_frame(), change)[ch].iloc[1:].mean()
    normal = jitter[test_frame["label"] == 0].mean()
    assert inside > 2.5 * normal


def test_broken_correlation_leaves_fan_behind_temperature(train, test_frame, gen) -> None:
    broken = anomaly_of_kind(gen, "broken_correlation")
    # The fan as train says it follows temperature: a least-squares line fan ~ temp.
    slope, intercept = np.polyfit(train["temp_c"], train["fan_rpm"], 1)
    residual = (test_frame["fan_rpm"] - (slope * test_frame["temp_c"] + intercept)).abs()
    normal_max = residual[test_frame["label"] == 0].max()
    assert segment(residual.to_frame(), broken).iloc[:, 0].max() > 2 * normal_max
