"""Configs: YAML files in `configs/` → dataclasses, with dotted-key overrides.

The runtime config is one `RunConfig` with a section per YAML file (`pipeline`, `patchtst`).
Merge order: the file's defaults ← the chosen preset (a stream file's `presets:` map) ← user
overrides (`--set patchtst.train.epochs=5`, or the console's form). Unknown keys, wrong types
and out-of-range values are `ConfigError`s that name the dotted key and what is allowed. The
merged result is saved as `run.yaml` in the run folder and is what the run uses.

Field rules live beside the fields: `metadata={"choices": (...)}` or `{"min": x, "max": y}`
(inclusive) or `{"gt": x}` (exclusive)."""
from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _choice(default, choices):
    return field(default=default, metadata={"choices": tuple(choices)})


def _range(default, **bounds):
    return field(default=default, metadata=bounds)


@dataclass
class PipelineConfig:
    ts_data: str | None = None  # time-series dataset: a folder (train.csv, ...) or one CSV file
    ts_test: str | None = None  # optional test CSV that overrides the folder's test.csv
    img_data: str | None = None  # image dataset: an MVTec-style folder, a zip, or a flat folder
    device: str = _choice("auto", ("auto", "cpu", "cuda"))
    seed: int | None = 0  # None: not reproducible, but no determinism cost
    name: str = ""  # free text shown in the runs index
    precision: str = _choice("auto", ("auto", "bf16", "fp16", "fp32"))  # autocast on CUDA
    compile: bool = False  # torch.compile the model for training (eager if it cannot compile)
    # training on several processes (torchrun, DistributedDataParallel); auto: when >1 GPU
    distributed: str = _choice("auto", ("auto", "true", "false"))
    nproc: int = _range(0, min=0)  # processes when distributed; 0: one per visible GPU
    # a scoring run: the folder of the finished run whose models score this run's data
    from_run: str | None = None


PATH_KEYS = ("ts_data", "ts_test", "img_data")  # PipelineConfig fields naming files or folders


@dataclass
class TSDataConfig:
    window: int = _range(100, min=2)  # time steps per window
    stride: int = _range(10, min=1)  # step between training windows
    val_fraction: float = _range(0.2, gt=0.0, max=0.5)  # end of train held out (normal data)


@dataclass
class PatchTSTModelConfig:
    patch_len: int = _range(10, min=1)  # patches do not overlap: patch stride = patch_len
    d_model: int = _range(64, min=4)
    n_heads: int = _range(4, min=1)
    n_layers: int = _range(2, min=1)
    d_ff: int = _range(128, min=4)
    dropout: float = _range(0.0, min=0.0, max=0.9)
    mask_ratio: float = _range(0.4, gt=0.0, max=0.9)
    revin: bool = False  # per-window normalisation; off: the model sees levels (level shifts)
    cross_channel: bool = True  # attention across channels after the channel-independent encoder


@dataclass
class TrainConfig:
    epochs: int = _range(10, min=1)
    batch_size: int = _range(64, min=1)
    lr: float = _range(1e-3, gt=0.0)
    weight_decay: float = _range(0.01, min=0.0)
    warmup_frac: float = _range(0.1, min=0.0, max=0.5)  # share of all steps with linear warm-up
    min_lr_frac: float = _range(0.01, min=0.0, max=1.0)  # cosine floor, as a share of lr
    grad_clip: float = _range(1.0, min=0.0)  # max grad norm; 0 disables clipping
    patience: int = _range(3, min=0)  # epochs without a better val loss before stopping; 0: never
    max_steps_per_epoch: int = _range(0, min=0)  # 0: all windows; else a random subset per epoch
    log_every: int = _range(10, min=1)  # steps between metrics.jsonl lines


@dataclass
class TSScoreConfig:
    mode: str = _choice("full", ("full", "masked"))  # full: no mask; masked: complementary masks
    stride: int = _range(10, min=1)  # step between scored windows (errors averaged over overlaps)
    batch_size: int = _range(0, min=0)  # 0: by device (timeseries.scoring.score_batch_size)
    # divide each channel's error by its mean error on the validation split, so a noisy or
    # hard-to-predict channel does not drown the others
    normalize_channels: bool = True
    # that divisor is at least this share of the median channel's: a channel constant in
    # training cannot turn a small change into a huge score
    scale_floor: float = _range(0.1, min=0.0, max=1.0)
    channel_cap: float = _range(1000.0, min=0.0)  # a channel counts at most this; 0: no cap
    smooth: int = _range(10, min=1)  # centred moving mean of the step score, model and baselines
    # the score is the mean of the reconstruction's and a PCA's log scores, each standardised on
    # the validation split: PCA sees a broken correlation under a shift that drowns the model
    fuse_pca: bool = True
    threshold_percentile: float = _range(99.0, gt=0.0, max=100.0)  # of validation-split scores


