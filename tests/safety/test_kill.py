"""The randomized kill test (issue 13), small: a few SIGKILLs at random moments over real tiny
time-series and image runs, then every file loads, the index matches the folders and a new run
finishes. `benchmarks/kill_matrix.py` runs the same with many kills."""
from __future__ import annotations

import os
import random

import pytest

from benchmarks.kill_matrix import kill_matrix
from core.runs import workspace

KILLS = 3


@pytest.mark.slow
def test_random_kills_lose_nothing_and_leave_an_honest_state(tmp_path):
    seed = int(os.environ.get("ATC_KILL_SEED") or random.randrange(2**31))
    problems = kill_matrix(workspace(tmp_path / "ws"), KILLS, seed, max_wait=8.0)
    assert not problems, f"seed {seed} (rerun with ATC_KILL_SEED={seed}):\n" + "\n".join(problems)
