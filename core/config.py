"""Configs: YAML files in `configs/` → pydantic models, with dotted-key overrides.

The runtime config is one `RunConfig` with a section per YAML file (`pipeline`, `patchtst`,
`swinmae`). The YAML files are the only defaults: no field has a default in code, so a key a file
leaves out is an error naming it. Merge order: the file's values ← the chosen preset (a stream
file's `presets:` map) ← user overrides (`--set patchtst.train.epochs=5`, or the console's
form). Unknown keys, wrong types and out-of-range values are `ConfigError`s that name the dotted
key and what is allowed (`_config_error` words pydantic's findings so). The merged result is
saved as `run.yaml` in the run folder and is what the run uses.

Field rules are declared on the fields: `Literal[...]` for choices, `Field(ge=, le=, gt=)` for
bounds (floats are finite); rules that tie fields together are each section's `check()`. Types are
strict: YAML `3.0` is not an int and `yes` is not a number (an int is taken for a float)."""
from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from core.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class Section(BaseModel):
    """A config section: every key declared, none unknown, types strict."""
    model_config = ConfigDict(extra="forbid", strict=True)


def _number(**bounds):
    """A finite number within `bounds` (`ge`, `le`, `gt`: pydantic's names)."""
    return Field(allow_inf_nan=False, **bounds)


def _word_for_bool(value: Any) -> Any:
    """YAML reads `distributed: true` as a bool; the choice is the word."""
    return str(value).lower() if isinstance(value, bool) else value


def _positive_ints(value: Any) -> Any:
    """A non-empty list of positive integers (YAML list, or a tuple from an override)."""
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 1 for i in value):
        return tuple(value)
    raise ValueError(f"expected a non-empty list of positive integers, found {value!r}")


PositiveInts = Annotated[tuple[int, ...], BeforeValidator(_positive_ints)]


class PipelineConfig(Section):
    ts_data: str | None  # time-series dataset: a folder (train.csv, ...) or one CSV file
    ts_test: str | None  # optional test CSV that overrides the folder's test.csv
    img_data: str | None  # image dataset: an MVTec-style folder, a zip, or a flat folder
    device: Literal["auto", "cpu", "cuda"]
    seed: int | None  # None: not reproducible, but no determinism cost
    name: str  # free text shown in the runs index
    precision: Literal["auto", "bf16", "fp16", "fp32"]  # autocast on CUDA
    compile: bool  # torch.compile the model for training (eager if it cannot compile)
    # training on several processes (torchrun, DistributedDataParallel); auto: when >1 GPU
    distributed: Annotated[Literal["auto", "true", "false"], BeforeValidator(_word_for_bool)]
    nproc: int = _number(ge=0)  # processes when distributed; 0: one per visible GPU
    # a scoring run: the folder of the finished run whose models score this run's data
    from_run: str | None


PATH_KEYS = ("ts_data", "ts_test", "img_data")  # PipelineConfig fields naming files or folders


class TSDataConfig(Section):
    window: int = _number(ge=2)  # time steps per window
    stride: int = _number(ge=1)  # step between training windows
    val_fraction: float = _number(gt=0.0, le=0.5)  # end of train held out (normal data)


class PatchTSTModelConfig(Section):
    patch_len: int = _number(ge=1)  # patches do not overlap: patch stride = patch_len
    d_model: int = _number(ge=4)
    n_heads: int = _number(ge=1)
    n_layers: int = _number(ge=1)
    d_ff: int = _number(ge=4)
    dropout: float = _number(ge=0.0, le=0.9)
    mask_ratio: float = _number(gt=0.0, le=0.9)
    revin: bool  # per-window normalisation; off: the model sees levels (level shifts)
    cross_channel: bool  # attention across channels, in the decoder (every patch has a token)
    decoder_dim: int = _number(ge=4)  # width of the light decoder after the visible-only encoder
    decoder_depth: int = _number(ge=1, le=4)  # decoder blocks over all patches (FFN 2x its width)
    decoder_heads: int = _number(ge=1)


class TrainConfig(Section):
    epochs: int = _number(ge=1)
    batch_size: int = _number(ge=1)
    lr: float = _number(gt=0.0)
    weight_decay: float = _number(ge=0.0)
    warmup_frac: float = _number(ge=0.0, le=0.5)  # share of all steps with linear warm-up
    min_lr_frac: float = _number(ge=0.0, le=1.0)  # cosine floor, as a share of lr
    grad_clip: float = _number(ge=0.0)  # max grad norm; 0 disables clipping
    patience: int = _number(ge=0)  # epochs without a better val loss before stopping; 0: never
    max_steps_per_epoch: int = _number(ge=0)  # 0: all windows; else a random subset per epoch
    log_every: int = _number(ge=1)  # steps between metrics.jsonl lines


