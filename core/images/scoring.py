"""Anomaly maps and image scores from Swin MAE reconstructions, and from the defect head that
looks at them (`core.images.head`, `score.method: head`). With the head a detector makes two
maps per image, the reconstruction error and the head's defect probability; each is measured
against normal images' maps of its own kind and the map is the sum of the two z-scores (the
head alone varied with its seed on the magnetic tiles, 0.73-0.82 image AUROC; the sum stayed
within 0.015 of the reconstruction alone or rose up to 0.07 above it: benchmarks/README.md).

With `score.head_knn` the head adds a third map (magnetic tile, five seeds: image AUROC 0.866
-> 0.890, every defect kind higher on every seed): how far each 8 × 8 place's features at the
head's deepest level lie from the nearest normal place's, in a memory bank of the training
images' (standardised per channel), measured against normal images' distances like the other
two. The head's one output reads those features through what synthetic defects taught it; the
distance sees any place unlike every normal one, a small dark blowhole at a tile's edge among
them. Before an image's maps are added each z-map is capped at `score.map_cap` (10): one map far
off normal alone (a normal tile's bright edge in the reconstruction error) then cannot outrank a
defect that two or three maps see.

With `score.method: knn` the map is instead each patch's distance to the nearest normal patch
in the encoder's feature space (`core.images.knn`), and no reconstruction is made.

`masked` mode scores an image the way its model was trained to see it. Block masking: K
reconstructions with complementary block masks, so every region is predicted once from its
visible context and its error is counted once. Uniform masking: the 2 diagonal packings (the
top-left, then the bottom-right unit of every 2×2 block kept, no secondary mask), so every
unit is dropped in one or both of them and its error is the mean over those that dropped it.
`full` reconstructs with nothing hidden.

The per-pixel error (L2, optionally plus an image-gradient term that catches thin
structural defects) is smoothed with a Gaussian, then (`normalize`) expressed in units of normal
images' error at that pixel, so places where the model is always poor (edges, background strips)
do not outshine a defect. The normal images an image is measured against are the `neighbours`
training images whose thumbnails lie nearest its own (all of them when 0): parts that differ in
shape or framing are then compared with parts like them. With `match_shape` (the default) the
thumbnails are compared less their mean and over their spread, so the neighbours share the
part's shape whatever their lighting (magnetic tile, five seeds: image AUROC 0.896 -> 0.946;
the raw thumbnails had matched brightness first and shape second). With a head and
`match_head` each image's key adds what the heads see (`head_descriptor`), so its neighbours
share its surface as well as its outline (seeds 0-3: image AUROC 0.956 -> 0.963). `two_sided`
counts an error far below normal as well (the absolute z-score): a defect that removes texture
is easier to reconstruct than the part around it. The image score is the map's maximum or the
mean of its top-k share of pixels.

With the head, the pixel maps shown and evaluated add a coarse scale (`coarse_sigma`,
`CoarseScale`): the head's map smoothed at a quarter of its side, where it rises above the
nearest normal images' head maps smoothed alike. Large faint defects (magnetic tile's Uneven
areas) stand out there and not at 2 px; the image score keeps reading the fine map, where small
defects are sharpest.

Dimension names: B images, C channels, H = W = image size, h = w = patch grid side, K masks,
N normal images, T = THUMB² thumbnail pixels, M maps per image (with the head: error,
probability and, with `head_knn`, head-feature distance; the axis is absent without it)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from core.images.config import ImageScoreConfig
from core.images.head import DefectHead, head_outputs, masked_reconstructions
from core.images.knn import MemoryBank, distance_maps, knn_maps
from core.images.swinmae import SwinMAE
from core.images.tiling import per_image, stitched, tiles_of
from core.masking import masked_error


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, H, W) → (B, H, W), separable Gaussian with reflected borders; sigma 0: unchanged.
    The kernel is cut at 3 sigma, or at the map's side when that is smaller (reflection needs
    the padding to be shorter than the side)."""
    if sigma <= 0:
        return maps
    radius = max(1, min(math.ceil(3 * sigma), min(maps.shape[-2:]) - 1))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = maps[:, None]  # (B, 1, H, W)
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return out[:, 0]


