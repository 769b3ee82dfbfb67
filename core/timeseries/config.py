"""The time-series stream's config section (`patchtst`, defaults in `configs/patchtst.yaml`):
pydantic models with their bounds, and the rules that tie fields together (`check`)."""
from __future__ import annotations

from typing import Literal

from core.config import Section, TrainConfig, number
from core.errors import ConfigError


class TSDataConfig(Section):
    window: int = number("time steps per window; a multiple of the patch length", ge=2)
    stride: int = number(ge=1)  # step between training windows
    val_fraction: float = number(gt=0.0, le=0.5)  # end of train held out (normal data)


class PatchTSTModelConfig(Section):
    patch_len: int = number("time steps per patch; patches do not overlap", ge=1)
    d_model: int = number(ge=4)
    n_heads: int = number(ge=1)
    n_layers: int = number(ge=1)
    d_ff: int = number(ge=4)
    dropout: float = number(ge=0.0, le=0.9)
    mask_ratio: float = number("share of patches hidden in training", gt=0.0, le=0.9)
    revin: bool  # per-window normalisation; off: the model sees levels (level shifts)
    cross_channel: bool  # attention across channels, in the decoder (every patch has a token)
    decoder_dim: int = number(ge=4)  # width of the light decoder after the visible-only encoder
    decoder_depth: int = number(ge=1, le=4)  # decoder blocks over all patches (FFN 2x its width)
    decoder_heads: int = number(ge=1)
    # a head that predicts each value's variance; scoring divides each squared error by it
    variance_head: bool


class TSScoreConfig(Section):
    mode: Literal["full", "masked"]  # full: no mask; masked: complementary masks
    stride: int = number(ge=1)  # step between scored windows (errors averaged over overlaps)
    batch_size: int = number(ge=0)  # 0: by device (timeseries.scoring.score_batch_size)
    # divide each channel's error by its mean error on the validation split, so a noisy or
    # hard-to-predict channel does not drown the others
    normalize_channels: bool
    # that divisor is at least this share of the median channel's: a channel constant in
    # training cannot turn a small change into a huge score
    scale_floor: float = number(ge=0.0, le=1.0)
    channel_cap: float = number(ge=0.0)  # a channel counts at most this; 0: no cap
    # a second part of the score: each step's quantile over channels of their scaled error,
    # uncapped, high only when several channels (one of few) err far above normal; 0: no part
    top_quantile: float = number(ge=0.0, lt=1.0)
    smooth: int = number(ge=1)  # centred moving mean of the step score, model and baselines
    # a second, longer moving mean (0: none): every part, and every baseline, is also smoothed
    # over this many steps and fused beside the short one in its own validation units, so a
    # sustained anomaly counts at its own scale while a short one keeps the short view
    smooth_long: int = number(ge=0)
    # a PCA's residual as one more part of the score (the mean of the parts' log scores, each
    # standardised on the validation split): PCA tolerates a shift that drowns the model
    fuse_pca: bool
    # the PCA part's weight in that mean, beside the model's parts' 1 each
    pca_weight: float = number(gt=0.0, le=1.0)
    # in that mean each term counts at least this many validation standard deviations above its
    # normal mean (null: no floor): a term quieter than usual cannot cancel another's evidence
    fuse_floor: float | None = number(ge=-10.0, le=10.0)
    threshold_percentile: float = number(gt=0.0, le=100.0)  # of validation-split scores
    # with the variance head: the predicted variance divides an error by at most its channel's
    # value at this quantile of the validation steps; 0: no ceiling
    variance_ceiling: float = number(ge=0.0, le=1.0)

    def check(self) -> None:
        """Rules that tie several fields together."""
        if self.smooth_long and self.smooth_long <= self.smooth:
            raise ConfigError(f"patchtst.score.smooth_long ({self.smooth_long}) must be 0 (one "
                              f"time scale) or longer than patchtst.score.smooth ({self.smooth})")


class PatchTSTConfig(Section):
    preset: str
    data: TSDataConfig
    model: PatchTSTModelConfig
    train: TrainConfig
    score: TSScoreConfig

    def check(self) -> None:
        """Rules that tie several fields together."""
        self.score.check()
        if self.data.window % self.model.patch_len:
            raise ConfigError(
                f"patchtst.data.window ({self.data.window}) must be a multiple of "
                f"patchtst.model.patch_len ({self.model.patch_len})")
        if self.data.window // self.model.patch_len < 2:
            raise ConfigError("patchtst.data.window must hold at least 2 patches of "
                              f"patchtst.model.patch_len ({self.model.patch_len})")
        if self.model.d_model % self.model.n_heads:
            raise ConfigError(f"patchtst.model.d_model ({self.model.d_model}) must be a multiple "
                              f"of patchtst.model.n_heads ({self.model.n_heads})")
        if self.model.decoder_dim % self.model.decoder_heads:
            raise ConfigError(f"patchtst.model.decoder_dim ({self.model.decoder_dim}) must be a "
                              f"multiple of patchtst.model.decoder_heads "
                              f"({self.model.decoder_heads})")
