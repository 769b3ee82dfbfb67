"""The image stream's config section (`swinmae`, defaults in `configs/swinmae.yaml`): pydantic
models with their bounds, the rules that tie fields together (`check`), and the windows each
Swin stage uses (`stage_windows`)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator

from core.config import PositiveInts, Section, TrainConfig, number
from core.errors import ConfigError


class SwinMAEModelConfig(Section):
    image_size: int = number("images are resized to this square (pixels); it must fit the "
                             "windows (see the config)", ge=8)
    in_chans: Literal[1, 3]  # set from the data by the pipeline
    patch_size: int = number(ge=1)  # pixels per patch side; patches do not overlap
    window_size: int = number(ge=1)  # tokens per window side; a stage whose grid is <= it
    # uses one window of the whole grid and no shift (as Swin does)
    embed_dim: int = number(ge=4)  # stage-0 width; stage s has embed_dim * 2**s
    depths: PositiveInts  # Swin blocks per stage; patch merging between stages
    num_heads: PositiveInts  # one entry per stage
    mlp_ratio: float = number(gt=0.0)
    mask_ratio: float = number("share of mask units hidden in training", gt=0.0, le=0.95)
    mask_unit: int = number(ge=1)  # a mask unit is mask_unit×mask_unit patches (4×4 = 16 px)
    # block: mask_ratio of the units hidden by the mask token, the encoder on the full grid;
    # uniform (UM-MAE): one unit kept per 2×2 block, packed into a half-side grid, the encoder
    # on a quarter of the tokens (mask_ratio unused: 75 % dropped, then secondary_ratio)
    masking: Literal["block", "uniform"]
    secondary_ratio: float = number("share of the packed grid's units hidden by the mask "
                                    "token (uniform masking)", gt=0.0, le=0.75)
    decoder_dim: int = number(ge=4)
    decoder_depth: int = number(ge=0, le=4)  # Swin blocks on the patch grid (W, SW, W, ...)
    decoder_heads: int = number(ge=1)
    norm_pix_loss: bool  # targets normalised per patch (MAE); keep False for anomaly maps

    def check(self, prefix: str = "swinmae.model") -> None:
        """ConfigError naming `prefix.<key>` and its value if a rule between fields is broken.
        The geometry rule: with S = len(depths), image_size must be a multiple of
        patch_size * 2**(S-1); each stage grid g_s = image_size / patch_size / 2**s must be a
        multiple of its window min(window_size, g_s); the patch grid a multiple of mask_unit.
        Uniform masking also runs the encoder on the packed grid, half the patch grid's side:
        the unit grid side must be even (2×2 blocks) and at least 4 (two packed units), and the
        packed grid must obey the same rule as the full one."""
        if len(self.num_heads) != len(self.depths):
            raise ConfigError(f"{prefix}.num_heads: expected {len(self.depths)} entries (one per "
                              f"stage of depths {list(self.depths)}), found {list(self.num_heads)}")
        n_stages = len(self.depths)
        step = self.patch_size * 2 ** (n_stages - 1)
        if self.image_size % step:
            raise ConfigError(f"{prefix}.image_size: expected a multiple of patch_size * "
                              f"2**(stages-1) = {step}, found {self.image_size}")
        for s, (grid, ws) in enumerate(stage_windows(self)):
            if grid % ws:
                raise ConfigError(f"{prefix}.window_size: expected a divisor of every stage grid "
                                  f"larger than it; stage {s} grid is {grid}, found {self.window_size}")
            if self.embed_dim * 2 ** s % self.num_heads[s]:
                raise ConfigError(f"{prefix}.num_heads: stage {s} width {self.embed_dim * 2 ** s} "
                                  f"is not a multiple of its {self.num_heads[s]} heads")
        grid = self.image_size // self.patch_size
        if grid % self.mask_unit or (grid // self.mask_unit) ** 2 < 2:
            raise ConfigError(f"{prefix}.mask_unit: expected a divisor of the {grid}×{grid} patch "
                              f"grid leaving at least 2 units, found {self.mask_unit}")
        if self.masking == "uniform":
            self._check_packing(prefix)
        if self.decoder_dim % self.decoder_heads:
            raise ConfigError(f"{prefix}.decoder_heads: expected a divisor of decoder_dim "
                              f"({self.decoder_dim}), found {self.decoder_heads}")

    def _check_packing(self, prefix: str) -> None:
        """ConfigError when uniform masking cannot pack the patch grid into one half its side on
        which every stage's windows tile."""
        units = self.image_size // self.patch_size // self.mask_unit
        if units % 2 or units < 4:
            raise ConfigError(f"{prefix}.masking: uniform masking needs an even unit grid of at "
                              f"least 4×4 (2×2 blocks of mask units, two of them kept), found "
                              f"{units}×{units} units (image_size {self.image_size} / patch_size "
                              f"{self.patch_size} / mask_unit {self.mask_unit}); use masking: "
                              f"block or change those sizes")
        packed = self.image_size // self.patch_size // 2
        step = 2 ** (len(self.depths) - 1)
        grids = stage_windows(self, packed)
        if packed % step or any(grid % ws for grid, ws in grids):
            stages = [packed / 2 ** s for s in range(len(self.depths))]
            raise ConfigError(f"{prefix}.masking: uniform masking runs the encoder on a "
                              f"{packed}×{packed} packed grid, which must halve "
                              f"{len(self.depths) - 1} times and be tiled by window_size "
                              f"{self.window_size} at every stage (stage grids {stages}); use "
                              f"masking: block or change image_size / window_size")