def _gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) → forward differences along x and y, zero-padded to (B, C, H, W)."""
    dx = F.pad(img[..., :, 1:] - img[..., :, :-1], (0, 1))
    dy = F.pad(img[..., 1:, :] - img[..., :-1, :], (0, 0, 0, 1))
    return dx, dy


def pixel_error(recon: torch.Tensor, imgs: torch.Tensor, cfg: ImageScoreConfig) -> torch.Tensor:
    """(B, C, H, W) reconstruction and input → (B, H, W) error: squared error averaged over
    channels, plus (`l2_grad`) `grad_weight` × the squared difference of their gradients."""
    err = (recon.float() - imgs).pow(2).mean(dim=1)
    if cfg.error == "l2_grad":
        (rx, ry), (ix, iy) = _gradients(recon.float()), _gradients(imgs)
        err = err + cfg.grad_weight * ((rx - ix).pow(2) + (ry - iy).pow(2)).mean(dim=1)
    return err


def anomaly_maps(model: SwinMAE, imgs: torch.Tensor, cfg: ImageScoreConfig,
                 head: DefectHead | None = None, bank: MemoryBank | None = None,
                 exclude: torch.Tensor | None = None) -> torch.Tensor:
    """imgs (B, C, H, W) on the model's device → smoothed anomaly maps (B, H, W) float32 of the
    error; with a defect head (`score.method: head`) (B, 2, H, W): the error, then the head's
    probability (the masked reconstructions made once for both), and with a bank of the head's
    features too (`score.head_knn`) (B, 3, H, W): then their distance to the nearest normal
    ones. With a memory bank alone (`score.method: knn`) (B, H, W) of the encoder features'
    distances. A bank leaves each image's own entries out when `exclude` (B,) names it (a
    training image)."""
    return described_maps(model, imgs, cfg, head, bank, exclude)[0]


@torch.no_grad()
def described_maps(model: SwinMAE, imgs: torch.Tensor, cfg: ImageScoreConfig,
                   head: DefectHead | None = None, bank: MemoryBank | None = None,
                   exclude: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`anomaly_maps`, and with a defect head each image's `head_descriptor` (B, D) (None
    without one)."""
    if bank is not None and head is None:
        return gaussian_blur(knn_maps(model, bank, imgs, cfg.knn.stages, exclude),
                             cfg.sigma), None
    passes = masked_reconstructions(model, imgs) \
        if cfg.mode == "masked" or head is not None else None
    if cfg.mode == "full":
        err = pixel_error(model.reconstruct(imgs, None), imgs, cfg)
    else:  # each pixel's error averaged over the passes hiding it (block masks: exactly one)
        err = masked_error(  # (B, H, W)
            passes, lambda pr: pixel_error(pr[1], imgs, cfg),
            lambda pr: pr[0].hidden) / sum(p.hidden for p, _ in passes)  # (H, W): 1 or 2
    err = gaussian_blur(err.float(), cfg.sigma)
    if head is None:
        return err, None
    probability, features = head_outputs(model, head, imgs, passes)  # (B, H, W), (B, F, g, g)
    maps = [err, gaussian_blur(probability, cfg.sigma)]
    if bank is not None:
        maps.append(gaussian_blur(distance_maps(bank, features, imgs.shape[-2:], exclude),
                                  cfg.sigma))
    return torch.stack(maps, dim=1), head_descriptor(features)


def head_descriptor(features: torch.Tensor) -> torch.Tensor:
    """The heads' deepest features (B, F, g, g) → (B, 2F): each channel's mean and spread over
    the image's places: what kind of surface the heads see, wherever it lies."""
    flat = features.flatten(2)  # (B, F, g g)
    return torch.cat([flat.mean(dim=2), flat.std(dim=2)], dim=1)


