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
