"""Feature-space scoring (`score.method: knn`, after PatchCore, Roth et al., CVPR 2022): each
patch of an image is scored by the distance of its Swin MAE encoder features to the nearest
patch feature of the normal training images.

A patch's feature is the concatenation of the encoder stages' outputs at its place (nothing
hidden), each averaged over its 3×3 neighbourhood (PatchCore's local aggregation: a defect
shows in the context of a patch, not in one token), brought to the grid of the finest chosen
stage and standardised per place across its channels, so that every stage weighs alike. The
normal features form a memory bank, subsampled to at most `bank_size` entries by greedy
k-centre selection (PatchCore's coreset: the kept entries cover the rare normal patterns as
well as the common ones, which random subsampling would thin out), so memory and scoring time
stay bounded however many images there are.

Each bank entry remembers which training image it came from: scoring a training image with its
own patches left out (`exclude`) gives the distance an unseen normal image would get, which is
what the normal-image statistics (`score.normalize`) need.

The same bank holds the defect head's deepest features for `score.head_knn`, standardised per
channel (`MemoryBank.build(standardise=True)`): unlike the encoder's, they are not standardised
per place.

Dimension names: B images, F feature channels, g feature grid side, K bank entries, N
candidate features, Dp projected width."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from core.fileio import atomic_path
from core.images.swinmae import SwinMAE

PROJECTED = 64  # width of the random projection the k-centre selection compares in
CANDIDATES = 16  # about this many candidates per bank entry go into the selection: a random
# share of each image's patches first, so its cost (N × K × Dp) and memory stay bounded
SHORTLIST = 4  # entries nearest by the fast expansion whose distances are measured exactly


@torch.no_grad()
def patch_features(mae: SwinMAE, imgs: torch.Tensor, stages: tuple[int, ...]) -> torch.Tensor:
    """imgs (B, C, S, S) → (B, F, g, g) float32: the chosen encoder stages' outputs, 3×3
    averaged, upsampled to the finest chosen stage's grid g, each stage standardised per place
    across its channels, concatenated (F = the chosen stages' widths summed)."""
    outputs = mae.stage_outputs(imgs)  # [(B, g_s, g_s, D_s)] for every stage s
    grid = outputs[min(stages)].shape[1]
    parts = []
    for s in sorted(stages):
        f = outputs[s].float().permute(0, 3, 1, 2)  # (B, D_s, g_s, g_s)
        f = F.avg_pool2d(f, 3, stride=1, padding=1, count_include_pad=False)
        if f.shape[-1] != grid:
            f = F.interpolate(f, size=(grid, grid), mode="bilinear", align_corners=False)
        parts.append((f - f.mean(dim=1, keepdim=True)) / (f.std(dim=1, keepdim=True) + 1e-6))
    return torch.cat(parts, dim=1)


def greedy_coreset(features: torch.Tensor, size: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, F) → (min(size, N),) indices chosen by greedy k-centre selection in a random
    projection to PROJECTED channels: each next index is the feature farthest from all chosen
    so far. The first one is drawn at random."""
    n = len(features)
    if n <= size:
        return torch.arange(n)
    width = features.shape[1]
    proj = features @ (torch.randn(width, PROJECTED, generator=generator) / PROJECTED ** 0.5)
    sq = proj.pow(2).sum(dim=1)  # (N,)
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = int(torch.randint(n, (1,), generator=generator))
    nearest = torch.full((n,), float("inf"))  # squared distance to the nearest chosen
    for i in range(1, size):
        last = proj[chosen[i - 1]]
        nearest = torch.minimum(nearest, sq - 2 * (proj @ last) + last.pow(2).sum())
        chosen[i] = nearest.argmax()
    return chosen


def _floored(spread: torch.Tensor) -> torch.Tensor:
    """(F,) per-channel spreads floored at a tenth of their median: a channel that never moved
    among normal patches (a unit that stayed off) cannot turn a small change into a huge
    distance."""
    return spread.clamp_min(0.1 * spread.median()) + 1e-6


class MemoryBank(nn.Module):
    """Normal patch features (K, F) and the training image each came from (K,); called on
    features (B, F, h, w) it gives each patch's distance to its nearest entry (B, h, w). With
    a per-channel `shift` and `scale` (F,) the features are standardised first (the bank is
    stored standardised): each channel counts by its spread among normal patches, and the
    distances are not small differences of large squares, which float32 would round away."""

    def __init__(self, bank: torch.Tensor, owner: torch.Tensor,
                 shift: torch.Tensor | None = None, scale: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("bank", bank.float())
        self.register_buffer("owner", owner.long())
        width = bank.shape[1]
        self.register_buffer("shift", torch.zeros(width) if shift is None else shift.float())
        self.register_buffer("scale", torch.ones(width) if scale is None else scale.float())

    @classmethod
    def build(cls, batches: Iterable[torch.Tensor], n_images: int, size: int,
              seed: int = 0, standardise: bool = False) -> "MemoryBank":
        """From the features of n_images normal images, batches of (B, F, g, g) in a fixed
        order (image i of the whole sequence is owner i): from each image a random share of
        its patches, about size × CANDIDATES in all (so memory stays bounded however many images
        there are), then `greedy_coreset` to `size`; `standardise`: by the candidates'
        per-channel mean and (floored) spread."""
        generator = torch.Generator().manual_seed(seed)
        feats, owners, seen = [], [], 0
        for f in batches:
            B, Fdim, g, _ = f.shape
            per_image = min(g * g, -(-size * CANDIDATES // n_images))
            pick = torch.rand(B, g * g, generator=generator).argsort(dim=1)[:, :per_image]
            flat = f.permute(0, 2, 3, 1).reshape(B, g * g, Fdim).cpu()  # (B, g g, F)
            feats.append(flat.gather(1, pick[..., None].expand(-1, -1, Fdim)).reshape(-1, Fdim))
            owners.append(torch.arange(seen, seen + B).repeat_interleave(per_image))
            seen += B
        feats, owners = torch.cat(feats), torch.cat(owners)
        shift, scale = (feats.mean(dim=0), _floored(feats.std(dim=0))) if standardise \
            else (torch.zeros(feats.shape[1]), torch.ones(feats.shape[1]))
        feats = (feats - shift) / scale
        keep = greedy_coreset(feats, size, generator)
        return cls(feats[keep], owners[keep], shift, scale)

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            torch.save({key: getattr(self, key).cpu()
                        for key in ("bank", "owner", "shift", "scale")}, tmp)

    @classmethod
    def load(cls, path: Path, device: torch.device | str = "cpu") -> "MemoryBank":
        """A saved bank; one saved before standardisation existed loads without it."""
        saved = torch.load(path, map_location=device, weights_only=True)
        return cls(saved["bank"], saved["owner"], saved.get("shift"), saved.get("scale"))

    def forward(self, features: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """features (B, F, h, w) → (B, h, w) Euclidean distance to the nearest entry; with
        `exclude` (B,) each image's own entries (owner == exclude) are left out."""
        B, Fdim, h, w = features.shape
        q = (features.float().permute(0, 2, 3, 1).reshape(B, h * w, Fdim)  # (B, h w, F)
             - self.shift) / self.scale
        sq = (q.pow(2).sum(dim=-1, keepdim=True) - 2 * q @ self.bank.T
              + self.bank.pow(2).sum(dim=1))  # (B, h w, K)
        if exclude is not None:
            own = self.owner[None, :] == exclude.to(self.owner.device)[:, None]  # (B, K)
            sq = sq.masked_fill(own[:, None, :], float("inf"))
        # the expansion is a small difference of large squares near an entry, which float32
        # rounds differently in torch and in the exported ONNX model: it only shortlists the
        # nearest entries, whose distances are then measured directly, so both find the same
        # nearest distance (the argmin of the expansion alone could pick an entry 1 % farther)
        close, shortlist = sq.topk(min(SHORTLIST, sq.shape[-1]), dim=-1, largest=False)
        direct = (q[:, :, None] - self.bank[shortlist]).pow(2).sum(dim=-1)  # (B, h w, c)
        direct = direct.masked_fill(close.isinf(), float("inf"))  # an image's own entries
        return direct.min(dim=-1).values.sqrt().view(B, h, w)


@torch.no_grad()
def distance_maps(bank: MemoryBank, features: torch.Tensor, size: tuple[int, int],
                  exclude: torch.Tensor | None = None) -> torch.Tensor:
    """features (B, F, g, g) → (B, *size) float32: each place's nearest-neighbour distance,
    bilinearly upsampled to the image (`exclude` as in `MemoryBank.forward`)."""
    dist = bank(features, exclude)  # (B, g, g)
    return F.interpolate(dist[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def knn_maps(mae: SwinMAE, bank: MemoryBank, imgs: torch.Tensor, stages: tuple[int, ...],
             exclude: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, S, S) → (B, S, S) float32: each patch's distance to the nearest normal patch in
    the encoder's feature space (`score.method: knn`)."""
    return distance_maps(bank, patch_features(mae, imgs, stages), imgs.shape[-2:], exclude)
