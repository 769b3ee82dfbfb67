"""Device choice and mixed precision. `device: auto` picks CUDA when available, else CPU; on
CUDA, autocast runs in bf16 where the GPU supports it (full precision otherwise)."""
from __future__ import annotations

import contextlib

import torch

from core.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' → a torch.device; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("pipeline.device: 'cuda' was asked for, but torch sees no CUDA device "
                          f"(torch {torch.__version__}); use 'auto' or 'cpu'")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on a CUDA device that supports it; a no-op context elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def describe(device: torch.device) -> str:
    """'cpu (2 threads)' or 'cuda:0 NVIDIA H200 (bf16)' for logs and progress.json."""
    if device.type == "cuda":
        index = device.index or 0
        bf16 = " (bf16)" if torch.cuda.is_bf16_supported() else ""
        return f"cuda:{index} {torch.cuda.get_device_name(index)}{bf16}"
    return f"cpu ({torch.get_num_threads()} threads)"


def seed_everything(seed: int | None) -> None:
    if seed is not None:
        torch.manual_seed(seed)


def device_facts() -> dict:
    """What the console's device panel shows: torch and CUDA versions, and per GPU its name and
    memory (total, and in use by this process)."""
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append({"index": i, "name": props.name,
                         "memory_total_gb": round(props.total_memory / 2**30, 1),
                         "memory_used_gb": round(torch.cuda.memory_allocated(i) / 2**30, 2)})
    return {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
            "cuda_version": torch.version.cuda, "gpus": gpus,
            "cpu_threads": torch.get_num_threads()}
