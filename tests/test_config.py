"""Tests of core/config.py and configs/*.yaml: defaults, typed dotted overrides, presets, the
errors' messages (they must name the dotted key and what is allowed), cross-field checks, the
run.yaml round trip, and YAML files read from a config folder."""
from __future__ import annotations

import shutil

import pytest
import yaml

from core.config import (CONFIG_DIR, RunConfig, Section, TrainConfig, defaults, load_config,
                         number_field, parse_override, presets, read_config, run_config_model,
                         save_config)
from core.errors import ConfigError
from core.streams import STREAMS, path_keys


def config_error(overrides, **kwargs) -> str:
    """The message of the ConfigError that `load_config(overrides)` raises."""
    with pytest.raises(ConfigError) as e:
        load_config(overrides, **kwargs)
    return str(e.value)


@pytest.fixture
def config_dir(tmp_path):
    """A private copy of configs/ that a test may edit."""
    out = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, out)
    return out


# ---------------------------------------------------------------- defaults


def test_defaults_load_and_match_the_yaml_files():
    cfg = load_config()
    assert isinstance(cfg, RunConfig)
    raw = yaml.safe_load((CONFIG_DIR / "patchtst.yaml").read_text())
    assert cfg.patchtst.preset == "default"
    assert cfg.patchtst.data.window == raw["data"]["window"] == 100
    assert cfg.patchtst.model.patch_len == raw["model"]["patch_len"]
    assert cfg.patchtst.train.lr == raw["train"]["lr"]
    assert cfg.patchtst.score.mode == raw["score"]["mode"]
    assert cfg.pipeline.device == "auto"
    assert cfg.pipeline.ts_data is None and cfg.pipeline.seed == 0


def sections(model=None):
    """Every section model of the config tree (the registered streams'), RunConfig first."""
    model = model or run_config_model()
    yield model
    for f in model.model_fields.values():
        if isinstance(f.annotation, type) and issubclass(f.annotation, Section):
            yield from sections(f.annotation)


def test_the_yaml_files_are_the_only_defaults(config_dir):
    """No field has a default in code, so the YAML files and the code cannot drift apart: a key
    a file leaves out is an error naming it."""
    optional = {(model.__name__, name) for model in sections()
                for name, f in model.model_fields.items() if not f.is_required()}
    # a stream's data keys are the one exception: null unless given (no data, no stream)
    assert optional == {("PipelineConfig", key) for key in path_keys()}
    path = config_dir / "pipeline.yaml"
    path.write_text(path.read_text().replace("nproc: 0", ""))
    msg = config_error((), config_dir=config_dir)
    assert msg.startswith("pipeline.nproc:") and "missing" in msg
    assert defaults() == load_config()


def test_presets_lists_default_first():
    names = presets("patchtst")
    assert names[0] == "default"
    assert {"tiny", "fast"} <= set(names)


# ---------------------------------------------------------------- typed overrides


@pytest.mark.parametrize("text, key, value, tp", [
    ("patchtst.train.epochs=5", "patchtst.train.epochs", 5, int),
    ("patchtst.train.lr=3e-4", "patchtst.train.lr", 3e-4, float),
    ("patchtst.train.lr = 2", "patchtst.train.lr", 2.0, float),
    ("pipeline.ts_data=data/x", "pipeline.ts_data", "data/x", str),
    ("pipeline.ts_data=null", "pipeline.ts_data", None, type(None)),
    ("pipeline.seed=None", "pipeline.seed", None, type(None)),
    ("pipeline.seed=7", "pipeline.seed", 7, int),
    ("pipeline.name=a=b", "pipeline.name", "a=b", str),
])
def test_parse_override_types_by_field(text, key, value, tp):
    k, v = parse_override(text)
    assert k == key and v == value and type(v) is tp


@pytest.mark.parametrize("raw, expected", [
    ("true", True), ("True", True), ("1", True), ("yes", True),
    ("false", False), ("0", False), ("no", False)])
def test_parse_override_bool(raw, expected):
    key, value = parse_override(f"pipeline.compile={raw}")
    assert key == "pipeline.compile" and value is expected
    with pytest.raises(ConfigError, match=r"pipeline\.compile: expected bool, found 'maybe'"):
        parse_override("pipeline.compile=maybe")


