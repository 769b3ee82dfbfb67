"""Uniform masking for Swin MAE (UM-MAE, Li et al. 2022): the mask-unit grid is cut into 2×2
blocks of units and one unit of each block is kept. Kept units, each with its unit×unit cells,
are packed into a grid half as wide (a kept unit sits at its block's position), on which Swin's
windows and patch merging still work, so the encoder sees a quarter of the tokens.

A packing is `keep`, long (B, bh, bw) with bh×bw blocks: which unit of each block is kept,
0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right (row keep // 2, column keep % 2). A batch
of 1 broadcasts over the images. The same packing applies to any grid of units: patches (unit =
mask_unit) or pixels (unit = mask_unit * patch_size).

Dimension names: B batch, H×W full grid, u unit side in grid cells, bh×bw blocks of 2×2 units
(H = 2*bh*u), D channels."""
from __future__ import annotations

import torch


def uniform_keep(B: int, unit_grid: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Long (B, unit_grid/2, unit_grid/2) in 0..3: one unit kept per 2×2 block, uniformly at
    random per image and block. The generator must live on `device`."""
    if unit_grid % 2:
        raise ValueError(f"a {unit_grid}×{unit_grid} unit grid does not split into 2×2 blocks")
    n = unit_grid // 2
    return torch.randint(0, 4, (B, n, n), generator=generator, device=device)


SCORING_SLOTS = (0, 3)  # the top-left, then the bottom-right unit of every 2×2 block


def diagonal_packings(unit_grid: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Long (2, unit_grid/2, unit_grid/2): the packings that keep the top-left, then the
    bottom-right unit of every block. Together they drop every unit: the diagonal ones once, the
    other two twice. Scoring with these two costs half of all four packings and scored alike
    on magnetic tile (benchmarks/README.md)."""
    n = unit_grid // 2
    return torch.tensor(SCORING_SLOTS, device=device).view(2, 1, 1).expand(2, n, n)


def pack(x: torch.Tensor, keep: torch.Tensor, unit: int) -> torch.Tensor:
    """(B, H, W, D) → (B, H/2, W/2, D): the kept unit of each block, unit×unit cells together,
    at its block's position."""
    B, H, W, D = x.shape
    bh, bw = H // (2 * unit), W // (2 * unit)
    keep = keep.expand(B, bh, bw)
    blocks = x.view(B, bh, 2, unit, bw, 2, unit, D).permute(0, 1, 4, 2, 5, 3, 6, 7)
    # blocks (B, bh, bw, 2, 2, u, u, D): one (row, column) of the 2×2 picked per image and block
    b = torch.arange(B, device=x.device).view(B, 1, 1)
    i = torch.arange(bh, device=x.device).view(1, bh, 1)
    j = torch.arange(bw, device=x.device).view(1, 1, bw)
    kept = blocks[b, i, j, keep // 2, keep % 2]  # (B, bh, bw, u, u, D)
    return kept.permute(0, 1, 3, 2, 4, 5).reshape(B, bh * unit, bw * unit, D)


def unpack(packed: torch.Tensor, keep: torch.Tensor, unit: int,
           fill: torch.Tensor) -> torch.Tensor:
    """(B, H/2, W/2, D) → (B, H, W, D): each packed unit back at its place in its block, `fill`
    (D,) or (1,) at the three dropped units. unpack(pack(x)) equals x at the kept units."""
    B, h2, w2, D = packed.shape
    bh, bw = h2 // unit, w2 // unit
    units = packed.view(B, bh, unit, bw, unit, D).permute(0, 1, 3, 2, 4, 5)[:, :, :, None]
    # units (B, bh, bw, 1, u, u, D); kept (B, bh, bw, 4, 1, 1, 1): the one slot each unit fills
    kept = keep.expand(B, bh, bw)[..., None] == torch.arange(4, device=keep.device)
    out = torch.where(kept[..., None, None, None], units, fill.to(packed.dtype))
    out = out.view(B, bh, bw, 2, 2, unit, unit, D).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return out.reshape(B, 2 * h2, 2 * w2, D)  # (B, bh, 2, u, bw, 2, u, D) → (B, H, W, D)


def dropped(keep: torch.Tensor, unit: int) -> torch.Tensor:
    """Bool (B, H, W), True = dropped (the three units of each block that are not kept)."""
    B, bh, bw = keep.shape
    visible = torch.zeros(B, bh * unit, bw * unit, 1, dtype=torch.bool, device=keep.device)
    return unpack(visible, keep, unit, torch.ones(1, dtype=torch.bool, device=keep.device))[..., 0]
