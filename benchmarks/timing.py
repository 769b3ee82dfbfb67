"""Side-by-side throughput timing shared by the peer benchmarks (`peer_patchtst.py`,
`peer_swin.py`): every case runs in one process, and the cases take turns round by round
(A, B, A, B, ...), so a neighbour that slows the machine for a while slows both sides alike
(a second process on a 2-core CPU can distort one run 2–6×, `../shared/PERF.md`). Each round
gives one throughput per case; we report the median and the spread (min–max) over rounds.

Importing this also puts the project root on sys.path, so a benchmark can import `core`."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Case:
    """One thing to time: `step()` processes `items` samples (windows, images) per call; a turn
    is `steps` calls."""
    name: str
    step: Callable[[], object]
    items: int
    steps: int = 1


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Rates:
    """Items/s of one case, one entry per round: by wall time, and by this process's CPU time
    (all its threads). On a shared CPU the second is the steadier: time spent waiting for a core
    is not in it. On CUDA only the wall time means anything."""
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def run_turn(case: Case, steps: int, device: torch.device, rates: Rates | None = None) -> None:
    """`steps` calls of `case.step`; their items/s are appended to `rates` if given."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        case.step()
    synchronize(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if rates is not None:
        rates.wall.append(steps * case.items / wall)
        rates.cpu.append(steps * case.items / max(cpu, 1e-9))


def interleaved(cases: list[Case], rounds: int, warmup: int, device: torch.device,
                steps: int | None = None) -> dict[str, Rates]:
    """Warm every case up (`warmup` steps: allocator, kernels, autotuning), then `rounds` rounds
    in which each case runs one turn (`case.steps` steps, or `steps` if given); the case order
    flips every round so neither side always runs first. Returns the rates per case name."""
    for case in cases:
        run_turn(case, warmup, device)
    rates = {case.name: Rates() for case in cases}
    for r in range(rounds):
        for case in (cases if r % 2 == 0 else cases[::-1]):
            run_turn(case, steps or case.steps, device, rates[case.name])
    return rates


def train_step(model: torch.nn.Module, loss_fn: Callable, batch: torch.Tensor,
               runtime) -> Callable[[], None]:
    """The step function of one AdamW step on `loss_fn(model, batch)` in training mode, under
    the product's autocast and gradient scaler. The optimizer lives in the closure; the mode
    switch costs microseconds."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = runtime.grad_scaler()

    def step() -> None:
        model.train()
        with runtime.autocast():
            loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return step


def infer_step(model: torch.nn.Module, forward: Callable, batch: torch.Tensor,
               runtime) -> Callable[[], None]:
    """The step function of one `forward(model, batch)` without gradients in eval mode."""
    def step() -> None:
        model.eval()
        with torch.no_grad(), runtime.autocast():
            forward(model, batch)
    return step


@dataclass
class Summary:
    median: float
    low: float
    high: float

    def cell(self, digits: int = 1) -> str:
        """'123.4 (118.0–125.1)': the median and the min–max over rounds."""
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"


def summarize(values: list[float]) -> Summary:
    return Summary(statistics.median(values), min(values), max(values))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def comparison_rows(results: dict[str, dict[str, Rates]], ours: str, theirs: str,
                    digits: int = 1, cpu_column: bool = True
                    ) -> tuple[list[str], list[list[str]], dict[str, float]]:
    """results: benchmark label → {case name → Rates}, each holding `ours` and `theirs`.
    Returns a table header, its rows (items/s by wall time, median (min–max) per side; ours /
    theirs of the medians; with `cpu_column`, the same ratio by CPU time) and the wall-time
    ratio per label."""
    header = ["benchmark", ours, theirs, "ours / theirs"]
    header += ["ours / theirs by CPU time"] if cpu_column else []
    rows, ratios = [], {}
    for label, rates in results.items():
        a, b = summarize(rates[ours].wall), summarize(rates[theirs].wall)
        ratios[label] = a.median / b.median
        row = [label, a.cell(digits), b.cell(digits), f"{ratios[label]:.2f}×"]
        if cpu_column:
            cpu = summarize(rates[ours].cpu).median / summarize(rates[theirs].cpu).median
            row.append(f"{cpu:.2f}×")
        rows.append(row)
    return header, rows, ratios


def measure(cases: dict[str, list[Case]], runtime, rounds: int, warmup: int,
            steps: int | None, ours: str, theirs: str, caption: str,
            digits: int = 1) -> dict[str, float]:
    """Run every benchmark's cases interleaved; print the caption and the table. Returns ours /
    theirs (medians of wall-time rates) per benchmark label."""
    results = {label: interleaved(pair, rounds, warmup, runtime.device, steps)
               for label, pair in cases.items()}
    header, rows, ratios = comparison_rows(results, ours, theirs, digits,
                                           cpu_column=runtime.device.type == "cpu")
    print(f"{caption}; {runtime.describe()}, torch {torch.__version__}; median (min–max) of "
          f"{rounds} interleaved rounds\n")
    print(markdown_table(header, rows))
    return ratios


def ratio_line(train: float, infer: float) -> str:
    return f"ratio_train={train:.2f} ratio_infer={infer:.2f}"


def compare(cases: dict[str, list[Case]], runtime, rounds: int, warmup: int, steps: int | None,
            ours: str, theirs: str, caption: str, digits: int = 1) -> None:
    """`measure`, then the last line `ratio_train=… ratio_infer=…` (ours / theirs of the first
    two benchmarks: training, then inference at the first batch size)."""
    ratios = measure(cases, runtime, rounds, warmup, steps, ours, theirs, caption, digits)
    train, infer = list(ratios.values())[:2]
    print("\n" + ratio_line(train, infer))


def common_args(description: str) -> argparse.ArgumentParser:
    """The options both peer benchmarks take."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--device", choices=("cpu", "cuda"),
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per benchmark")
    ap.add_argument("--quick", action="store_true",
                    help="a few steps only: checks that everything runs, not a measurement")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch (default: torch's, one per core). On a busy "
                         "machine 1 gives steadier ratios: no thread waits for a descheduled "
                         "sibling at every operation")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def setup(args: argparse.Namespace, stream: str):
    """Threads and seed from the common options; returns the runtime `stream`'s model gets on
    the device at `precision: auto` (bf16 autocast on a CUDA GPU that has it; on a CPU with
    bf16 units only for a stream that gains from them, `Stream.cpu_bf16`; else fp32): both
    sides of a comparison run under its `autocast()` and `grad_scaler()`."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from core.devices import Runtime
    from core.streams import STREAMS
    return Runtime.on(torch.device(args.device), STREAMS[stream].cpu_bf16)