def test_overrides_reach_the_config():
    cfg = load_config(["patchtst.train.epochs=2", "patchtst.model.dropout=0.1",
                       "pipeline.device=cpu", "pipeline.seed=null"])
    assert cfg.patchtst.train.epochs == 2 and isinstance(cfg.patchtst.train.epochs, int)
    assert cfg.patchtst.model.dropout == 0.1
    assert cfg.pipeline.device == "cpu" and cfg.pipeline.seed is None
    # untouched keys keep their defaults
    assert cfg.patchtst.train.batch_size == 64


def test_overrides_as_a_dict_as_the_form_sends_them():
    cfg = load_config({"patchtst.train.epochs": "4", "patchtst.train.lr": 0.01,
                       "pipeline.seed": None})
    assert cfg.patchtst.train.epochs == 4 and cfg.patchtst.train.lr == 0.01
    assert cfg.pipeline.seed is None


def test_int_given_to_a_float_field_becomes_float():
    cfg = load_config({"patchtst.train.lr": 1})
    assert cfg.patchtst.train.lr == 1.0 and type(cfg.patchtst.train.lr) is float


# ---------------------------------------------------------------- presets


def test_preset_applies_over_defaults():
    cfg = load_config(["patchtst.preset=tiny"])
    raw = yaml.safe_load((CONFIG_DIR / "patchtst.yaml").read_text())["presets"]["tiny"]
    assert cfg.patchtst.preset == "tiny"
    assert cfg.patchtst.data.window == raw["data"]["window"] == 40
    assert cfg.patchtst.model.d_model == raw["model"]["d_model"]
    assert cfg.patchtst.train.max_steps_per_epoch == raw["train"]["max_steps_per_epoch"]
    # keys the preset does not name keep the file's defaults
    assert cfg.patchtst.train.lr == 1e-3
    assert cfg.patchtst.data.val_fraction == 0.2


def test_user_override_wins_over_the_preset_whatever_the_order():
    for order in (["patchtst.preset=tiny", "patchtst.model.d_model=64"],
                  ["patchtst.model.d_model=64", "patchtst.preset=tiny"]):
        cfg = load_config(order)
        assert cfg.patchtst.model.d_model == 64  # user
        assert cfg.patchtst.model.n_layers == 2  # preset
        assert cfg.patchtst.data.window == 40  # preset


def test_preset_named_in_the_yaml_file_is_applied(config_dir):
    path = config_dir / "patchtst.yaml"
    path.write_text(path.read_text().replace("preset: default", "preset: fast"))
    cfg = load_config(config_dir=config_dir)
    assert cfg.patchtst.preset == "fast" and cfg.patchtst.model.d_model == 64


def test_unknown_preset_names_the_key_and_the_choices():
    msg = config_error(["patchtst.preset=huge"])
    assert "patchtst.preset" in msg and "'huge'" in msg
    for name in ("default", "tiny", "fast"):
        assert name in msg


# ---------------------------------------------------------------- errors


def test_unknown_key_lists_allowed_keys():
    msg = config_error(["patchtst.train.epoch=5"])
    assert "patchtst.train.epoch" in msg and "unknown key" in msg
    allowed = list(TrainConfig.model_fields)
    for name in allowed:
        assert name in msg


def test_unknown_section_lists_allowed_sections():
    msg = config_error(["patchtsx.train.epochs=5"])
    assert "patchtsx" in msg and "pipeline" in msg and "patchtst" in msg


@pytest.mark.parametrize("override, found", [
    ("patchtst.train.epochs=five", "'five'"),
    ("patchtst.train.epochs=2.5", "'2.5'"),
    ("patchtst.train.lr=fast", "'fast'"),
    ("pipeline.seed=abc", "'abc'"),
])
def test_wrong_type_names_key_and_expected_type(override, found):
    key = override.split("=")[0]
    msg = config_error([override])
    assert msg.startswith(key + ":")
    assert "expected" in msg and found in msg