@dataclass
class PatchTSTConfig:
    preset: str = "default"
    data: TSDataConfig = field(default_factory=TSDataConfig)
    model: PatchTSTModelConfig = field(default_factory=PatchTSTModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3))
    score: TSScoreConfig = field(default_factory=TSScoreConfig)

    def check(self) -> None:
        """Rules that tie several fields together."""
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


@dataclass
class SwinMAEModelConfig:
    image_size: int = _range(128, min=8)  # side of the square input, in pixels
    in_chans: int = _choice(3, (1, 3))  # set from the data by the pipeline
    patch_size: int = _range(4, min=1)  # pixels per patch side; patches do not overlap
    window_size: int = _range(8, min=1)  # tokens per window side; a stage whose grid is <= it
    # uses one window of the whole grid and no shift (as Swin does)
    embed_dim: int = _range(48, min=4)  # stage-0 width; stage s has embed_dim * 2**s
    depths: tuple[int, ...] = (2, 2, 2)  # Swin blocks per stage; patch merging between stages
    num_heads: tuple[int, ...] = (3, 6, 12)  # one entry per stage
    mlp_ratio: float = _range(4.0, gt=0.0)
    mask_ratio: float = _range(0.75, gt=0.0, max=0.95)  # share of mask units hidden in training
    mask_unit: int = _range(4, min=1)  # a mask unit is mask_unit×mask_unit patches (4×4 = 16 px)
    decoder_dim: int = _range(128, min=4)
    decoder_depth: int = _range(1, min=0, max=4)  # Swin blocks on the patch grid (W, SW, W, ...)
    decoder_heads: int = _range(4, min=1)
    norm_pix_loss: bool = False  # targets normalised per patch (MAE); keep False for anomaly maps

    def check(self, prefix: str = "swinmae.model") -> None:
        """ConfigError naming `prefix.<key>` and its value if a field or a rule between fields
        is broken. The geometry rule: with S = len(depths), image_size must be a multiple of
        patch_size * 2**(S-1); each stage grid g_s = image_size / patch_size / 2**s must be a
        multiple of its window min(window_size, g_s); the patch grid a multiple of mask_unit."""
        for f in dataclasses.fields(self):
            if f.metadata:
                _check_bounds(f"{prefix}.{f.name}", getattr(self, f.name), f.metadata)
        for name in ("depths", "num_heads"):
            v = getattr(self, name)
            if not isinstance(v, (list, tuple)) or not v or not all(
                    isinstance(i, int) and not isinstance(i, bool) and i >= 1 for i in v):
                raise ConfigError(f"{prefix}.{name}: expected a non-empty list of positive "
                                  f"integers, found {v!r}")
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
        if self.decoder_dim % self.decoder_heads:
            raise ConfigError(f"{prefix}.decoder_heads: expected a divisor of decoder_dim "
                              f"({self.decoder_dim}), found {self.decoder_heads}")


def stage_windows(cfg: SwinMAEModelConfig) -> list[tuple[int, int]]:
    """(grid side, window side) per stage; the window is clamped to the grid (no shift then)."""
    grid = cfg.image_size // cfg.patch_size
    return [(grid >> s, min(cfg.window_size, grid >> s)) for s in range(len(cfg.depths))]



@dataclass
class ImageDataConfig:
    channels: int | None = _choice(None, (None, 1, 3))  # null: 1 if every image is grayscale
    resize: str = _choice("resize", ("resize", "pad"))  # stretch to a square, or keep aspect + pad
    on_corrupt: str = _choice("skip", ("skip", "fail"))  # a corrupt image is skipped (and named)
    val_fraction: float = _range(0.1, gt=0.0, max=0.5)  # normal images held out (threshold)
    hflip: bool = True  # random horizontal flips in training (no colour jitter: inspection data)
    num_workers: int = _range(2, min=0)  # DataLoader worker processes
    # width × height above which an image is skipped (or fails, with on_corrupt="fail"): a small
    # PNG can declare 13000×13000 pixels and take ~2 GB to decode
    max_pixels: int = _range(40_000_000, min=1)