class TSScoreConfig(Section):
    mode: Literal["full", "masked"]  # full: no mask; masked: complementary masks
    stride: int = _number(ge=1)  # step between scored windows (errors averaged over overlaps)
    batch_size: int = _number(ge=0)  # 0: by device (timeseries.scoring.score_batch_size)
    # divide each channel's error by its mean error on the validation split, so a noisy or
    # hard-to-predict channel does not drown the others
    normalize_channels: bool
    # that divisor is at least this share of the median channel's: a channel constant in
    # training cannot turn a small change into a huge score
    scale_floor: float = _number(ge=0.0, le=1.0)
    channel_cap: float = _number(ge=0.0)  # a channel counts at most this; 0: no cap
    smooth: int = _number(ge=1)  # centred moving mean of the step score, model and baselines
    # the score is the mean of the reconstruction's and a PCA's log scores, each standardised on
    # the validation split: PCA sees a broken correlation under a shift that drowns the model
    fuse_pca: bool
    threshold_percentile: float = _number(gt=0.0, le=100.0)  # of validation-split scores


class PatchTSTConfig(Section):
    preset: str
    data: TSDataConfig
    model: PatchTSTModelConfig
    train: TrainConfig
    score: TSScoreConfig

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
        if self.model.decoder_dim % self.model.decoder_heads:
            raise ConfigError(f"patchtst.model.decoder_dim ({self.model.decoder_dim}) must be a "
                              f"multiple of patchtst.model.decoder_heads "
                              f"({self.model.decoder_heads})")


class SwinMAEModelConfig(Section):
    image_size: int = _number(ge=8)  # side of the square input, in pixels
    in_chans: Literal[1, 3]  # set from the data by the pipeline
    patch_size: int = _number(ge=1)  # pixels per patch side; patches do not overlap
    window_size: int = _number(ge=1)  # tokens per window side; a stage whose grid is <= it
    # uses one window of the whole grid and no shift (as Swin does)
    embed_dim: int = _number(ge=4)  # stage-0 width; stage s has embed_dim * 2**s
    depths: PositiveInts  # Swin blocks per stage; patch merging between stages
    num_heads: PositiveInts  # one entry per stage
    mlp_ratio: float = _number(gt=0.0)
    mask_ratio: float = _number(gt=0.0, le=0.95)  # share of mask units hidden in training
    mask_unit: int = _number(ge=1)  # a mask unit is mask_unit×mask_unit patches (4×4 = 16 px)
    decoder_dim: int = _number(ge=4)
    decoder_depth: int = _number(ge=0, le=4)  # Swin blocks on the patch grid (W, SW, W, ...)
    decoder_heads: int = _number(ge=1)
    norm_pix_loss: bool  # targets normalised per patch (MAE); keep False for anomaly maps

    def check(self, prefix: str = "swinmae.model") -> None:
        """ConfigError naming `prefix.<key>` and its value if a rule between fields is broken.
        The geometry rule: with S = len(depths), image_size must be a multiple of
        patch_size * 2**(S-1); each stage grid g_s = image_size / patch_size / 2**s must be a
        multiple of its window min(window_size, g_s); the patch grid a multiple of mask_unit."""
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


class ImageDataConfig(Section):
    channels: Literal[1, 3] | None  # null: 1 if every image is grayscale
    resize: Literal["resize", "pad"]  # stretch to a square, or keep aspect + pad
    on_corrupt: Literal["skip", "fail"]  # a corrupt image is skipped (and named)
    val_fraction: float = _number(gt=0.0, le=0.5)  # normal images held out (threshold)
    hflip: bool  # random horizontal flips in training (no colour jitter: inspection data)
    num_workers: int = _number(ge=0)  # DataLoader worker processes
    # width × height above which an image is skipped (or fails, with on_corrupt="fail"): a small
    # PNG can declare 13000×13000 pixels and take ~2 GB to decode
    max_pixels: int = _number(ge=1)


