"""Where a run came from: `provenance.json` in its folder, written when the pipeline starts it.

It holds the sha256 of every data file the run reads (a dataset folder: each file in it), the
versions of python, torch, numpy, pandas and streamlit (and CUDA and the NVIDIA driver when a
GPU is used), the project's git commit when it is a git checkout, the exact command, seed,
device and precision; for a scoring run, the model run and the sha256 of each checkpoint it
scores with. A resume appends its own command and time under `resumes`."""
from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from core.config import RunConfig
from core.run_files import RunFiles
from core.streams import path_keys
from core.fileio import read_json, write_json

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HIDDEN = {"__macosx", "thumbs.db", "desktop.ini"}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def data_files(path: Path) -> list[Path]:
    """A data path's files: itself, or every visible file under the folder, by path."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not any(
        part.startswith(".") or part.lower() in HIDDEN for part in p.relative_to(path).parts))


def data_hashes(cfg: RunConfig) -> dict[str, dict[str, str]]:
    """{config key: {file (relative to a folder): sha256}} of each data path the run names."""
    hashes = {}
    for key in path_keys():
        value = getattr(cfg.pipeline, key)
        if not value:
            continue
        root = Path(value)
        try:
            hashes[key] = {(p.relative_to(root).as_posix() if root.is_dir() else p.name):
                           sha256_of(p) for p in data_files(root)}
        except OSError as e:
            hashes[key] = {"error": f"{value}: cannot be read ({e.strerror or e})"}
    return hashes


def versions(cuda: bool) -> dict[str, str | None]:
    """Library versions (from package metadata: nothing is imported), CUDA and the driver when
    the run uses a GPU."""
    found = {"python": platform.python_version()}
    for package in ("torch", "numpy", "pandas", "streamlit"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    if cuda:
        import torch
        found["cuda"] = torch.version.cuda
        found["nvidia_driver"] = _driver()
    return found


def _driver() -> str | None:
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            return str(pynvml.nvmlSystemGetDriverVersion())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no nvidia-ml-py, or no driver
        return None


def git_commit(root: Path = PROJECT_ROOT) -> dict | None:
    """{"commit": sha, "dirty": uncommitted changes} of the checkout at `root`; None when it is
    not one (or git is missing)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def command() -> str:
    """The command this pipeline process runs, as one could type it again."""
    return shlex.join([sys.executable, "-m", "core.pipeline", *sys.argv[1:]])


def model_checkpoints(cfg: RunConfig, streams: list[str]) -> dict | None:
    """For a scoring run: the model run and the sha256 of the checkpoint of each stream it
    scores with; None for a training run."""
    if not cfg.pipeline.from_run:
        return None
    model_run = Path(cfg.pipeline.from_run)
    hashes = {}
    for stream in streams:
        path = RunFiles(model_run).stream(stream).checkpoint
        hashes[stream] = sha256_of(path) if path.is_file() else None
    return {"run_id": model_run.name, "path": str(model_run), "best_pt_sha256": hashes}


def record(run_dir: Path, cfg: RunConfig, streams: list[str], device: str, precision: str,
           resume: bool) -> dict:
    """Write provenance.json for a start of the run (a resume is appended under `resumes`)."""
    path = RunFiles(run_dir).provenance
    now = time.time()
    previous = read_json(path)
    if resume and isinstance(previous, dict):
        previous.setdefault("resumes", []).append(
            {"command": command(), "time": now, "device": device, "precision": precision})
        write_json(path, previous)
        return previous
    facts = {"command": command(), "time": now, "seed": cfg.pipeline.seed, "device": device,
             "precision": precision, "versions": versions(device.startswith("cuda")),
             "git": git_commit(), "data_sha256": data_hashes(cfg),
             "model_run": model_checkpoints(cfg, streams), "resumes": []}
    write_json(path, facts)
    return facts


def provenance_rows(run_dir: Path) -> list[tuple[str, str]]:
    """provenance.json as (what, value) rows for people; [] when the run has none."""
    facts = read_json(RunFiles(run_dir).provenance)
    if not isinstance(facts, dict):
        return []
    rows = [("command", str(facts.get("command"))), ("seed", str(facts.get("seed"))),
            ("device", str(facts.get("device"))), ("precision", str(facts.get("precision")))]
    git = facts.get("git")
    if isinstance(git, dict):
        dirty = " (with uncommitted changes)" if git["dirty"] else ""
        rows.append(("git commit", f"{git['commit']}{dirty}"))
    else:
        rows.append(("git commit", "not a git checkout"))
    rows += [(f"version: {k}", str(v)) for k, v in (facts.get("versions") or {}).items()]
    model = facts.get("model_run")
    if isinstance(model, dict):
        rows.append(("model run", str(model.get("run_id"))))
        rows += [(f"{s}/best.pt sha256", str(h))
                 for s, h in (model.get("best_pt_sha256") or {}).items()]
    for key, files in (facts.get("data_sha256") or {}).items():
        rows += [(f"{key}: {name}", str(sha)) for name, sha in files.items()]
    rows += [(f"resumed {i}", r.get("command", "")) for i, r in
             enumerate(facts.get("resumes") or [], 1)]
    return rows
