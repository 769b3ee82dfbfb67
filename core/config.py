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
    device: str = _choice("auto", ("auto", "cpu", "cuda"))
    seed: int | None = 0  # None: not reproducible, but no determinism cost
    name: str = ""  # free text shown in the runs index


PATH_KEYS = ("ts_data", "ts_test")  # PipelineConfig fields that name files or folders


@dataclass
class TSDataConfig:
    window: int = _range(100, min=2)  # time steps per window
    stride: int = _range(10, min=1)  # step between training windows
    val_fraction: float = _range(0.2, gt=0.0, max=0.5)  # end of train held out (normal data)


@dataclass
class PatchTSTModelConfig:
    patch_len: int = _range(10, min=1)  # patches do not overlap: patch stride = patch_len
    d_model: int = _range(128, min=4)
    n_heads: int = _range(8, min=1)
    n_layers: int = _range(3, min=1)
    d_ff: int = _range(256, min=4)
    dropout: float = _range(0.0, min=0.0, max=0.9)
    mask_ratio: float = _range(0.4, gt=0.0, max=0.9)
    revin: bool = False  # per-window normalisation; off: the model sees levels (level shifts)


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
    batch_size: int = _range(256, min=1)
    # divide each channel's error by its mean error on the validation split, so a noisy or
    # hard-to-predict channel does not drown the others (and near-constant ones cannot explode)
    normalize_channels: bool = True
    threshold_percentile: float = _range(99.0, gt=0.0, max=100.0)  # of validation-split scores


@dataclass
class PatchTSTConfig:
    preset: str = "default"
    data: TSDataConfig = field(default_factory=TSDataConfig)
    model: PatchTSTModelConfig = field(default_factory=PatchTSTModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
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
class RunConfig:
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    patchtst: PatchTSTConfig = field(default_factory=PatchTSTConfig)

    def check(self) -> None:
        self.patchtst.check()


# --- dict → dataclass with checks -----------------------------------------------------------

def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional_inner(tp) -> tuple[Any, bool]:
    """(inner type, allows None) for `X | None`; (tp, False) otherwise."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _check_value(key: str, value: Any, tp, meta) -> Any:
    inner, nullable = _optional_inner(tp)
    if value is None:
        if nullable:
            return None
        raise ConfigError(f"{key}: expected {inner.__name__}, found null")
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
        else:
            value = inner(raw)
    except (ValueError, KeyError):
        raise ConfigError(f"{key}: expected {inner.__name__}, found {raw!r}") from None
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


def read_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


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
