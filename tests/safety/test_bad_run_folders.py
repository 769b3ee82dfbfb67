"""Bad run folders and a bad index (issue 13, items 3, 4, 11): one unreadable run is listed as
`unreadable` with its reason and never hides the others; an index.json of the wrong shape is
rebuilt; nothing a run folder holds can blow up the index."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO, run_cli
from core.config import load_config
from core.fileio import write_json
from core.progress import initial_progress
from core.run_files import RunFiles
from core.runs import INDEX_FILE, MAX_ENTRY_BYTES, RunIndex, create_run, runs_dir, workspace

STAGES = ["prepare_data", "train_patchtst"]
GOOD_NAME = "the good run"

# what a bad run folder can hold instead of a proper run.yaml
BAD_RUN_YAML = {
    "not_utf8": b"pipeline:\n  name: caf\xe9\n",
    "pipeline_a_list": b"pipeline: [1, 2]\npatchtst: {}\n",
    "top_level_a_string": b"just text\n",
    "alias_bomb": b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                  b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\npipeline: {name: *c}\n",
    "section_values_odd": b"pipeline: {ts_data: d, name: [1, 2]}\npatchtst: {train: 5}\n",
}


@pytest.fixture
def ws(tmp_path):
    return workspace(tmp_path / "ws")


def good_run(ws: Path) -> Path:
    run = create_run(ws, load_config({"pipeline.ts_data": "d", "pipeline.name": GOOD_NAME}))
    write_json(run / RunFiles.progress, initial_progress(run.name, STAGES, "stopped")
               | {"finished": time.time()})
    return run


def bad_run(ws: Path, content: bytes, run_id: str = "20200101-000000-bad0") -> Path:
    run = runs_dir(ws) / run_id
    run.mkdir()
    (run / "run.yaml").write_bytes(content)
    write_json(run / RunFiles.progress, initial_progress(run.name, STAGES, "stopped"))
    return run


@pytest.mark.parametrize("kind", sorted(BAD_RUN_YAML))
def test_a_bad_run_yaml_is_listed_unreadable_beside_the_others(ws, kind):
    good = good_run(ws)
    bad = bad_run(ws, BAD_RUN_YAML[kind])
    entries = {e["run_id"]: e for e in RunIndex(ws).rebuild()}
    assert entries[good.name]["name"] == GOOD_NAME
    if kind == "section_values_odd":  # readable; odd values are shown as text, not crashed on
        assert entries[bad.name]["status"] == "stopped"
        return
    assert entries[bad.name]["status"] == "unreadable"
    assert "run.yaml" in entries[bad.name]["error"]
    assert len((runs_dir(ws) / INDEX_FILE).read_bytes()) < 20_000


def test_the_cli_lists_rebuilds_and_refuses_to_resume_a_bad_run(ws):
    good = good_run(ws)
    bad = bad_run(ws, BAD_RUN_YAML["not_utf8"])
    res = run_cli("index", "--rebuild", "--workdir", str(ws))
    assert res.returncode == 0, res.stderr
    assert good.name in res.stdout and f"{bad.name}  unreadable" in res.stdout
    res = run_cli("resume", str(bad))
    assert res.returncode == 2 and "UTF-8" in res.stderr and "Traceback" not in res.stderr
    assert json.loads((bad / RunFiles.progress).read_text())["status"] == "stopped"  # untouched


@pytest.mark.parametrize("content", ["[1, 2]", '{"a": 1}', '[{"no_run_id": 1}]', "null"])
def test_an_index_of_the_wrong_shape_is_rebuilt(ws, content):
    good = good_run(ws)
    (runs_dir(ws) / INDEX_FILE).write_text(content)
    assert [e["run_id"] for e in RunIndex(ws).entries()] == [good.name]
    (runs_dir(ws) / INDEX_FILE).write_text(content)
    other = good_run(ws)
    RunIndex(ws).update(other)  # what every new run does
    assert sorted(e["run_id"] for e in RunIndex(ws).entries()) == sorted([good.name, other.name])


def test_odd_progress_and_metrics_files_do_not_break_an_entry(ws):
    run = good_run(ws)
    (run / RunFiles.progress).write_text('["not", "a", "dict"]')
    (run / "patchtst").mkdir()
    (run / "patchtst" / "metrics.json").write_text("[1, 2]")
    entry = RunIndex(ws).update(run)
    assert entry["status"] == "unknown" and entry["metrics"] == {"patchtst": {}}


def test_an_index_entry_is_capped_in_size(ws):
    run = good_run(ws)
    (run / "run.yaml").write_text((run / "run.yaml").read_text().replace(
        "name: the good run", "name: " + "x" * (MAX_ENTRY_BYTES * 2)))
    entry = RunIndex(ws).update(run)
    assert len(json.dumps(entry)) < MAX_ENTRY_BYTES
    assert entry["name"] == "x" * 200  # one text field is cut, not the entry refused


@pytest.mark.parametrize("page", ["app.py", "pages/runs.py", "pages/train.py",
                                  "pages/results.py"])  # app.py: Home (its page links need it)
def test_pages_do_not_raise_when_index_json_is_missing(ws, monkeypatch, page):
    monkeypatch.setenv("ATC_WORKDIR", str(ws))
    good_run(ws)
    bad_run(ws, BAD_RUN_YAML["pipeline_a_list"])
    (runs_dir(ws) / INDEX_FILE).unlink(missing_ok=True)
    at = AppTest.from_file(str(REPO / page), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert (runs_dir(ws) / INDEX_FILE).exists()  # rebuilt, the bad run listed in it
    assert {e["status"] for e in RunIndex(ws).entries()} == {"stopped", "unreadable"}
