"""Shared fixtures: small generated datasets, the real-data path, and a CLI runner."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Tiny models run fastest on one thread, and two torch threads spin-wait badly when another
# process holds the second core (10x slower seen here); every pipeline the tests spawn inherits it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "datasets"
TINY = ["--set", "patchtst.preset=tiny"]
IMG_TINY = ["--set", "swinmae.preset=tiny", "--set", "swinmae.train.epochs=2"]
SAMPLES = REPO / "data" / "samples"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors in-process: one thread is much faster than two on a shared 2-core machine."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_series(rows: int, seed: int, start: str = "2026-01-01") -> pd.DataFrame:
    """Three smooth periodic channels with a little noise and a timestamp column."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    frame = pd.DataFrame({
        "timestamp": pd.date_range(start, periods=rows, freq="min").astype(str),
        "a": np.sin(2 * np.pi * t / 40) + 0.05 * rng.standard_normal(rows),
        "b": np.cos(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(rows),
        "c": 0.5 * np.sin(2 * np.pi * t / 60) + 0.05 * rng.standard_normal(rows),
    })
    return frame.round(5)


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """train.csv (800 rows) and test.csv (400 rows, `label`, a spike at rows 200-202)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    make_series(800, 0).to_csv(folder / "train.csv", index=False)
    test = make_series(400, 1, "2026-01-02")
    test.loc[200:202, "b"] += 6.0
    test["label"] = 0
    test.loc[200:202, "label"] = 1
    test.to_csv(folder / "test.csv", index=False)
    return folder


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m core.pipeline ARGS` from the project root, as a user would type it."""
    return subprocess.run([sys.executable, "-m", "core.pipeline", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def both_streams_run(tmp_path_factory) -> Path:
    """A finished tiny run of both streams on copies of the bundled samples, built once per test
    run. Its tests read it; what they add (exports, scoring runs) goes beside it."""
    root = tmp_path_factory.mktemp("both-streams")
    ts = shutil.copytree(SAMPLES / "timeseries", root / "timeseries")
    images = shutil.copytree(SAMPLES / "images", root / "images")
    res = run_cli("run", "--ts-data", str(ts), "--img-data", str(images), "--workdir",
                  str(root / "ws"), *TINY, *IMG_TINY, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return only_run_dir(root / "ws")


def wait_for(predicate, what: str, timeout: float = 60.0):
    """Poll `predicate` until it returns something true, and return that; fail after `timeout`."""
    end = time.time() + timeout
    while time.time() < end:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def only_run_dir(workdir: Path) -> Path:
    runs = [p for p in (workdir / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def make_zip(*members: tuple[str | zipfile.ZipInfo, bytes],
             compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive in memory holding `members` (name or ZipInfo, content), in order."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", compression) as z:
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name: tests make them
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


# predict.py run as a user would, in a process that cannot import torch or this project
BARE = """
import runpy, sys
from pathlib import Path
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "core"):
            raise ImportError(f"predict.py imported {name}")
sys.meta_path.insert(0, Refuse())
repo, script = Path(sys.argv[1]), sys.argv[2]
assert all(Path(p or ".").resolve() != repo for p in sys.path), sys.path
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "core")]
"""


def scoring_run(run: Path, option: str, data: Path) -> Path:
    """The folder of a scoring run (`score RUN --ts-data|--img-data DATA`) of the model `run`."""
    before = set(run.parent.iterdir())
    res = run_cli("score", str(run), option, str(data))
    assert res.returncode == 0, res.stdout + res.stderr
    return next(p for p in run.parent.iterdir() if p not in before and p.is_dir())


def bare_predict(script: Path, data: Path, out: Path, *options: str) -> pd.DataFrame:
    """An exported predict.py run on `data` (with `options`) in a bare process (`BARE`); its
    scores.csv."""
    env = {"PATH": os.environ["PATH"], "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-I", "-c", BARE, str(REPO), str(script), str(data),
                          "--out", str(out), *options], cwd=out.parent, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return pd.read_csv(out)


def assert_same_scores(ours: pd.DataFrame, theirs: pd.DataFrame, key: str) -> None:
    """The same rows (by `key`), scores within 1e-3 relative, the same flags."""
    assert ours[key].tolist() == theirs[key].tolist()
    # relative to the score, or to its spread where it crosses zero (a fused score is a log
    # score: near 0, scores.csv's 6 significant digits are all a relative difference could see)
    scale = np.maximum(np.abs(theirs["score"]), theirs["score"].std())
    rel = np.abs(ours["score"] - theirs["score"]) / scale.clip(1e-12)
    assert rel.max() <= 1e-3, rel.max()
    assert ours["is_anomaly"].tolist() == theirs["is_anomaly"].tolist()