@dataclass
class ImageScoreConfig:
    mode: str = _choice("masked", ("masked", "full"))  # masked: complementary block masks
    error: str = _choice("l2", ("l2", "l2_grad"))  # l2_grad adds an image-gradient term
    grad_weight: float = _range(1.0, min=0.0)
    sigma: float = _range(2.0, min=0.0)  # Gaussian smoothing of the map, in pixels
    normalize: bool = True  # maps in units of normal images' error at each pixel (a z-score)
    normal_images: int = _range(200, min=2)  # training images whose maps give those statistics
    image_score: str = _choice("topk_mean", ("topk_mean", "max"))
    topk: float = _range(0.01, gt=0.0, max=1.0)  # share of the map's pixels for topk_mean
    threshold_percentile: float = _range(99.0, gt=0.0, max=100.0)  # of held-out normal scores
    batch_size: int = _range(16, min=1)
    overlays: int = _range(12, min=0)  # heatmap overlay PNGs written for the top images


@dataclass
class SwinMAEConfig:
    preset: str = "default"
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    model: SwinMAEModelConfig = field(default_factory=SwinMAEModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=30, batch_size=16, lr=5e-4, weight_decay=0.05, warmup_frac=0.05, patience=5,
        log_every=5))  # images: fewer, costlier steps than windows
    score: ImageScoreConfig = field(default_factory=ImageScoreConfig)

    def check(self) -> None:
        self.model.check("swinmae.model")


@dataclass
class RunConfig:
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    patchtst: PatchTSTConfig = field(default_factory=PatchTSTConfig)
    swinmae: SwinMAEConfig = field(default_factory=SwinMAEConfig)

    def check(self) -> None:
        self.patchtst.check()
        self.swinmae.check()


# --- dict → dataclass with checks -----------------------------------------------------------

def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional_inner(tp) -> tuple[Any, bool]:
    """(inner type, allows None) for `X | None`; (tp, False) otherwise."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _is_int_tuple(tp) -> bool:
    return typing.get_origin(tp) is tuple and typing.get_args(tp) == (int, ...)


def _check_int_tuple(key: str, value: Any) -> tuple[int, ...]:
    """A list of positive integers (YAML list, or '2,2,6,2' from an override) → a tuple."""
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 1 for i in value):
        return tuple(value)
    raise ConfigError(f"{key}: expected a non-empty list of positive integers, found {value!r}")


def _check_value(key: str, value: Any, tp, meta) -> Any:
    inner, nullable = _optional_inner(tp)
    if value is None:
        if nullable:
            return None
        raise ConfigError(f"{key}: expected {getattr(inner, '__name__', inner)}, found null")
    if _is_int_tuple(inner):
        return _check_int_tuple(key, value)
    if inner is str and isinstance(value, bool) and str(value).lower() in meta.get("choices", ()):
        value = str(value).lower()  # YAML reads `distributed: true` as a bool
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if inner is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, found {value!r}")
    if inner is bool and not isinstance(value, bool) or inner is not bool and isinstance(value, bool) \
            or not isinstance(value, inner):
        raise ConfigError(f"{key}: expected {inner.__name__}, found {value!r}")
    _check_bounds(key, value, meta)
    return value


def _check_bounds(key: str, value: Any, meta) -> None:
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{key}: expected one of {', '.join(map(str, meta['choices']))}, "
                          f"found {value!r}")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{key}: expected a value >= {meta['min']}, found {value!r}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{key}: expected a value <= {meta['max']}, found {value!r}")
    if "gt" in meta and value <= meta["gt"]:
        raise ConfigError(f"{key}: expected a value > {meta['gt']}, found {value!r}")


def from_dict(cls, data: Any, prefix: str = ""):
    """Build dataclass `cls` from a nested dict, naming the dotted key of any problem."""
    where = prefix or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, found {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix + '.' if prefix else ''}{unknown[0]}: unknown key; "
                          f"allowed keys are {', '.join(fields)}")
    hints = _hints(cls)
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, key)
        else:
            kwargs[name] = _check_value(key, value, tp, fields[name].metadata)
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


# --- overrides ------------------------------------------------------------------------------

def _field_type(dotted: str):
    """The annotated type of a dotted key in `RunConfig`, or ConfigError naming the bad part."""
    cls, parts = RunConfig, dotted.split(".")
    for i, part in enumerate(parts):
        hints = _hints(cls)
        if part not in hints:
            where = ".".join(parts[:i]) or "config"
            raise ConfigError(f"{dotted}: unknown key {part!r} in {where}; "
                              f"allowed keys are {', '.join(hints)}")
        tp = hints[part]
        if i < len(parts) - 1:
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"{dotted}: {'.'.join(parts[:i + 1])} is a value, not a section")
            cls = tp
    if dataclasses.is_dataclass(tp):
        raise ConfigError(f"{dotted}: is a section; set one of its keys: {', '.join(_hints(tp))}")
    return tp


def parse_override(text: str) -> tuple[str, Any]:
    """'patchtst.train.epochs=5' → ('patchtst.train.epochs', 5), typed by the dataclass field."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected dotted.key=value")
    key, raw = (s.strip() for s in text.split("=", 1))
    inner, nullable = _optional_inner(_field_type(key))
    if nullable and raw.lower() in ("null", "none", ""):
        return key, None
    try:
        if inner is bool:
            value = {"true": True, "1": True, "yes": True,
                     "false": False, "0": False, "no": False}[raw.lower()]
        elif _is_int_tuple(inner):
            value = tuple(int(part) for part in raw.strip("[]()").split(","))
        else:
            value = inner(raw)
    except (ValueError, KeyError):
        what = "comma-separated integers" if _is_int_tuple(inner) else inner.__name__
        raise ConfigError(f"{key}: expected {what}, found {raw!r}") from None
    return key, value


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        node = tree.get(part)
        if not isinstance(node, dict):
            node = tree[part] = {}
        tree = node
    tree[last] = value


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


