"""Device choice, mixed precision, optional compilation, and what the console shows about the
hardware. `device: auto` picks CUDA when available, else CPU; `precision: auto` is bf16 autocast
on a CUDA GPU that supports it, fp16 (with a gradient scaler) on one that doesn't; on a CPU it is
bf16 where the CPU has bf16 matrix units (AMX, AVX-512 BF16) and the stream gains from it
(`Stream.cpu_bf16`), fp32 elsewhere: without them bf16 is emulated and slower than fp32."""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from core.errors import ConfigError, TrainingError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' → a torch.device; asking for CUDA without one is an error.
    'cuda' has no index: under torchrun each rank has set its own current device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("pipeline.device: 'cuda' was asked for, but torch sees no CUDA device "
                          f"(torch {torch.__version__}); use 'auto' or 'cpu'")
    return torch.device(name)


CPU_BF16_FLAGS = {"amx_bf16": "AMX", "avx512_bf16": "AVX-512 BF16"}  # /proc/cpuinfo flag → name


@functools.cache  # the flags do not change while a process runs; every Runtime asks
def cpu_bf16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's bf16 matrix units from its flags ('AMX' before 'AVX-512 BF16', which AMX CPUs
    also have), or None: no such flag, or no /proc/cpuinfo (not Linux): then none are assumed."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.startswith("flags")), []))
    return next((name for flag, name in CPU_BF16_FLAGS.items() if flag in flags), None)


def resolve_precision(name: str, device: torch.device, cpu_bf16: bool = True) -> str:
    """'auto' | 'bf16' | 'fp16' | 'fp32' → what autocast will use on `device`. On a CPU, 'auto'
    is bf16 only where the CPU has bf16 units and `cpu_bf16` (the model gains from them)."""
    bf16_ok = device.type != "cuda" or torch.cuda.is_bf16_supported()
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if bf16_ok else "fp16"
        return "bf16" if cpu_bf16 and cpu_bf16_units() else "fp32"
    if name == "bf16" and not bf16_ok:
        raise ConfigError(f"pipeline.precision: this GPU ({torch.cuda.get_device_name()}) has no "
                          "bf16 support; use 'fp16' or 'auto'")
    return name


@dataclass(frozen=True)
class Runtime:
    """Where and how this process computes: the device, the autocast precision, and whether the
    training model is compiled."""
    device: torch.device
    precision: str = "fp32"  # 'bf16' | 'fp16' | 'fp32'
    compile: bool = False

    @classmethod
    def on(cls, device: torch.device, cpu_bf16: bool = True) -> "Runtime":
        """The default runtime on `device` (`precision: auto`, uncompiled) for a model that gains
        from bf16 on a CPU with bf16 units or not (`cpu_bf16`, its stream's `Stream.cpu_bf16`)."""
        return cls(device, resolve_precision("auto", device, cpu_bf16))

    @classmethod
    def of(cls, pipeline, cpu_bf16: bool = True) -> "Runtime":
        """From the run's `pipeline` config section, for a model that gains from bf16 on a
        CPU with bf16 units or not (`cpu_bf16`, its stream's `Stream.cpu_bf16`)."""
        device = resolve_device(pipeline.device)
        return cls(device, resolve_precision(pipeline.precision, device, cpu_bf16),
                   pipeline.compile)

    def autocast(self):
        """Autocast to bf16/fp16, or a no-op context for fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.precision])

    def grad_scaler(self) -> torch.amp.GradScaler:
        """fp16 gradients underflow without loss scaling; a disabled scaler is a pass-through."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def describe(self) -> str:
        """'cpu (2 threads, no bf16 units), fp32', 'cpu (56 threads, AMX), bf16' or 'cuda:0
        NVIDIA H200, bf16' for logs and progress.json."""
        if self.device.type == "cuda":
            index = torch.cuda.current_device() if self.device.index is None else self.device.index
            where = f"cuda:{index} {torch.cuda.get_device_name(index)}"
        else:
            n = torch.get_num_threads()
            units = cpu_bf16_units() or "no bf16 units"
            where = f"cpu ({n} thread{'s' if n != 1 else ''}, {units})"
        return f"{where}, {self.precision}" + (", compiled" if self.compile else "")


def compiled(module: nn.Module, warn: Callable[[str], None]) -> nn.Module:
    """`torch.compile(module)`, or `module` itself (with a warning) where compilation is not
    available. Compilation is lazy, so `fit` also falls back if the first compiled step fails."""
    try:
        return torch.compile(module)
    except Exception as e:  # no compiler backend on this platform/Python
        warn(f"torch.compile unavailable ({type(e).__name__}: {e}); training uncompiled")
        return module


@contextlib.contextmanager
def explain_oom(where: str, hint: str):
    """Turn an out-of-memory error (CUDA, or the CPU allocator's) into a TrainingError saying
    what to lower."""
    keep = ", then start a new run (the checkpoints this run wrote so far are kept)"
    try:
        yield
    except torch.OutOfMemoryError as e:
        raise TrainingError(f"the GPU ran out of memory {where}; {hint}{keep}") from e
    except (MemoryError, RuntimeError) as e:
        if not isinstance(e, MemoryError) and "DefaultCPUAllocator" not in str(e):
            raise
        raise TrainingError(f"the CPU ran out of memory {where}; {hint}{keep}") from e


def seed_everything(seed: int | None) -> None:
    if seed is not None:
        torch.manual_seed(seed)


def device_facts() -> dict:
    """What the console's device panel shows: torch and CUDA versions, and per GPU its name,
    memory total and in use (whole device, through NVML when `nvidia-ml-py` is installed; else
    what torch's caching allocator holds in this process) and utilisation (NVML only)."""
    gpus = []
    if torch.cuda.is_available():
        nvml = _nvml_readings(torch.cuda.device_count())
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpu = {"index": i, "name": props.name,
                   "memory_total_gb": round(props.total_memory / 2**30, 1),
                   "memory_used_gb": round(torch.cuda.memory_reserved(i) / 2**30, 2),
                   "utilization_pct": None, "bf16": torch.cuda.is_bf16_supported()}
            gpus.append(gpu | nvml.get(i, {}))
    return {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
            "cuda_version": torch.version.cuda, "gpus": gpus, "nvml": bool(gpus) and bool(nvml),
            "cpu_threads": torch.get_num_threads(), "cpu_bf16": cpu_bf16_units()}


def _nvml_readings(count: int) -> dict[int, dict]:
    """Per GPU index: memory used (whole device) and utilisation, from NVML; {} without it.
    NVML indexes devices in PCI order, as torch does unless CUDA_VISIBLE_DEVICES reorders."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:  # nvidia-ml-py not installed, or no NVIDIA driver
        return {}
    try:
        readings = {}
        for i in range(min(count, pynvml.nvmlDeviceGetCount())):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            readings[i] = {"memory_used_gb": round(memory.used / 2**30, 2),
                           "utilization_pct": pynvml.nvmlDeviceGetUtilizationRates(handle).gpu}
        return readings
    finally:
        pynvml.nvmlShutdown()
