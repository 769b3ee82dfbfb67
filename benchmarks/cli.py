"""The one way the benchmarks run the product: the real CLI, as a user would, in a workspace.
Importing this also puts the project root on sys.path, so a benchmark can read run files with
`core` helpers."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_pipeline(data_args: list[str], workdir: Path, name: str,
                 overrides: list[str]) -> tuple[Path, float]:
    """`python -m core.pipeline run DATA_ARGS --set ...` in `workdir`; returns the run folder and
    the wall time in seconds. Exits with the run's output tail when it fails."""
    cmd = [sys.executable, "-m", "core.pipeline", "run", *data_args, "--workdir", str(workdir),
           "--name", name]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.time()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - t0
    if res.returncode != 0:
        sys.exit(f"{name}: run failed (exit {res.returncode}):\n"
                 f"{res.stdout[-3000:]}{res.stderr[-3000:]}")
    return sorted(p for p in (workdir / "runs").iterdir() if p.is_dir())[-1], wall