def test_wrong_type_in_a_dict_override():
    msg = config_error({"patchtst.train.epochs": 2.5})
    assert msg.startswith("patchtst.train.epochs:") and "expected int" in msg


def test_null_for_a_non_optional_field_is_an_error():
    msg = config_error({"patchtst.train.epochs": None})
    assert msg.startswith("patchtst.train.epochs:") and "null" in msg


@pytest.mark.parametrize("override, bound", [
    ("patchtst.train.epochs=0", ">= 1"),
    ("patchtst.data.val_fraction=0.6", "<= 0.5"),
    ("patchtst.data.val_fraction=0", "> 0.0"),
    ("patchtst.train.lr=0", "> 0.0"),
    ("patchtst.model.dropout=-0.1", ">= 0.0"),
    ("patchtst.score.threshold_percentile=100.5", "<= 100.0"),
])
def test_out_of_range_names_key_and_bound(override, bound):
    key, value = override.split("=")
    msg = config_error([override])
    assert msg.startswith(key + ":")
    assert bound in msg


@pytest.mark.parametrize("override", [
    "patchtst.train.lr=nan", "patchtst.data.val_fraction=nan", "patchtst.model.mask_ratio=nan",
    "patchtst.model.dropout=nan", "patchtst.train.lr=inf"])
def test_non_finite_float_is_out_of_range(override):
    """NaN compares False with every bound, so a plain `<`/`>` check lets it through; a NaN
    learning rate or validation fraction only fails later, far from the config."""
    key = override.split("=")[0]
    msg = config_error([override])
    assert msg.startswith(key + ":")


def test_bounds_are_inclusive_where_documented():
    cfg = load_config(["patchtst.data.val_fraction=0.5", "patchtst.train.patience=0",
                       "patchtst.score.threshold_percentile=100"])
    assert cfg.patchtst.data.val_fraction == 0.5 and cfg.patchtst.train.patience == 0


def test_bad_choice_lists_the_choices():
    msg = config_error(["pipeline.device=tpu"])
    assert msg.startswith("pipeline.device:")
    assert "'tpu'" in msg and "auto" in msg and "cpu" in msg and "cuda" in msg
    msg = config_error(["patchtst.score.mode=half"])
    assert msg.startswith("patchtst.score.mode:") and "masked" in msg and "full" in msg


def test_section_as_value_is_an_error():
    msg = config_error(["patchtst.train=5"])
    assert "patchtst.train" in msg and "section" in msg and "epochs" in msg


def test_key_below_a_value_is_an_error():
    msg = config_error(["pipeline.device.kind=cpu"])
    assert "pipeline.device" in msg and "not a section" in msg


def test_missing_equals_sign():
    msg = config_error(["patchtst.train.epochs"])
    assert "patchtst.train.epochs" in msg and "=" in msg


def test_window_must_be_a_multiple_of_patch_len():
    msg = config_error(["patchtst.data.window=95"])
    assert "patchtst.data.window" in msg and "patchtst.model.patch_len" in msg
    assert "95" in msg and "10" in msg


def test_window_must_hold_two_patches():
    msg = config_error(["patchtst.data.window=10"])
    assert "patchtst.data.window" in msg and "2 patches" in msg


def test_d_model_must_be_a_multiple_of_n_heads():
    msg = config_error(["patchtst.model.d_model=30", "patchtst.model.n_heads=4"])
    assert "patchtst.model.d_model" in msg and "patchtst.model.n_heads" in msg
    assert "30" in msg and "4" in msg


def test_decoder_dim_must_be_a_multiple_of_decoder_heads():
    msg = config_error(["patchtst.model.decoder_dim=30", "patchtst.model.decoder_heads=4"])
    assert "patchtst.model.decoder_dim (30)" in msg and "patchtst.model.decoder_heads (4)" in msg


def test_the_long_time_scale_must_be_longer_than_the_short_one():
    msg = config_error(["patchtst.score.smooth_long=10", "patchtst.score.smooth=10"])
    assert "patchtst.score.smooth_long (10)" in msg and "patchtst.score.smooth (10)" in msg
    assert "0 (one time scale)" in msg
    assert load_config(["patchtst.score.smooth_long=0"]).patchtst.score.smooth_long == 0


