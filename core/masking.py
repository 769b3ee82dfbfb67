"""Mask rules shared by both self-supervised models (PatchTST over patches of a series, Swin MAE
over blocks of an image's patch grid): "units" are what is hidden or shown whole.

- Training hides a random set of exactly round(ratio * n_units) units per row (at least one, and
  at least one stays visible).
- Scoring in `masked` mode uses K complementary masks, K = ceil(1 / ratio) capped at n_units,
  so every unit is hidden in exactly one mask and its error counts once, predicted from what
  that mask shows (`masked_error`)."""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch


def n_hidden(n_units: int, ratio: float) -> int:
    """Units hidden per row in training: round(ratio * n_units), kept in [1, n_units - 1]."""
    return min(max(1, round(ratio * n_units)), max(n_units - 1, 1))


def random_hidden(n_rows: int, n_units: int, ratio: float,
                  generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool (n_rows, n_units), True = hidden: `n_hidden` units per row, uniformly at random (a
    random permutation per row). The generator must live on `device`."""
    noise = torch.rand(n_rows, n_units, generator=generator, device=device)
    ranks = noise.argsort(dim=1).argsort(dim=1)  # (n_rows, n_units): a permutation per row
    return ranks < n_hidden(n_units, ratio)


def n_complementary(n_units: int, ratio: float) -> int:
    """K complementary masks for a mask ratio: ceil(1 / ratio), at least 2, at most n_units
    (1e-9: 1 / 0.2 may be 5.000001)."""
    return min(max(2, math.ceil(1 / ratio - 1e-9)), n_units)


def masked_error(masks: Iterable[torch.Tensor], error_of: Callable[[torch.Tensor], torch.Tensor],
                 hidden_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Σ over complementary masks of error_of(mask) × hidden_of(mask): each place's error taken
    from the one reconstruction in which it was hidden. error_of gives the error of the
    reconstruction under a mask; hidden_of that mask as 0/1 over the error's trailing shape."""
    return sum(error_of(mask) * hidden_of(mask) for mask in masks)


def visible_index(hidden: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Bool (n_rows, n_units), True = hidden → long (n_rows, n_keep): each row's visible unit
    positions in ascending order. Rows of `random_hidden` all show n_keep = n_units - n_hidden,
    so the kept units form one dense batch (MAE: the encoder sees visible units only)."""
    n_units = hidden.shape[1]
    order = hidden.long() * n_units + torch.arange(n_units, device=hidden.device)  # distinct keys
    return order.argsort(dim=1)[:, :n_keep]  # visible first, each group in position order


def gather_units(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (n_rows, n_units, D), index (n_rows, n) → (n_rows, n, D): row r's units index[r]."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


def scatter_units(fill: torch.Tensor, tokens: torch.Tensor, index: torch.Tensor,
                  n_units: int) -> torch.Tensor:
    """The inverse of `gather_units`: tokens (n_rows, n, D) put back at positions index
    (n_rows, n) of an (n_rows, n_units, D) tensor whose other units hold `fill` (D,) (a mask
    token). Gradients reach both the tokens and the fill."""
    rows, _, D = tokens.shape
    base = fill.to(tokens.dtype).expand(rows, n_units, D)
    return base.scatter(1, index[..., None].expand(-1, -1, D), tokens)