MAX_YAML_BYTES = 1024 * 1024  # a config is a few KB; anything this large is not one of ours


def _refuse_anchors(text: str) -> None:
    """Anchors and aliases (`&a`, `*a`) are refused: a config never needs them, and a few nested
    aliases in 2 KB expand to hundreds of MB (a "billion laughs" file). Only parser events are
    read here: nothing is constructed."""
    for event in yaml.parse(text):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.MarkedYAMLError(
                problem="found an anchor or alias (&name / *name); expected plain values "
                        "(anchors and aliases are not accepted)", problem_mark=event.start_mark)


def read_yaml(path: Path) -> Any:
    """The YAML in `path` (UTF-8, at most MAX_YAML_BYTES, no anchors or aliases), as plain
    Python values; ConfigError naming the file for anything else."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: expected a config of at most {MAX_YAML_BYTES:,} bytes, "
                          f"found {path.stat().st_size:,}")
    try:
        text = path.read_text(encoding="utf-8")
        _refuse_anchors(text)
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: expected UTF-8 text, found the byte "
                          f"0x{e.object[e.start]:02x}; save it as UTF-8") from None


def _apply_preset(section: str, raw: dict, name: str | None) -> dict:
    """Merge the named preset of a stream file's `presets:` map over its defaults."""
    presets = raw.pop("presets", None) or {}
    name = name if name is not None else raw.get("preset", "default")
    if name != "default" and name not in presets:
        raise ConfigError(f"{section}.preset: expected one of "
                          f"{', '.join(['default', *presets])}, found {name!r}")
    merged = _deep_merge(raw, presets.get(name) or {})
    merged["preset"] = name
    return merged


def presets(section: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """Preset names a stream offers (for the console's preset picker)."""
    raw = read_yaml(config_dir / f"{section}.yaml") or {}
    return ["default", *(raw.get("presets") or {})]


def load_config(overrides: list[str] | dict[str, Any] = (), config_dir: Path = CONFIG_DIR) -> RunConfig:
    """Defaults from `config_dir/<section>.yaml` ← preset ← `overrides`, checked."""
    pairs = dict(parse_override(o) for o in overrides) if isinstance(overrides, (list, tuple)) \
        else {k: parse_override(f"{k}={v}")[1] if isinstance(v, str) else v for k, v in overrides.items()}
    tree = {}
    for f in dataclasses.fields(RunConfig):
        raw = read_yaml(config_dir / f"{f.name}.yaml") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{config_dir / f'{f.name}.yaml'}: expected a mapping of keys")
        if "presets" in raw or "preset" in raw:
            raw = _apply_preset(f.name, raw, pairs.get(f"{f.name}.preset"))
        tree[f.name] = raw
    for key, value in pairs.items():
        _set_dotted(tree, key, value)
    cfg = from_dict(RunConfig, tree)
    cfg.check()
    return cfg


def save_config(cfg: RunConfig, path: Path) -> None:
    from core.fileio import write_atomic
    write_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def read_config(path: Path) -> RunConfig:
    """A saved runtime config (`run.yaml`): already merged, so no presets are applied again."""
    cfg = from_dict(RunConfig, read_yaml(path))
    cfg.check()
    return cfg