# ---------------------------------------------------------------- run.yaml


def test_save_then_read_config_round_trip(tmp_path):
    cfg = load_config(["patchtst.preset=tiny", "patchtst.train.lr=0.0005",
                       "pipeline.ts_data=some/folder", "pipeline.seed=null",
                       "pipeline.name=first try"])
    path = tmp_path / "run.yaml"
    save_config(cfg, path)
    again = read_config(path)
    assert again == cfg
    assert again.patchtst.preset == "tiny" and again.pipeline.seed is None
    assert [p.name for p in tmp_path.iterdir()] == ["run.yaml"]  # no temp file left


def test_read_config_checks_the_file(tmp_path):
    cfg = load_config()
    path = tmp_path / "run.yaml"
    save_config(cfg, path)
    tree = yaml.safe_load(path.read_text())
    tree["patchtst"]["model"]["n_heads"] = 7
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match="patchtst.model.n_heads"):
        read_config(path)


# ---------------------------------------------------------------- YAML files


def test_unknown_key_in_a_yaml_file_names_the_dotted_key(config_dir):
    path = config_dir / "patchtst.yaml"
    path.write_text(path.read_text().replace("  epochs: 3", "  epochs: 3\n  epochz: 3"))
    msg = config_error((), config_dir=config_dir)
    assert "patchtst.train.epochz" in msg and "unknown key" in msg and "epochs" in msg


def test_unknown_key_inside_a_yaml_preset_names_the_key(config_dir):
    path = config_dir / "patchtst.yaml"
    path.write_text(path.read_text().replace("train: {epochs: 1}", "train: {epoks: 1}"))
    msg = config_error(["patchtst.preset=fast"], config_dir=config_dir)
    assert "patchtst.train.epoks" in msg


@pytest.mark.parametrize("file, old, new, key, found", [
    ("pipeline.yaml", "seed: 0", "seed: zero", "pipeline.seed", "'zero'"),
    ("patchtst.yaml", "epochs: 3", "epochs: 3.0", "patchtst.train.epochs", "3.0"),
    ("patchtst.yaml", "epochs: 3", "epochs: true", "patchtst.train.epochs", "True"),
    ("patchtst.yaml", "lr: 0.001", "lr: yes", "patchtst.train.lr", "True"),
    ("patchtst.yaml", "mode: masked", "mode: 3", "patchtst.score.mode", "3"),
])
def test_wrong_type_in_a_yaml_file_names_the_key(config_dir, file, old, new, key, found):
    path = config_dir / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    msg = config_error((), config_dir=config_dir)
    assert msg.startswith(key + ":") and "expected" in msg and found in msg


def test_invalid_yaml_names_the_file(config_dir):
    path = config_dir / "patchtst.yaml"
    path.write_text("data: {window: [100\n")
    msg = config_error((), config_dir=config_dir)
    assert str(path) in msg and "YAML" in msg


def test_yaml_file_that_is_not_a_mapping_names_the_file(config_dir):
    path = config_dir / "pipeline.yaml"
    path.write_text("- a\n- b\n")
    msg = config_error((), config_dir=config_dir)
    assert str(path) in msg and "mapping" in msg


def test_model_config_defaults_are_consistent():
    m = defaults("patchtst.model")
    assert m.d_model % m.n_heads == 0


def test_the_train_form_reads_type_bounds_and_help_from_the_schema():
    ratio = number_field("patchtst.model.mask_ratio")
    assert (ratio.kind, ratio.low, ratio.high) == (float, 0.0, 0.9)  # gt=0.0, le=0.9
    assert ratio.help == "share of patches hidden in training"
    epochs = number_field("patchtst.train.epochs")
    assert (epochs.kind, epochs.low, epochs.high) == (int, 1, None)
    assert number_field("swinmae.train.lr").low == 0.0
    assert number_field("patchtst.model.d_model").help == ""  # not on the form: no help needed


def test_every_train_form_field_is_a_described_number_in_the_schema():
    for stream in STREAMS.values():
        for f in stream.form_fields:
            schema = number_field(f"{stream.name}.{f.key}")
            assert schema.kind in (int, float) and schema.help, (stream.name, f.key)