def stage_windows(cfg: SwinMAEModelConfig, grid: int | None = None) -> list[tuple[int, int]]:
    """(grid side, window side) per stage, from the patch grid or a given stage-0 `grid` (the
    packed grid of uniform masking); the window is clamped to the grid (no shift then)."""
    grid = cfg.image_size // cfg.patch_size if grid is None else grid
    return [(grid >> s, min(cfg.window_size, grid >> s)) for s in range(len(cfg.depths))]


class ImageDataConfig(Section):
    channels: Literal[1, 3] | None  # null: 1 if every image is grayscale
    resize: Literal["resize", "pad"]  # stretch to a square, or keep aspect + pad
    on_corrupt: Literal["skip", "fail"]  # a corrupt image is skipped (and named)
    val_fraction: float = number(gt=0.0, le=0.5)  # normal images held out (threshold)
    hflip: bool  # random horizontal flips in training (no colour jitter: inspection data)
    zoom: int = number("images are resized to zoom × image_size: training sees image_size "
                       "crops, scoring maps every tile of the zoomed image", ge=1, le=8)
    num_workers: int = number(ge=0)  # DataLoader worker processes
    # width × height above which an image is skipped (or fails, with on_corrupt="fail"): a small
    # PNG can declare 13000×13000 pixels and take ~2 GB to decode
    max_pixels: int = number(ge=1)


class KnnConfig(Section):
    """`score.method: knn`: the distance of each patch's encoder features to a bank of normal
    patch features (`core.images.knn`); `bank_size` also bounds `score.head_knn`'s bank."""
    stages: Annotated[tuple[int, ...], BeforeValidator(  # a YAML list or an override's tuple
        lambda v: tuple(v) if isinstance(v, list) else v)]  # encoder stages (0 first) whose
    # outputs make a patch's feature
    bank_size: int = number("normal patch features kept (greedy coreset): memory and scoring "
                            "time grow with it", ge=1)


class ImageScoreConfig(Section):
    method: Literal["reconstruction", "head", "knn"]  # what makes the maps: Swin MAE's error,
    # that plus the defect head trained on synthetic defects (their z-scores added), or the
    # encoder features' distance to the nearest normal patch features
    mode: Literal["masked", "full"]  # masked: complementary masks, or 2 packings (uniform)
    error: Literal["l2", "l2_grad"]  # l2_grad adds an image-gradient term
    grad_weight: float = number(ge=0.0)
    sigma: float = number(ge=0.0)  # Gaussian smoothing of the map, in pixels
    coarse_sigma: float = number(ge=0.0, le=1.0)  # method head: the pixel maps' coarse scale,
    # the head's map smoothed with this sigma as a share of the map's side (0: the fine scale
    # only; needs neighbours > 0)
    coarse_weight: float = number(ge=0.0)  # the coarse z-map's weight in the pixel maps
    coarse_neighbours: int = number(ge=0)  # the coarse scale is measured against this many
    # nearest normal images (found as the fine maps' are); 0: as many as `neighbours`
    head_knn: bool  # method head: a third map, the distance of the head's deepest features to
    # the nearest normal ones (a memory bank of knn.bank_size entries), added as the others are
    normalize: bool  # maps in units of normal images' error at each pixel (a z-score)
    two_sided: bool  # normalize only: |z|, an error far below normal counts too
    map_cap: float = number(ge=0.0)  # normalize only, several maps (head): each map's z-score
    # is capped at this before an image's maps are added, so one map cannot carry an image
    # alone (0: no cap)
    normal_images: int = number(ge=2)  # training images whose maps give those statistics
    neighbours: int = number(ge=0)  # an image is measured against this many of them, those
    # whose thumbnails lie nearest its own; 0: against all
    baseline_neighbours: int = number(ge=0)  # the same for the mean-image baseline's maps, at
    # its own best (fewer neighbours help the model and weaken the baseline)
    match_shape: bool  # neighbours > 0: thumbnails compared less their mean and over their
    # spread, so neighbours share the part's shape and framing whatever its lighting
    match_head: float = number(ge=0.0)  # method head, neighbours > 0: the weight of what the
    # defect heads see (each image's mean and spread of their deepest features) beside the
    # thumbnail in finding neighbours; 0: the thumbnail alone
    image_score: Literal["topk_mean", "max"]
    topk: float = number(gt=0.0, le=1.0)  # share of the map's pixels for topk_mean
    threshold_percentile: float = number(gt=0.0, le=100.0)  # of held-out normal scores
    batch_size: int = number(ge=1)
    overlays: int = number(ge=0)  # heatmap overlay PNGs written for the top images
    knn: KnnConfig


class DefectHeadConfig(Section):
    width: int = number("channels of the head's first level (then 2x, 4x, 8x)", ge=1)
    ensemble: int = number(ge=1)  # heads trained side by side; the map is their mean
    defect_share: float = number(gt=0.0, le=1.0)  # training images given a synthetic defect
    train: TrainConfig


class SwinMAEConfig(Section):
    preset: str
    data: ImageDataConfig
    model: SwinMAEModelConfig
    train: TrainConfig
    head: DefectHeadConfig
    score: ImageScoreConfig

    def check(self) -> None:
        self.model.check("swinmae.model")
        if self.score.method == "head" and not self.score.normalize:
            raise ConfigError("swinmae.score.method: head adds the defect head's map to the "
                              "reconstruction error's in units of normal images' maps, which "
                              "needs swinmae.score.normalize: true (found false); set it, or use "
                              "method: reconstruction")
        stages, n = self.score.knn.stages, len(self.model.depths)
        if self.score.method == "knn" and (not stages or any(not 0 <= s < n for s in stages)):
            raise ConfigError(f"swinmae.score.knn.stages: expected a non-empty list of encoder "
                              f"stages, each 0 to {n - 1} (the model has {n}), found "
                              f"{list(stages)}")