class ImageScoreConfig(Section):
    mode: Literal["masked", "full"]  # masked: complementary block masks
    error: Literal["l2", "l2_grad"]  # l2_grad adds an image-gradient term
    grad_weight: float = _number(ge=0.0)
    sigma: float = _number(ge=0.0)  # Gaussian smoothing of the map, in pixels
    normalize: bool  # maps in units of normal images' error at each pixel (a z-score)
    normal_images: int = _number(ge=2)  # training images whose maps give those statistics
    image_score: Literal["topk_mean", "max"]
    topk: float = _number(gt=0.0, le=1.0)  # share of the map's pixels for topk_mean
    threshold_percentile: float = _number(gt=0.0, le=100.0)  # of held-out normal scores
    batch_size: int = _number(ge=1)
    overlays: int = _number(ge=0)  # heatmap overlay PNGs written for the top images


class SwinMAEConfig(Section):
    preset: str
    data: ImageDataConfig
    model: SwinMAEModelConfig
    train: TrainConfig
    score: ImageScoreConfig

    def check(self) -> None:
        self.model.check("swinmae.model")


class RunConfig(Section):
    pipeline: PipelineConfig
    patchtst: PatchTSTConfig
    swinmae: SwinMAEConfig

    def check(self) -> None:
        self.patchtst.check()
        self.swinmae.check()


# --- the schema, walked by dotted key ------------------------------------------------------

def _optional_inner(tp) -> tuple[Any, bool]:
    """(inner type, allows None) for `X | None`; (tp, False) otherwise."""
    args = typing.get_args(tp)
    if type(None) in args and typing.get_origin(tp) is not Literal:
        inner = [a for a in args if a is not type(None)]
        return inner[0], True
    return tp, False


def _is_section(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, Section)


def choices(section: type[Section], key: str) -> tuple:
    """The values a `Literal` field allows (for the console's pickers)."""
    inner, _ = _optional_inner(section.model_fields[key].annotation)
    return typing.get_args(inner)


def _type_at(dotted: str, root: type[Section]) -> Any:
    """The type of the field at a dotted key below `root` ("": root itself); None where a part
    is not a field (or sits below a value)."""
    tp = root
    for part in filter(None, dotted.split(".")):
        if not _is_section(tp) or part not in tp.model_fields:
            return None
        tp = tp.model_fields[part].annotation
    return tp


def _field_type(dotted: str):
    """The annotated type of a dotted key in `RunConfig`, or ConfigError naming the bad part."""
    cls, parts = RunConfig, dotted.split(".")
    for i, part in enumerate(parts):
        fields = cls.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or "config"
            raise ConfigError(f"{dotted}: unknown key {part!r} in {where}; "
                              f"allowed keys are {', '.join(fields)}")
        tp = fields[part].annotation
        if i < len(parts) - 1:
            if not _is_section(tp):
                raise ConfigError(f"{dotted}: {'.'.join(parts[:i + 1])} is a value, not a section")
            cls = tp
    if _is_section(tp):
        raise ConfigError(f"{dotted}: is a section; set one of its keys: "
                          f"{', '.join(tp.model_fields)}")
    return tp


# --- dict → model, pydantic's findings in our words ----------------------------------------

_TYPE_NAMES = {"int_type": "int", "float_type": "float", "bool_type": "bool",
               "string_type": "str", "int_parsing": "int", "float_parsing": "float"}
_BOUNDS = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">"}


def _found(value: Any) -> str:
    return "null" if value is None else repr(value)


