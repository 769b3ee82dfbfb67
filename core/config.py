"""Configs: YAML files in `configs/` → pydantic models, with dotted-key overrides.

The runtime config is one `RunConfig` with a section per YAML file: `pipeline`, and one per
stream of `core.streams.STREAMS` (`patchtst`, `swinmae`), whose spec names its section model
(in the stream's package: `core/timeseries/config.py`, `core/images/config.py`, built from
`Section`, `number` and `TrainConfig` here).
The YAML files are the only defaults: no field has a default in code (but a stream's data keys,
which are null unless given), so a key a file leaves out is an error naming it. Merge order: the
file's values ← the chosen preset (a stream file's `presets:` map) ← user overrides
(`--set patchtst.train.epochs=5`, or the console's form). Unknown keys, wrong types and
out-of-range values are `ConfigError`s that name the dotted key and what is allowed
(`_config_error` words pydantic's findings so). The merged result is saved as `run.yaml` in the
run folder and is what the run uses.

Field rules are declared on the fields: `Literal[...]` for choices, `Field(ge=, le=, gt=)` for
bounds (floats are finite); rules that tie fields together are each section's `check()`. Types are
strict: YAML `3.0` is not an int and `yes` is not a number (an int is taken for a float)."""
from __future__ import annotations

import copy
import functools
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from core.errors import ConfigError
from core.run_files import RunFiles
from core.streams import STREAMS

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class Section(BaseModel):
    """A config section: every key declared, none unknown, types strict."""
    model_config = ConfigDict(extra="forbid", strict=True)


def number(help: str | None = None, **bounds):
    """A finite number within `bounds` (`ge`, `le`, `gt`: pydantic's names); `help` is its
    description in the schema, which the Train form shows beside the field."""
    return Field(allow_inf_nan=False, description=help, **bounds)


def _word_for_bool(value: Any) -> Any:
    """YAML reads `distributed: true` as a bool; the choice is the word."""
    return str(value).lower() if isinstance(value, bool) else value


def positive_ints(value: Any) -> Any:
    """A non-empty list of positive integers (YAML list, or a tuple from an override)."""
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 1 for i in value):
        return tuple(value)
    raise ValueError(f"expected a non-empty list of positive integers, found {value!r}")


PositiveInts = Annotated[tuple[int, ...], BeforeValidator(positive_ints)]


class PipelineConfig(Section):
    """Pipeline-wide settings; `run_config_model` adds each stream's data keys (`ts_data`...)."""
    device: Literal["auto", "cpu", "cuda"]
    seed: int | None  # None: not reproducible, but no determinism cost
    name: str  # free text shown in the runs index
    precision: Literal["auto", "bf16", "fp16", "fp32"]  # autocast on CUDA
    compile: bool  # torch.compile the model for training (eager if it cannot compile)
    # training on several processes (torchrun, DistributedDataParallel); auto: when >1 GPU
    distributed: Annotated[Literal["auto", "true", "false"], BeforeValidator(_word_for_bool)]
    nproc: int = number(ge=0)  # processes when distributed; 0: one per visible GPU
    # a scoring run: the folder of the finished run whose models score this run's data
    from_run: str | None


class TrainConfig(Section):
    epochs: int = number("passes over the training data", ge=1)
    batch_size: int = number("samples per optimizer step", ge=1)
    lr: float = number("peak AdamW rate (warm-up, then cosine)", gt=0.0)
    weight_decay: float = number(ge=0.0)
    warmup_frac: float = number(ge=0.0, le=0.5)  # share of all steps with linear warm-up
    min_lr_frac: float = number(ge=0.0, le=1.0)  # cosine floor, as a share of lr
    grad_clip: float = number(ge=0.0)  # max grad norm; 0 disables clipping
    patience: int = number("epochs without a better validation loss before training stops "
                           "early; 0: never", ge=0)
    max_steps_per_epoch: int = number(ge=0)  # 0: all windows; else a random subset per epoch
    log_every: int = number(ge=1)  # steps between metrics.jsonl lines


class RunConfig(Section):
    """The whole config: `pipeline`, and a section per stream. The model of a run's config is
    the subclass `run_config_model` builds from the registered streams (`core.streams`)."""
    pipeline: PipelineConfig

    def check(self) -> None:
        """Each stream section's rules between its fields."""
        for name in type(self).model_fields:
            section = getattr(self, name)
            if hasattr(section, "check"):
                section.check()


