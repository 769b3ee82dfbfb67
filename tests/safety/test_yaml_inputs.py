"""YAML the project reads back (issue 13, item 11): anchors and aliases are refused (a 2 KB
alias bomb once wrote a 290 MB index.json), as are oversized and non-UTF-8 files, each with a
ConfigError naming the file."""
from __future__ import annotations

import time

import pytest

from conftest import run_cli
from core import config
from core.config import ConfigError, load_config, read_config, read_yaml, save_config
from core.runs import RunIndex, create_run, workspace

BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
BOMB = "l0: &l0 [lol]\n" + BOMB + "pipeline: {name: *l9}\n"  # 9**9 strings once expanded


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 2048
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="anchors and aliases are not accepted") as e:
        read_yaml(path)
    assert time.perf_counter() - t0 < 1.0
    assert str(path) in str(e.value) and "line 1" in str(e.value)


@pytest.mark.parametrize("text", ["a: &x 1\nb: 2\n", "a: 1\nb: *x\n", "a: &x {k: 1}\nb: *x\n"])
def test_any_anchor_or_alias_is_refused(tmp_path, text):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match="anchor or alias"):
        read_yaml(tmp_path / "c.yaml")


def test_plain_yaml_still_reads(tmp_path):
    (tmp_path / "c.yaml").write_text("a: 1\nb: [x, '*not an alias*', '&neither']\nc: {d: null}\n")
    assert read_yaml(tmp_path / "c.yaml") == {"a": 1, "b": ["x", "*not an alias*", "&neither"],
                                              "c": {"d": None}}


def test_the_shipped_configs_and_a_saved_run_yaml_read_back(tmp_path):
    cfg = load_config(["patchtst.preset=tiny", "pipeline.ts_data=d"])
    save_config(cfg, tmp_path / "run.yaml")
    assert read_config(tmp_path / "run.yaml") == cfg


def test_an_oversized_yaml_is_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MAX_YAML_BYTES", 1000)
    (tmp_path / "big.yaml").write_text("a: " + "x" * 2000 + "\n")
    with pytest.raises(ConfigError, match="at most 1,000 bytes, found 2,004"):
        read_yaml(tmp_path / "big.yaml")


def test_a_non_utf8_yaml_is_a_config_error(tmp_path):
    (tmp_path / "c.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"expected UTF-8 text, found the byte 0xe9"):
        read_yaml(tmp_path / "c.yaml")


def test_a_run_with_an_alias_bomb_fails_cleanly_and_the_index_stays_small(tmp_path):
    ws = workspace(tmp_path / "ws")
    run = create_run(ws, load_config({"pipeline.ts_data": "d"}))
    (run / "run.yaml").write_text(BOMB)
    res = run_cli("run", str(run), "--dry-run")
    assert res.returncode == 2 and "anchors and aliases" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    entry = RunIndex(ws).update(run)
    assert entry["status"] == "unreadable"
    assert (ws / "runs" / "index.json").stat().st_size < 5000