def _what(err: dict, key: str, root: type[Section]) -> str:
    """What was expected and found, for one pydantic error at dotted `key` below `root`."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        parent = _type_at(key.rpartition(".")[0], root)
        return f"unknown key; allowed keys are {', '.join(parent.model_fields)}"
    if kind == "missing":
        return "missing; expected a value (the files in configs/ set every key)"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys, found {_found(value)}"
    if kind == "literal_error":
        options = typing.get_args(_optional_inner(_type_at(key, root))[0])
        return f"expected one of {', '.join(map(str, options))}, found {_found(value)}"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, found {_found(value)}"
    if kind in _BOUNDS:
        return f"expected a value {_BOUNDS[kind]} {next(iter(ctx.values()))}, found {value!r}"
    if kind == "finite_number":
        return f"expected a finite number, found {value!r}"
    return str(ctx.get("error", err["msg"]))  # a validator's own words (_positive_ints)


def _config_error(e: ValidationError, root: type[Section], prefix: str) -> ConfigError:
    """The first problem pydantic found (an unknown key before any other, as people read top
    down), named by its dotted key (`prefix` is where `root` sits in the whole config)."""
    err = min(e.errors(), key=lambda err: err["type"] != "extra_forbidden")
    parts, tp = [], root
    for part in err["loc"]:  # field names; a union adds its member's name, which is no key
        if not (_is_section(tp) and part in tp.model_fields):
            if err["type"] == "extra_forbidden":
                parts.append(str(part))
            break
        parts.append(str(part))
        tp = tp.model_fields[part].annotation
    key = ".".join(parts)
    shown = ".".join(filter(None, (prefix, key))) or "config"
    return ConfigError(f"{shown}: {_what(err, key, root)}")


def _validated(cls: type[Section], data: Any, prefix: str = ""):
    if data is None:
        data = {}
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise _config_error(e, cls, prefix) from None


def to_dict(cfg: Section) -> dict:
    return cfg.model_dump()


# --- YAML files and overrides ---------------------------------------------------------------

def parse_override(text: str) -> tuple[str, Any]:
    """'patchtst.train.epochs=5' → ('patchtst.train.epochs', 5), typed by the model's field."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected dotted.key=value")
    key, raw = (s.strip() for s in text.split("=", 1))
    inner, nullable = _optional_inner(_field_type(key))
    if nullable and raw.lower() in ("null", "none", ""):
        return key, None
    if typing.get_origin(inner) is Literal:  # a choice: the word, or a number choice as one
        kinds = {type(option) for option in typing.get_args(inner)}
        inner = int if kinds == {int} else str
    ints = typing.get_origin(inner) is tuple
    try:
        if inner is bool:
            value = {"true": True, "1": True, "yes": True,
                     "false": False, "0": False, "no": False}[raw.lower()]
        elif ints:
            value = tuple(int(part) for part in raw.strip("[]()").split(","))
        else:
            value = inner(raw)
    except (ValueError, KeyError):
        what = "comma-separated integers" if ints else inner.__name__
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


def _file_tree(config_dir: Path, preset_of: dict[str, str | None]) -> dict:
    """{section: the section's YAML file, with the chosen preset applied} for every section."""
    tree = {}
    for name in RunConfig.model_fields:
        path = config_dir / f"{name}.yaml"
        raw = read_yaml(path) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of keys")
        if "presets" in raw or "preset" in raw:
            raw = _apply_preset(name, raw, preset_of.get(name))
        tree[name] = raw
    return tree


def load_config(overrides: list[str] | dict[str, Any] = (), config_dir: Path = CONFIG_DIR) -> RunConfig:
    """The files in `config_dir/<section>.yaml` ← preset ← `overrides`, checked."""
    pairs = dict(parse_override(o) for o in overrides) if isinstance(overrides, (list, tuple)) \
        else {k: parse_override(f"{k}={v}")[1] if isinstance(v, str) else v for k, v in overrides.items()}
    chosen = {name: pairs.get(f"{name}.preset") for name in RunConfig.model_fields}
    tree = _file_tree(config_dir, chosen)
    for key, value in pairs.items():
        _set_dotted(tree, key, value)
    cfg = _validated(RunConfig, tree)
    cfg.check()
    return cfg


def defaults(dotted: str = "", config_dir: Path = CONFIG_DIR, **changes) -> Any:
    """The default config of a section (`"patchtst.score"`; `""`: all of it) as the YAML files
    give it (default presets), with `changes` to its keys, checked like any config."""
    tree: Any = _file_tree(config_dir, {})
    for part in filter(None, dotted.split(".")):
        tree = tree[part]
    section = _validated(_type_at(dotted, RunConfig), _deep_merge(tree, changes), dotted)
    if hasattr(section, "check"):  # the rules between its fields
        section.check()
    return section


def from_dict(cls: type[Section], data: Any, prefix: str = "") -> Any:
    """A saved section (a checkpoint's config, at dotted key `prefix`) as model `cls`; a key it
    lacks (saved before the key existed) takes the YAML files' default."""
    base: Any = _file_tree(CONFIG_DIR, {})
    for part in filter(None, prefix.split(".")):
        base = base[part]
    merged = _deep_merge(base, data) if isinstance(data, dict) else data
    return _validated(cls, merged, prefix)


def save_config(cfg: RunConfig, path: Path) -> None:
    from core.fileio import write_atomic
    write_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def read_config(path: Path) -> RunConfig:
    """A saved runtime config (`run.yaml`): already merged, so no presets are applied again; a
    key it lacks (saved before the key existed) takes the YAML files' default."""
    cfg = from_dict(RunConfig, read_yaml(path))
    cfg.check()
    return cfg
