"""The data streams, one spec each: everything the pipeline, the CLI, the index and the console
need to know about a stream, declared once in its own package.

A stream is a package (`core/timeseries/`, `core/images/`) with a leaf module `spec.py` that
holds `SPEC = Stream(...)`: its data keys and CLI flags, upload kind, config section (a pydantic
model and its YAML file), stages, output checks, headline metrics, Train form fields, Results
view, scoring and export modules. Functions are named by "module:function" strings and imported
only when used, so this registry (and whoever reads the stage list or the specs) never imports
torch. `STREAMS` loads the built-in specs (`BUILTIN`) and those named in `$ATC_STREAMS`
(comma-separated modules, inherited by the training subprocess) on first use; `register` adds
one at run time. Adding a stream: its package, its YAML file, and one line in `BUILTIN`."""
from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILTIN = ("core.timeseries.spec", "core.images.spec")
PLUGINS_ENV = "ATC_STREAMS"


@dataclass(frozen=True)
class Stage:
    name: str
    target: str  # "module:function"
    stream: str | None = None  # None: runs whenever the pipeline runs
    distributed: bool = False  # may run on several processes (torchrun) when configured


def stages_of(stream: str, module: str, steps: tuple[str, ...] = ("train", "score", "evaluate")
              ) -> tuple[Stage, ...]:
    """The stages `<step>_<stream>` running `module:<step>`, in order; training may run on
    several processes."""
    return tuple(Stage(f"{step}_{stream}", f"{module}:{step}", stream,
                       distributed=step == "train") for step in steps)


@dataclass(frozen=True)
class DataOption:
    """A `pipeline` config key naming a file or folder of a stream's data, and its CLI flag."""
    key: str  # "ts_data"
    help: str  # for `run --<flag>`
    score_help: str | None = None  # for `score --<flag>`; None: `score` does not take it

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


@dataclass(frozen=True)
class FormField:
    """One hyperparameter in the Train form; `key` is dotted inside the stream's config section.
    Its type, bounds and help text come from the config schema (`core.config.number_field`)."""
    key: str
    label: str


TRAIN_FIELDS = (  # the Train form's fields every stream's training loop has
    FormField("train.epochs", "Epochs"),
    FormField("train.batch_size", "Batch size"),
    FormField("train.lr", "Learning rate"),
    FormField("train.patience", "Early-stop patience (epochs)"),
)


@dataclass(frozen=True)
class Stream:
    """One data stream: the pipeline and the console treat every stream alike through this."""
    name: str  # the model: its output folder, config section and stage suffix
    kind: str  # the data: uploads/<kind>/<dataset>/ and data/samples/<kind>/
    title: str  # for people
    data: tuple[DataOption, ...]  # the first names its data; the others are optional paths
    config: type  # the pydantic section model of its config (core.config.Section)
    module: str  # holds load(cfg) -> (prepared, dataset), describe(...) -> lines, summary(...)
    load_dataset: str  # "module:function" (folder) -> dataset: an upload read and checked
    summarize: str  # "module:function" (dataset) -> summary dict for the Data page
    stages: tuple[Stage, ...]  # of a training run, in order
    scoring_stages: tuple[Stage, ...]  # of a scoring run (`pipeline.from_run`)
    check_outputs: str  # "module:function" (out_dir, Checks, checkpoint) for validate_outputs
    scoring: str  # module: load(cfg), score(ctx), evaluate(ctx) of a scoring run
    exporter: str  # module: export(run_dir, folder); "" when the stream cannot be exported
    results_view: str  # "module:function" (run_dir, stream) drawing its Results section
    headline: dict[str, str]  # metrics.json key -> label, shown in the runs index (in order)
    key_params: tuple[tuple[str, str], ...]  # (section, key) of its config the index shows
    form_fields: tuple[FormField, ...]  # the Train form's fields beyond the pipeline's
    preselected: bool  # the console's Train page picks its bundled sample by default
    cpu_bf16: bool = True  # `precision: auto` trains it in bf16 on a CPU with bf16 units
    # (measured faster there); False: fp32 on every CPU
    config_file: Path | None = None  # its YAML defaults; None: configs/<name>.yaml

    @property
    def data_key(self) -> str:
        return self.data[0].key


def resolve(target: str) -> Any:
    """The object a "module:name" string names, imported now."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _add(specs: dict[str, Stream], spec: Stream) -> None:
    """Put `spec` in `specs` (replacing one of its name); ValueError when another stream has
    its data kind or one of its data keys."""
    clash = next((s for s in specs.values() if s.name != spec.name and (
        s.kind == spec.kind or {o.key for o in s.data} & {o.key for o in spec.data})), None)
    if clash:
        raise ValueError(f"stream {spec.name!r}: its kind or data keys are taken by "
                         f"{clash.name!r}")
    specs[spec.name] = spec


class Registry(Mapping):
    """{stream name: Stream}, in registration order: the built-ins, then `$ATC_STREAMS`, then
    `register`ed ones. Loaded on first use, so importing this module imports no stream."""

    def __init__(self) -> None:
        self._specs: dict[str, Stream] | None = None

    def _loaded(self) -> dict[str, Stream]:
        if self._specs is None:  # all or nothing: a spec that fails to import fails every use
            specs: dict[str, Stream] = {}
            plugins = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
            for module in (*BUILTIN, *plugins):
                _add(specs, importlib.import_module(module).SPEC)
            self._specs = specs
        return self._specs

    def register(self, spec: Stream) -> None:
        _add(self._loaded(), spec)

    def unregister(self, name: str) -> None:
        self._loaded().pop(name, None)

    def __getitem__(self, name: str) -> Stream:
        return self._loaded()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._loaded()))

    def __len__(self) -> int:
        return len(self._loaded())

    def by_kind(self, kind: str) -> Stream:
        """The stream whose data is of `kind`; ValueError naming the kinds there are."""
        for spec in self.values():
            if spec.kind == kind:
                return spec
        raise ValueError(f"data kind {kind!r}: expected one of "
                         f"{', '.join(s.kind for s in self.values())}")

    def version(self) -> tuple:
        """Changes whenever the set of specs does (for caches built from them)."""
        return tuple((name, id(spec)) for name, spec in self._loaded().items())


STREAMS = Registry()


def plan(scoring: bool = False) -> list[Stage]:
    """The stages of a training run, or of a scoring run: data preparation, each stream's
    stages, then the output checks and the index."""
    shared = [Stage("validate_outputs", "core.output_checks:validate_outputs"),
              Stage("publish", "core.publish:publish")]
    prepare = "core.scoring_runs:prepare_data" if scoring else "core.runner:prepare_data"
    own = [st for s in STREAMS.values() for st in (s.scoring_stages if scoring else s.stages)]
    return [Stage("prepare_data", prepare), *own, *shared]


def stage_names(scoring: bool = False) -> list[str]:
    return [s.name for s in plan(scoring)]


def path_keys() -> tuple[str, ...]:
    """Every stream's `pipeline` keys that name files or folders."""
    return tuple(o.key for s in STREAMS.values() for o in s.data)
