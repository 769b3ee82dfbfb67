"""The exported predict.py's own numpy steps against the project's (fast: no model)."""
from __future__ import annotations

import numpy as np
import pytest

from core.timeseries import export_predict
from core.timeseries.scoring import Fusion, smooth
from core.timeseries.windows import window_starts


@pytest.mark.parametrize("size", [1, 2, 3, 10, 11, 64])
@pytest.mark.parametrize("rows", [1, 7, 500])
def test_moving_mean_is_the_projects_smooth(size, rows):
    x = np.random.default_rng(size * rows).standard_normal(rows)
    np.testing.assert_allclose(export_predict.moving_mean(x, size), smooth(x, size),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rows, window, stride", [(40, 40, 8), (100, 40, 8), (101, 40, 40),
                                                  (97, 10, 3)])
def test_window_starts_are_the_projects(rows, window, stride):
    assert export_predict.window_starts(rows, window, stride).tolist() == \
        window_starts(rows, window, stride).tolist()


def test_the_timestamp_column_is_found_and_formatted_as_the_project_does(tmp_path):
    import pandas as pd
    from core.timeseries.data import load_ts_dataset
    path = tmp_path / "data.csv"
    pd.DataFrame({"when": ["2026-01-01 00:00", "2026-01-01 00:01"], "a": [1.0, 2.0],
                  "label": [0, 1]}).to_csv(path, index=False)
    values, (name, column), labels = export_predict.read_rows(path, ["a"])
    series = load_ts_dataset(path).train
    assert name == "timestamp" and column.tolist() == series.timestamps.tolist()
    assert values.tolist() == series.values.tolist() and labels.tolist() == [0, 1]


def test_pca_residual_is_the_projects_pca_score():
    from core.timeseries.baselines import fit_pca
    rng = np.random.default_rng(0)
    train = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 5))
    test = rng.standard_normal((50, 5))
    pca = fit_pca(train)
    spec = {"mean": pca.mean.tolist(), "axes": pca.axes.tolist()}
    np.testing.assert_allclose(export_predict.pca_residual(test, spec), pca.scores(test),
                               rtol=1e-10)


@pytest.mark.parametrize("fusion", [Fusion(), Fusion(0.5, {"pca": 0.7}), Fusion(-1.0)])
def test_fused_is_the_projects_fuse(fusion):
    from core.timeseries.scoring import fuse
    rng = np.random.default_rng(1)
    terms = {"reconstruction": rng.lognormal(size=40), "pca": rng.lognormal(size=40) * 100,
             "pca@50": rng.lognormal(size=40) * 100}
    units = {"reconstruction": (0.1, 1.2), "pca": (4.0, 0.7), "pca@50": (4.2, 0.3)}
    np.testing.assert_allclose(export_predict.fused(terms, units, fusion.to_dict()),
                               fuse(terms, units, fusion), rtol=1e-10)


def test_a_cell_that_is_not_a_number_is_named(tmp_path):
    import pandas as pd
    path = tmp_path / "bad.csv"
    pd.DataFrame({"a": ["1.0", "2.0", "n/a"], "b": [1, 2, 3]}).to_csv(path, index=False)
    with pytest.raises(SystemExit, match=r"bad.csv: column 'a' row 3: expected a number, "
                                         r"found 'n/a'"):
        export_predict.read_rows(path, ["a", "b"])
