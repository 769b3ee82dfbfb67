"""Tracing a torch module to an ONNX file (torch.onnx with its dynamo exporter): what each
stream's exporter calls. A leaf: it imports nothing of the project."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn


def to_onnx(module: nn.Module, example: torch.Tensor, path: Path, input_name: str,
            output_names: list[str]) -> None:
    """`module` (one tensor in; one out, or a tuple of as many as `output_names`) as an ONNX
    file whose first dimension (the batch) is free."""
    batch = torch.export.Dim("batch", min=1)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # its notes (torchvision absent...) are not ours
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (example,), str(path), input_names=[input_name],
                              output_names=output_names, dynamic_shapes=({0: batch},),
                              dynamo=True, external_data=False, verbose=False)
    finally:
        exporter_log.setLevel(level)
