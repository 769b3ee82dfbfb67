"""One short check of the CUDA path, for a machine with a GPU: everything in about 8 minutes,
ending with one summary table.

  1. both streams end to end through the CLI on the bundled samples (tiny presets), on CUDA with
     `precision: auto` (bf16 autocast where the GPU has it), and checks the run folder;
  2. the same time-series run with fp16 + loss scaling, with `torch.compile` (the visible-only
     encoder's gather and scatter compiled) and scoring in `full` mode; the image run with
     block masking (the default, uniform masking, runs in step 1), with the defect heads (an
     ensemble of 3; the tiny preset has none) and with kNN scoring at zoom 2;
  3. a 2-process DDP run (torchrun, nccl) when two or more GPUs are visible;
  4. the throughput benchmarks in their `--quick` form on CUDA: PatchTST and Swin MAE against
     the Hugging Face peers (when `transformers` is installed; Swin MAE at the `base` preset
     with uniform masking, and with block masking at Swin-T's 224 px), achieved FLOP/s, 1M-row
     scoring.

    python benchmarks/gpu_check.py [--workdir DIR] [--skip-bench]

Each step runs as a subprocess with its own time limit; a failing step is reported and the
check goes on. Exit status 1 when any step failed (a skipped step is not a failure)."""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from cli import ROOT

SAMPLES = ROOT / "data" / "samples"
TINY = ["patchtst.preset=tiny", "swinmae.preset=tiny", "swinmae.train.epochs=2",
        "pipeline.device=cuda"]
HEADLINE = ("auroc", "auprc", "image_auroc", "pixel_auroc")
Result = tuple[bool, str, float]  # (succeeded, what to show, seconds)


def run(cmd: list[str], limit_s: float) -> Result:
    """A command; what to show is the last lines of its output."""
    t0 = time.time()
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit_s)
        ok, out = res.returncode == 0, res.stdout + res.stderr
    except subprocess.TimeoutExpired as e:
        ok, out = False, f"timed out after {limit_s:.0f} s\n{e.stdout or ''}"
    return ok, "\n".join(out.strip().splitlines()[-4:]), time.time() - t0


def pipeline_step(workdir: Path, name: str, data: list[str], sets: list[str],
                  limit_s: float = 120) -> Result:
    """A CLI run; on success, what its run folder says: device line, status, headline metrics."""
    cmd = [sys.executable, "-m", "core.pipeline", "run", *data, "--workdir", str(workdir / name)]
    for s in sets:
        cmd += ["--set", s]
    ok, tail, took = run(cmd, limit_s)
    if not ok:
        return ok, tail, took
    run_dir = next((workdir / name / "runs").glob("*/progress.json")).parent
    progress = json.loads((run_dir / "progress.json").read_text())
    streams = json.loads((run_dir / "summary.json").read_text())["streams"]
    headline = {f"{stream}.{key}": round(value, 3) for stream, s in streams.items()
                for key, value in (s["metrics"] or {}).items() if key in HEADLINE and value}
    ok = progress["status"] == "done" and "cuda" in progress["device"]
    return ok, f"{progress['status']} on {progress['device']}; {headline}", took


def steps(workdir: Path, skip_bench: bool) -> list[tuple[str, Callable[[], Result]]]:
    import torch
    both = ["--ts-data", str(SAMPLES / "timeseries"), "--img-data", str(SAMPLES / "images")]
    ts = both[:2]
    py = sys.executable
    out = [
        ("both streams, bf16 (auto)", lambda: pipeline_step(workdir, "auto", both, TINY, 240)),
        ("time series, fp16 + GradScaler",
         lambda: pipeline_step(workdir, "fp16", ts, TINY + ["pipeline.precision=fp16"])),
        ("time series, torch.compile",
         lambda: pipeline_step(workdir, "compile", ts, TINY + ["pipeline.compile=true"], 240)),
        ("time series, full scoring",  # the default is masked (attention mask, in bf16)
         lambda: pipeline_step(workdir, "full", ts, TINY + ["patchtst.score.mode=full"])),
        ("images, block masking",  # the encoder on the full grid, complementary-mask scoring
         lambda: pipeline_step(workdir, "block", both[2:], TINY + [
             "swinmae.model.masking=block"])),
        ("images, defect heads (ensemble of 3)",  # the default method; tiny has none
         lambda: pipeline_step(workdir, "head", both[2:], TINY + [
             "swinmae.score.method=head", "swinmae.head.ensemble=3"], 240)),
        ("images, knn at zoom 2",  # memory bank on the GPU, tiled maps
         lambda: pipeline_step(workdir, "knn", both[2:], TINY + [
             "swinmae.score.method=knn", "swinmae.data.zoom=2",
             "swinmae.score.knn.bank_size=1000"], 240)),
    ]
    if torch.cuda.device_count() >= 2:
        out.append(("both streams, DDP on 2 GPUs", lambda: pipeline_step(
            workdir, "ddp", both, TINY + ["pipeline.distributed=true", "pipeline.nproc=2"], 240)))
    if skip_bench:
        return out
    bench = ROOT / "benchmarks"
    if importlib.util.find_spec("transformers"):
        out += [("PatchTST vs HF (quick)",
                 lambda: run([py, str(bench / "peer_patchtst.py"), "--quick", "--device", "cuda"],
                             120)),
                ("Swin MAE vs HF (quick)",
                 lambda: run([py, str(bench / "peer_swin.py"), "--quick", "--device", "cuda"],
                             120)),
                ("Swin MAE block masking vs HF (quick, 224 px)",
                 lambda: run([py, str(bench / "peer_swin.py"), "--quick", "--device", "cuda",
                              "--masking", "block", "--image-size", "224", "--window-size",
                              "7"], 120))]
    out += [("FLOP/s vs matmul (quick)",
             lambda: run([py, str(bench / "flops.py"), "--quick", "--device", "cuda"], 90)),
            ("1M-row scoring (quick)",
             lambda: run([py, str(bench / "score_scale.py"), "--quick", "--device", "cuda"], 90))]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, help="where the runs go (default: a temp folder)")
    p.add_argument("--skip-bench", action="store_true", help="only the pipeline checks")
    args = p.parse_args()
    import torch
    if not torch.cuda.is_available():
        print(f"no CUDA device visible to torch {torch.__version__}: nothing to check")
        return 1
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"{torch.cuda.device_count()} × {torch.cuda.get_device_name(0)}, "
          f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    rows = []
    for name, check in steps(workdir, args.skip_bench):
        ok, tail, took = check()
        rows.append((name, ok, took, tail))
        print(f"\n## {name}: {'ok' if ok else 'FAILED'} ({took:.0f} s)\n{tail}", flush=True)
    print("\n| check | result | s |\n| --- | --- | --- |")
    for name, ok, took, _ in rows:
        print(f"| {name} | {'ok' if ok else 'FAILED'} | {took:.0f} |")
    failed = sum(not ok for _, ok, _, _ in rows)
    print(f"gpu_check_failed={failed} gpu_check_total={len(rows)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
