"""The masking rules both models share (PatchTST hides patches of a series, Swin MAE blocks of
patches of an image). Convention everywhere: a bool mask, True = hidden.

- `random_hidden`: training hides a fixed count of items per row, chosen uniformly at random;
- `complementary_count`: scoring hides each item in exactly one of K masks, K from the
  training mask ratio, so every item is predicted once from visible context."""
from __future__ import annotations

import math

import torch


def random_hidden(n_rows: int, n_items: int, n_hidden: int,
                  generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool (n_rows, n_items), True = hidden: exactly `n_hidden` items per row, uniformly at
    random (the ranks of uniform noise are a random permutation per row). The generator must
    live on `device`."""
    noise = torch.rand(n_rows, n_items, generator=generator, device=device)
    return noise.argsort(dim=1).argsort(dim=1) < n_hidden


def complementary_count(ratio: float, n_items: int) -> int:
    """K, the number of complementary masks for a training mask ratio: each hides ~1/K of the
    items, as close to `ratio` as K >= 2 allows, and no more masks than items."""
    return min(max(2, math.ceil(1 / ratio - 1e-9)), n_items)  # 1e-9: 1 / 0.2 may be 5.000001