@functools.cache
def _run_config_model(streams: tuple) -> type[RunConfig]:
    specs = [STREAMS[name] for name, _ in streams]
    # a stream's data keys are null unless given: no data, no stream (no default to drift)
    pipeline = create_model("PipelineConfig", __base__=PipelineConfig,
                            **{o.key: (str | None, None) for s in specs for o in s.data})
    return create_model("RunConfig", __base__=RunConfig, pipeline=(pipeline, ...),
                        **{s.name: (s.config, ...) for s in specs})


def run_config_model() -> type[RunConfig]:
    """The `RunConfig` of the registered streams: a section and data keys per stream."""
    return _run_config_model(STREAMS.version())


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


@dataclass(frozen=True)
class NumberField:
    """What the schema says of one number field: what the Train form shows and allows."""
    kind: type  # int or float
    low: float | None  # None: unbounded; a strict `gt` bound is given as its value
    high: float | None
    help: str  # its description ("" when it has none)


def number_field(dotted: str) -> NumberField:
    """The number field at a dotted key (e.g. `patchtst.train.lr`), read from the schema."""
    parent, _, name = dotted.rpartition(".")
    field = _type_at(parent, run_config_model()).model_fields[name]
    low = next((getattr(m, a) for m in field.metadata for a in ("ge", "gt") if hasattr(m, a)),
               None)
    high = next((getattr(m, a) for m in field.metadata for a in ("le", "lt") if hasattr(m, a)),
                None)
    kind = field.annotation
    return NumberField(kind, None if low is None else kind(low),
                       None if high is None else kind(high), field.description or "")


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
    """The annotated type of a dotted key in the config, or ConfigError naming the bad part."""
    cls, parts = run_config_model(), dotted.split(".")
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
    return str(ctx.get("error", err["msg"]))  # a validator's own words (positive_ints)


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
    raw = read_yaml(_section_file(section, config_dir)) or {}
    return ["default", *(raw.get("presets") or {})]


def _section_file(name: str, config_dir: Path) -> Path:
    """`config_dir/<name>.yaml`, or the YAML file a stream's spec names."""
    spec = STREAMS.get(name)
    own = spec.config_file if spec is not None else None
    return own or config_dir / f"{name}.yaml"


def _file_tree(config_dir: Path, preset_of: dict[str, str | None]) -> dict:
    """{section: the section's YAML file, with the chosen preset applied} for every section."""
    tree = {}
    for name in run_config_model().model_fields:
        path = _section_file(name, config_dir)
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
    model = run_config_model()
    chosen = {name: pairs.get(f"{name}.preset") for name in model.model_fields}
    tree = _file_tree(config_dir, chosen)
    for key, value in pairs.items():
        _set_dotted(tree, key, value)
    cfg = _validated(model, tree)
    cfg.check()
    return cfg


def defaults(dotted: str = "", config_dir: Path = CONFIG_DIR, **changes) -> Any:
    """The default config of a section (`"patchtst.score"`; `""`: all of it) as the YAML files
    give it (default presets), with `changes` to its keys, checked like any config."""
    tree: Any = _file_tree(config_dir, {})
    for part in filter(None, dotted.split(".")):
        tree = tree[part]
    section = _validated(_type_at(dotted, run_config_model()), _deep_merge(tree, changes), dotted)
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


def run_settings(run_dir: Path) -> dict:
    """A run folder's run.yaml as plain values, forgivingly: {} when it is missing, unreadable
    or not a mapping. For readers that show what they can; a run that needs its config reads it
    with `read_config`, which names the problem."""
    try:
        cfg = read_yaml(RunFiles(run_dir).config)
    except (ConfigError, OSError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def save_config(cfg: RunConfig, path: Path) -> None:
    from core.fileio import write_atomic
    write_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def read_config(path: Path) -> RunConfig:
    """A saved runtime config (`run.yaml`): already merged, so no presets are applied again; a
    key it lacks (saved before the key existed) takes the YAML files' default."""
    cfg = from_dict(run_config_model(), read_yaml(path))
    cfg.check()
    return cfg
