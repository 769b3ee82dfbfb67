"""The held-out pick in `benchmarks/ts_accuracy.py --ablate`: a setting is judged on a dataset
only after being chosen on the others, so a setting that wins through one dataset alone does
not get credit for it."""
import importlib
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_a_dataset_left_out_does_not_choose_its_own_setting(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # ts_accuracy imports its sibling `cli`
    held_out_picks = importlib.import_module("ts_accuracy").held_out_picks
    auprc = np.array([[0.5, 0.6, 0.6],    # setting 0: steady
                      [0.9, 0.3, 0.3]])   # setting 1: wins on dataset 0 alone
    picks, held = held_out_picks(auprc)
    # dataset 0 left out: setting 0 is better on 1 and 2; datasets 1 or 2 left out: setting 1's
    # 0.9 on dataset 0 carries it (0.6 against 0.55), and it scores 0.3 where it was not chosen
    np.testing.assert_array_equal(picks, [0, 1, 1])
    np.testing.assert_allclose(held, [0.5, 0.3, 0.3])
