"""Checkpoints and result arrays (issue 13, item 12, and item 5's metrics on resume): a
truncated or hostile file, or a config edited under a run, is one clear error naming the file;
torch's advice to load unsafely is never shown."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from core.config import defaults
from core.devices import Runtime
from core.errors import TrainingError
from core.results import ResultsError, load_arrays
from core.run_files import StreamFiles
from core.timeseries.results import load_ts_results
from core.training import fit, load_checkpoint, save_checkpoint

CPU = Runtime(torch.device("cpu"))
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class LinearAE(nn.Module):
    def __init__(self, dim: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(dim, dim)

    def loss(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, dim)
        return (self.lin(x) - x).pow(2).mean()


class Quiet:
    """A Reporter that remembers where a resume started."""
    resumed_at = None

    def step(self, **kw): pass

    def epoch(self, **kw): pass

    def should_stop(self): return False

    def warn(self, message): pass

    def resumed(self, **kw): self.resumed_at = kw


def train(out_dir, dim: int = 4, resume: bool = False, epochs: int = 2) -> Quiet:
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, dim, generator=g) for _ in range(3)]
    cfg = defaults("patchtst.train", epochs=epochs, batch_size=8, lr=0.01, warmup_frac=0.0,
                   patience=0)
    reporter = Quiet()
    fit(LinearAE(dim), lambda epoch: iter(batches), 3, lambda: iter(batches[:1]), cfg, CPU,
        out_dir, {}, reporter, resume=resume)
    return reporter


class Evil:
    def __reduce__(self):
        return (os.system, ("echo owned > owned.txt",))


def test_a_truncated_last_pt_is_a_training_error_on_resume(tmp_path):
    train(tmp_path, epochs=1)
    data = (tmp_path / StreamFiles.last).read_bytes()
    (tmp_path / StreamFiles.last).write_bytes(data[: len(data) // 2])
    with pytest.raises(TrainingError, match=r"last.pt: cannot be read as a checkpoint") as e:
        train(tmp_path, resume=True)
    assert "\n" not in str(e.value)


def test_a_malicious_pickle_is_refused_without_torchs_unsafe_advice(tmp_path):
    torch.save({"model": Evil()}, tmp_path / StreamFiles.checkpoint)
    with pytest.raises(TrainingError) as e:
        load_checkpoint(tmp_path / StreamFiles.checkpoint)
    message = str(e.value)
    assert "refused for safety" in message and str(tmp_path / StreamFiles.checkpoint) in message
    assert "weights_only" not in message and "False" not in message
    assert not (tmp_path / "owned.txt").exists()


def test_something_that_is_not_a_checkpoint_is_named(tmp_path):
    save_checkpoint(tmp_path / StreamFiles.checkpoint, {"weights": torch.zeros(2)})  # no "model"
    with pytest.raises(TrainingError, match="expected a checkpoint written by this project"):
        load_checkpoint(tmp_path / StreamFiles.checkpoint)
    (tmp_path / StreamFiles.last).write_text("hello")
    with pytest.raises(TrainingError, match="cannot be read as a checkpoint"):
        load_checkpoint(tmp_path / StreamFiles.last)


def test_resume_after_the_model_sizes_were_edited_names_the_mismatch(tmp_path):
    train(tmp_path, dim=4, epochs=1)
    with pytest.raises(TrainingError) as e:
        train(tmp_path, dim=6, resume=True)
    message = str(e.value)
    assert "does not fit the model run.yaml describes" in message and "size mismatch" in message
    assert "undo the edit, or start a new run" in message and "\n" not in message


def test_resume_reports_where_training_picks_up(tmp_path):
    assert train(tmp_path, epochs=1).resumed_at is None  # a fresh run rewinds nothing
    assert train(tmp_path, resume=True).resumed_at == {"step": 3, "epoch": 1}


def test_a_pickled_object_array_in_channel_scores_is_a_results_error(tmp_path):
    out = tmp_path / "run" / "patchtst"
    out.mkdir(parents=True)
    (out / "scoring.json").write_text('{"threshold": 1.0}')
    (out / "scores.csv").write_text("index,score,is_anomaly\n0,0.1,0\n")
    np.savez(out / "channel_scores.npz", errors=np.array([Evil()], dtype=object),
             channels=np.array(["a"]))
    with pytest.raises(ResultsError, match="found pickled Python objects"):
        load_ts_results(tmp_path / "run")
    assert not (tmp_path / "owned.txt").exists()


def test_a_truncated_or_incomplete_npz_is_a_results_error(tmp_path):
    np.savez(tmp_path / "a.npz", errors=np.zeros((3, 2)))
    with pytest.raises(ResultsError, match="expected arrays errors, channels, found no"):
        load_arrays(tmp_path / "a.npz", ("errors", "channels"))
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "a.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ResultsError, match="a.npz"):
        load_arrays(tmp_path / "a.npz", ("errors",))
