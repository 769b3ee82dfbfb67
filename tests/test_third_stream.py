"""A third stream is a package plus a registration: the toy stream in tests/toy_stream/ (its
spec, config YAML, data reader, stages and Results view), registered here and nowhere else,
shows up in the config, the CLI, the stage list, a real run, the runs index and the Data, Train,
Results and Runs pages, without any other module knowing about it."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO, only_run_dir, run_cli
from core.config import load_config
from core.errors import ConfigError
from core.pipeline import build_parser
from core.streams import PLUGINS_ENV, STREAMS, stage_names
from tests.toy_stream.spec import SPEC

VALUES = [0.1, -0.2, 0.05, 0.0, 0.15, -0.1, 9.0, 0.2, 8.5, -0.05]  # two far levels
LABELS = [0, 0, 0, 0, 0, 0, 1, 0, 1, 0]


@pytest.fixture
def toy(monkeypatch):
    """The toy stream registered: in this process, and (through $ATC_STREAMS) in every
    pipeline process a test starts."""
    monkeypatch.setenv(PLUGINS_ENV, "tests.toy_stream.spec")
    STREAMS.register(SPEC)
    yield SPEC
    STREAMS.unregister(SPEC.name)


@pytest.fixture
def levels(tmp_path: Path) -> Path:
    folder = tmp_path / "levels"
    folder.mkdir()
    (folder / "values.txt").write_text("\n".join(map(str, VALUES)))
    (folder / "labels.txt").write_text("\n".join(map(str, LABELS)))
    return folder


def test_the_config_cli_and_stage_list_take_it_from_its_spec(toy):
    cfg = load_config(["pipeline.toy_data=/x", "toy.preset=strict"])
    assert cfg.toy.train.epochs == 2 and cfg.toy.score.threshold == 5.0  # its YAML, its preset
    assert cfg.pipeline.toy_data == "/x" and cfg.pipeline.ts_data is None
    with pytest.raises(ConfigError, match=r"toy\.train\.epochs: expected a value >= 1"):
        load_config(["toy.train.epochs=0"])
    args = build_parser().parse_args(["run", "--toy-data", "/x"])
    assert args.toy_data == "/x"
    names = stage_names()
    assert names.index("train_toy") < names.index("score_toy") < names.index("validate_outputs")
    STREAMS.unregister(toy.name)
    assert "train_toy" not in stage_names()
    with pytest.raises(ConfigError, match="unknown key 'toy'"):
        load_config(["toy.train.epochs=3"])


@pytest.mark.slow
def test_a_run_of_it_ends_done_in_the_index_and_on_every_page(toy, levels, tmp_path,
                                                              monkeypatch):
    ws = tmp_path / "ws"
    proc = run_cli("run", "--toy-data", str(levels), "--set", "toy.train.epochs=3",
                   "--workdir", str(ws))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = only_run_dir(ws)
    assert (run_dir / "toy" / "model.json").is_file()
    entry = json.loads((ws / "runs" / "index.json").read_text())[0]
    assert entry["status"] == "done" and entry["streams"] == ["toy"]
    assert entry["metrics"] == {"toy": {"hit_rate": 1.0}}  # both far levels flagged at 3 std
    assert entry["params"]["toy.epochs"] == 3 and entry["params"]["toy.threshold"] == 3.0
    validation = json.loads((run_dir / "validation.json").read_text())
    assert "toy/scoring.json has one score per value" in [c["check"] for c in validation["checks"]]

    monkeypatch.setenv("ATC_WORKDIR", str(ws))
    data = page("data.py")
    section = data.container(key="data_levels")
    assert section.header[0].value == "Levels (toy)"
    section.file_uploader(key="data_levels_files").set_value(
        [("values.txt", (levels / "values.txt").read_bytes(), "text/plain")])
    data.run()
    assert not data.exception
    stored = ws / "uploads" / "levels" / "values"
    assert (stored / "values.txt").read_bytes() == (levels / "values.txt").read_bytes()
    assert any("values 10" in s.value for s in data.success)

    train = page("train.py")
    assert "values" in train.selectbox(key="train_data_toy").options
    epochs = train.number_input(key="train_toy_train_epochs")
    assert epochs.value == 2 and epochs.min == 1  # its YAML's default, its schema's bound
    assert train.selectbox(key="train_preset_toy").options == ["default", "strict"]

    results = page("results.py", results_run=run_dir.name)
    assert "Levels (toy)" in [s.value for s in results.subheader]
    assert any("2 of 10 values flagged; hit rate 1.0" in m.value for m in results.markdown)

    runs = page("runs.py")
    table = runs.dataframe[0].value
    assert table.loc[run_dir.name, "toy hit rate"] == "1.000"


def page(name: str, **state) -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / name), default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_stream_cannot_take_another_streams_kind_or_data_key(toy):
    with pytest.raises(ValueError, match="taken by 'patchtst'"):
        STREAMS.register(replace(SPEC, name="toy2", kind="timeseries"))
    with pytest.raises(ValueError, match="taken by 'swinmae'"):
        STREAMS.register(replace(SPEC, name="toy2", data=STREAMS["swinmae"].data))
    assert STREAMS.by_kind("levels") is SPEC
    with pytest.raises(ValueError, match="data kind 'audio': expected one of timeseries, "
                                         "images, levels"):
        STREAMS.by_kind("audio")


def test_score_takes_only_the_data_options_of_streams_that_score(toy):
    parser = build_parser()
    assert parser.parse_args(["score", "RUN", "--ts-data", "x"]).ts_data == "x"
    with pytest.raises(SystemExit):  # argparse: unrecognized arguments
        parser.parse_args(["score", "RUN", "--toy-data", "x"])