class AnomalyMaps(torch.nn.Module):
    """A run's detector: images (B, C, S, S) in [0, 1] → smoothed anomaly maps (B, [M,] S, S)
    as scoring computes them (`anomaly_maps`), with the defect head or the memory bank when the
    run has one, and (`keyed`) the keys that find each image's nearest normal images. Scoring,
    scoring runs and the ONNX export all call this; `exclude` (B,) is for the training images'
    own maps (`anomaly_maps`), never exported."""

    def __init__(self, model: SwinMAE, cfg: ImageScoreConfig, head: DefectHead | None = None,
                 bank: MemoryBank | None = None):
        super().__init__()
        self.model, self.cfg, self.head, self.bank = model, cfg, head, bank

    def forward(self, images: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """images (B, C, Z, Z), Z a multiple of the model's image size S (`data.zoom`): every
        S × S tile mapped, the maps put back in place (`core.images.tiling`)."""
        return self.keyed(images, exclude)[0]

    def keyed(self, images: torch.Tensor, exclude: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward`'s maps (B, [M,] Z, Z), and each image's key (B, T [+ D]): its thumbnail,
        then, with a head and `score.match_head`, its `head_descriptor` (zoomed: the mean of its
        tiles')."""
        n = images.shape[-1] // self.model.cfg.image_size
        per_tile = None if exclude is None else exclude.repeat(n * n)
        maps, described = described_maps(self.model, tiles_of(images, self.model.cfg.image_size),
                                         self.cfg, self.head, self.bank, per_tile)
        keys = thumbnails(images)  # (B, T)
        if described is not None and self.cfg.match_head > 0:
            keys = torch.cat([keys, per_image(described, n)], dim=1)  # (B, T + D)
        return stitched(maps, n), keys


THUMB = 16  # side of the thumbnails that find an image's nearest normal images


def thumbnails(images: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) images → (B, T) float32: the channel mean, average-pooled to THUMB × THUMB
    (adaptive pooling: bin i spans pixels floor(i·S/THUMB) to ceil((i+1)·S/THUMB))."""
    return F.adaptive_avg_pool2d(images.float().mean(dim=1, keepdim=True), THUMB).flatten(1)


def thumbnail_part(keys: torch.Tensor) -> torch.Tensor:
    """Keys (N, T [+ D]) → their thumbnails (N, T): what a detector without a head (the
    mean-image baseline) finds neighbours by."""
    return keys[:, :THUMB * THUMB]


def shape_only(thumbs: torch.Tensor) -> torch.Tensor:
    """(N, T) thumbnails → (N, T), each less its mean and over its spread: what is left is the
    part's shape and framing, not its brightness or contrast (`score.match_shape`)."""
    return (thumbs - thumbs.mean(dim=1, keepdim=True)) / (thumbs.std(dim=1, keepdim=True) + 1e-6)


def _z(maps: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, two_sided: bool,
       cap: float = 0.0) -> torch.Tensor:
    """Maps (B, H, W) or (B, M, H, W) in units of `std` from `mean` (shapes broadcast); |z|
    when two-sided; M maps of an image each capped at `cap` (when > 0), then summed → (B, H,
    W). The spread is floored (`_floored`) so that flat spots cannot explode."""
    z = (maps - mean) / _floored(std, mean)
    z = z.abs() if two_sided else z
    if z.dim() == 3:
        return z
    return (z.clamp_max(cap) if cap > 0 else z).sum(dim=1)


def _floored(std: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """(..., H, W) spread maps, each floored at a tenth of its median, and at a thousandth of
    its mean map's median magnitude: the normal maps are kept at float16 (3 significant
    digits), so a map that hardly varies (a barely trained head's) would otherwise have no
    spread at all, and its z-scores would be rounding noise times 10^12."""
    def median(maps: torch.Tensor) -> torch.Tensor:  # (..., H, W) → (..., 1, 1)
        return maps.flatten(-2).median(dim=-1).values[..., None, None]
    return std.clamp_min(torch.maximum(0.1 * median(std), 1e-3 * median(mean.abs())) + 1e-12)


@dataclass
class PixelErrorStats:
    """Per-pixel mean and spread of normal images' anomaly maps, one for every image, and
    whether an error below normal counts (`two_sided`). Runs scored before nearest normal
    images existed load as these."""
    mean: torch.Tensor  # (H, W), or (M, H, W)
    std: torch.Tensor  # the same shape, floored (`_floored`)
    two_sided: bool  # runs scored before two-sided maps existed load with False
    cap: float = 0.0  # each of several maps' z capped before the sum (`score.map_cap`); 0: none

    @classmethod
    def fit(cls, maps: torch.Tensor, two_sided: bool, cap: float = 0.0) -> "PixelErrorStats":
        """maps (N, H, W) or (N, M, H, W) of normal images, N >= 2. The spread is stored
        floored (as `_z` floors it), so exports read the same one."""
        mean = maps.mean(dim=0)
        return cls(mean, _floored(maps.std(dim=0), mean), two_sided, cap)

    def __call__(self, maps: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, W) or (B, M, H, W) → (B, H, W) z-scores against the normal images (their
        absolute value when two-sided; each capped at `cap`, then summed over M). `keys` are
        not needed: every image has the same reference."""
        return _z(maps, self.mean, self.std, self.two_sided, self.cap)

    @property
    def neighbours(self) -> int:
        """0: every image is measured against all the normal images (scoring.json's value)."""
        return 0

    @property
    def maps_per_image(self) -> int:
        return 1 if self.mean.dim() == 2 else len(self.mean)


@dataclass
class NearestNormal:
    """Normal images' anomaly maps and keys (`AnomalyMaps.keyed`): each image's map is measured
    against the per-pixel mean and spread of the `neighbours` normal maps whose keys lie nearest
    its own (Euclidean), so a tile is compared with tiles of its shape and lighting, and (with
    `head_weight`) of the surface the defect heads see."""
    maps: torch.Tensor  # (N, H, W) or (N, M, H, W) float16: what the run saves, so later
    # scoring runs and exports measure against exactly what the run did (and half the memory)
    keys: torch.Tensor  # (N, T [+ D]) float32 thumbnails of those images [, head descriptors]
    neighbours: int  # 2 <= neighbours < N
    two_sided: bool
    cap: float = 0.0  # as PixelErrorStats.cap
    match_shape: bool = False  # nearest by `shape_only` thumbnails; runs scored before it
    # matched the thumbnails themselves (shape and lighting)
    head_weight: float = 0.0  # `score.match_head`: the head descriptors' weight beside the
    # thumbnails (each part's distance per number, the descriptors standardised over the
    # normal images); 0: thumbnails alone (runs scored before it; keys past T are not read)

    def __call__(self, maps: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """maps (B, H, W) or (B, M, H, W) of images with `keys` (B, T [+ D]) → (B, H, W)
        z-scores (|z| when two-sided; each capped at `cap`, then summed over M)."""
        # distances from differences, not from |q|² + |k|² - 2 q·k: that loses the digits
        # that tell near neighbours apart, and the exported predict.py (numpy) would pick others
        near = torch.cdist(*self._comparable(keys), compute_mode="donot_use_mm_for_euclid_dist"
                           ).topk(self.neighbours, dim=1, largest=False).indices  # (B, k)
        ref = self.maps[near].float()  # (B, neighbours, [M,] H, W)
        return _z(maps, ref.mean(dim=1), ref.std(dim=1), self.two_sided, self.cap)

    def _comparable(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Query keys (B, T [+ D]) and the normal keys as the distance compares them."""
        q, k = thumbnail_part(query).float(), thumbnail_part(self.keys)
        if self.match_shape:
            q, k = shape_only(q), shape_only(k)
        if self.head_weight <= 0:
            return q, k
        T = q.shape[1]
        dq, dk = query[:, T:].float(), self.keys[:, T:]  # (B, D), (N, D)
        mean, std = dk.mean(dim=0), dk.std(dim=0) + 1e-6
        w = self.head_weight / math.sqrt(dk.shape[1])
        return (torch.cat([q / math.sqrt(T), w * (dq - mean) / std], dim=1),
                torch.cat([k / math.sqrt(T), w * (dk - mean) / std], dim=1))

    @property
    def maps_per_image(self) -> int:
        return 1 if self.maps.dim() == 3 else self.maps.shape[1]


NormalReference = PixelErrorStats | NearestNormal


HEAD_MAP = 1  # with the defect head an image's maps are (error, head probability[,
# head-feature distance])


@dataclass
class CoarseScale:
    """The pixel maps' coarse scale (`score.coarse_sigma`): the defect head's probability map
    smoothed at `sigma`, measured against its nearest normal images' head maps smoothed alike,
    added at `weight` to the image's fine z-map. The head outlines large faint defects with a
    low, broad probability that stands out only at this scale (magnetic tile, five seeds: pixel
    AUROC 0.769 -> 0.828; the bundled sample unchanged). The image score keeps reading the fine
    map. Only head runs have one: the reconstruction error smoothed so much spreads small
    strong defects into halos (the sample: pixel AUROC 0.963 -> 0.893). Its reference takes
    more neighbours than the fine maps' (`coarse_neighbours`): smoothed that much, maps vary
    less from tile to tile, and a per-pixel spread of 10 of them is mostly noise. It counts
    only where the head's map rises above theirs, whatever the fine maps' `two_sided`: a
    probability below normal over a large area is not a defect, and counted (|z|) it lit up
    normal areas beside the defects (magnetic tile, seeds 0-3: pixel AUROC 0.846 -> 0.863,
    higher on every seed; the sample unchanged)."""
    reference: NearestNormal  # the normal images' head maps (N, H, W) smoothed at `sigma`,
    # one-sided
    sigma: float  # pixels
    weight: float

    @classmethod
    def of(cls, normal: NormalReference | None, cfg: ImageScoreConfig) -> "CoarseScale | None":
        """The coarse scale of a head run's `normal` reference; None when it is off, for
        single-map detectors (reconstruction, knn, the baseline), or without nearest normal
        maps (a mean and spread alone cannot be smoothed again)."""
        if not isinstance(normal, NearestNormal) or normal.maps_per_image < 2 \
                or cfg.coarse_sigma <= 0 or cfg.coarse_weight <= 0:
            return None
        sigma = cfg.coarse_sigma * normal.maps.shape[-1]
        heads = normal.maps[:, HEAD_MAP]  # (N, H, W) float16
        smoothed = torch.cat([gaussian_blur(heads[i:i + 64].float(), sigma).half()
                              for i in range(0, len(heads), 64)])  # 64 at a time: memory
        neighbours = min(cfg.coarse_neighbours or normal.neighbours, len(smoothed) - 1)
        return cls(replace(normal, maps=smoothed, neighbours=neighbours, two_sided=False),
                   sigma, cfg.coarse_weight)

    def __call__(self, z: torch.Tensor, maps: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """The fine z-maps (B, H, W) of raw `maps` (B, M, H, W) of images with `keys` (B, T [+
        D]) → (B, H, W) pixel maps."""
        head = gaussian_blur(maps[:, HEAD_MAP].float(), self.sigma)  # (B, H, W)
        return z + self.weight * self.reference(head, keys)


def normal_reference(maps: torch.Tensor, keys: torch.Tensor, neighbours: int,
                     two_sided: bool, cap: float = 0.0, match_shape: bool = False,
                     head_weight: float = 0.0) -> NormalReference:
    """The reference of N >= 2 normal maps (N, [M,] H, W) with their keys (N, T [+ D]): the
    `neighbours` nearest of them per image (by shape alone when `match_shape`; the head
    descriptors at `head_weight` beside, when the keys have them), or all (one mean and spread)
    when `neighbours` is 0 or leaves none out."""
    if 0 < neighbours < len(maps):
        described = keys.shape[1] > THUMB * THUMB
        return NearestNormal(maps.half(), keys.float(), max(2, neighbours), two_sided, cap,
                             match_shape, head_weight if described else 0.0)
    return PixelErrorStats.fit(maps, two_sided, cap)


def image_scores(maps: torch.Tensor, how: str, topk: float) -> torch.Tensor:
    """(B, H, W) maps → (B,) scores: the maximum, or the mean of the top `topk` share of pixels
    (at least one pixel)."""
    flat = maps.flatten(1)
    if how == "max":
        return flat.max(dim=1).values
    k = max(1, round(topk * flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(dim=1)
