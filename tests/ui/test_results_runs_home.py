"""The Results, Runs and Home pages under AppTest, on a workspace holding one finished tiny run
(made once per module by the real pipeline) plus copies of it where a test needs more runs."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO, TINY, only_run_dir, run_cli, tiny_dataset
from core import results
from core.progress import process_start
from core.runs import RunIndex
from core.streams import STREAMS

PAGES = REPO / "pages"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The run folder of a finished tiny run in its own workspace."""
    root = tmp_path_factory.mktemp("ui-results")
    data = tiny_dataset.__wrapped__(root)  # the fixture's body: a module-scoped copy of it
    proc = run_cli("run", "--ts-data", str(data), *TINY, "--workdir", str(root / "ws"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return only_run_dir(root / "ws")


@pytest.fixture
def ws(finished, monkeypatch) -> Path:
    path = finished.parent.parent
    monkeypatch.setenv("ATC_WORKDIR", str(path))
    return path


def copy_run(ws: Path, source: Path, run_id: str, **progress) -> Path:
    """A copy of `source` named `run_id`, with progress.json fields replaced, in the index."""
    copy = ws / "runs" / run_id
    shutil.copytree(source, copy)
    state = json.loads((copy / "progress.json").read_text()) | {"run_id": run_id, **progress}
    (copy / "progress.json").write_text(json.dumps(state))
    RunIndex(ws).update(copy)
    return copy


def page(name: str, **state) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_results_page_chart_and_live_threshold(ws, finished):
    at = page("results.py")
    assert at.selectbox(key="results_pick").value == finished.name
    assert len(at.get("plotly_chart")) == 2  # the signal over the score; the contributions
    assert "Channel contributions over time" in [e.label for e in at.expander]
    assert "AUPRC" in at.markdown[0].value  # the sentence beside the baselines
    assert at.dataframe[0].value.index.tolist() == [
        "model", "reconstruction", "top_channels", "pca", "random", "model · point-wise",
        "reconstruction · point-wise", "top_channels · point-wise", "pca · point-wise",
        "random · point-wise"]
    assert any("moving mean" in c.value for c in at.caption)  # the smoothing is named
    assert {d.proto.label for d in at.get("download_button")} == {
        "Download scores.csv", "Download model checkpoint (best.pt)",
        "Download the model export (zip)"}
    key = f"results_{finished.name}_patchtst_threshold"
    slider, typed = at.select_slider(key=key), at.number_input(key=f"{key}_typed")
    run_threshold = json.loads((finished / "patchtst" / "scoring.json").read_text())["threshold"]
    assert slider.value == pytest.approx(run_threshold) and typed.value == pytest.approx(run_threshold)
    scores = pd.read_csv(finished / "patchtst" / "scores.csv")["score"].to_numpy()
    grid = results.threshold_grid(scores, run_threshold)
    fifth = min(grid, key=lambda t: abs(results.flagged_share(scores, t) - 0.2))
    before, f1_before = metric(at, "Flagged rows"), metric(at, "F1")
    slider.set_value(fifth).run()
    assert not at.exception, at.exception
    assert metric(at, "Flagged rows") != before and metric(at, "F1") != f1_before
    assert abs(float(metric(at, "Share flagged").rstrip("%")) - 20.0) < 0.5  # one row is 0.25 %
    assert at.number_input(key=f"{key}_typed").value == pytest.approx(fifth)
    at.number_input(key=f"{key}_typed").set_value(1e9).run()  # a typed threshold above all
    assert not at.exception, at.exception
    assert metric(at, "Flagged rows") == "0"
    assert at.select_slider(key=key).value == pytest.approx(grid[-1])
    channels = at.multiselect(key=f"results_{finished.name}_patchtst_channels")
    assert channels.value[0] == "b"  # the spiked channel contributes most


def test_results_page_opens_the_run_other_pages_ask_for(ws, finished):
    older = copy_run(ws, finished, "20000101-000000-0001")
    try:
        at = page("results.py", results_run=older.name)
        assert at.selectbox(key="results_pick").value == older.name
        at.selectbox(key="results_pick").set_value(finished.name).run()
        assert not at.exception and at.session_state["results_run"] == finished.name
    finally:
        shutil.rmtree(older)
        RunIndex(ws).remove(older.name)


def test_results_page_without_labels_or_signal(ws, finished):
    bare = copy_run(ws, finished, "20000101-000000-0004")
    try:
        scores = bare / "patchtst" / "scores.csv"
        scores.write_text("\n".join(",".join(line.split(",")[:3])
                                    for line in scores.read_text().splitlines()) + "\n")
        (bare / "patchtst" / "metrics.json").unlink()
        scoring = json.loads((bare / "patchtst" / "scoring.json").read_text())
        (bare / "patchtst" / "scoring.json").write_text(
            json.dumps(scoring | {"scored_file": str(bare / "gone.csv")}))
        at = page("results.py", results_run=bare.name)
        assert "no labels" in at.info[0].value and "gone" in at.warning[0].value
        assert [m.label for m in at.metric] == ["Flagged rows", "Share flagged",
                                                "Flagged segments"]
        assert len(at.get("plotly_chart")) == 2  # the score, the contributions: no signal needed
    finally:
        shutil.rmtree(bare)
        RunIndex(ws).remove(bare.name)


def test_runs_page_lists_compares_and_deletes(ws, finished):
    copy = copy_run(ws, finished, "20000101-000000-0002")
    at = page("runs.py")
    table = at.dataframe[0].value
    assert {finished.name, copy.name} <= set(table.index)
    assert table.loc[finished.name, "status"] == "done"
    assert len(at.get("plotly_chart")) == 1  # the two newest runs, compared by default
    at.selectbox(key="runs_action_pick").set_value(copy.name).run()
    at.button(key="runs_delete").click().run()
    assert copy.name in at.warning[0].value  # the confirmation, before anything is deleted
    assert copy.exists()
    at.button(key="runs_delete_confirm").click().run()
    assert not at.exception, at.exception
    assert not copy.exists()
    assert at.success[0].value == f"Deleted run {copy.name}."
    assert copy.name not in at.dataframe[0].value.index


def test_runs_page_compares_two_runs_readably(ws, finished):
    named = copy_run(ws, finished, "20000101-000000-0005")
    (named / "run.yaml").write_text((named / "run.yaml").read_text().replace(
        "name: ''", "name: second try", 1))
    (named / "patchtst" / "metrics.json").unlink()  # no metrics: its cells are empty
    RunIndex(ws).update(named)
    try:
        at = page("runs.py", runs_compare=[finished.name, named.name])
        assert not at.get("doc_string"), "a bare expression drew a docstring"
        names = at.dataframe[0].value["name"].tolist()
        table = at.dataframe[0].value
        assert names[table.index.tolist().index(named.name)] == "second try"
        assert names[table.index.tolist().index(finished.name)] == "–"
        metrics = at.dataframe[1].value  # text: a missing number would be drawn as "None"
        assert (metrics.iloc[:, 1] == "–").all() and (metrics.iloc[:, 0] != "–").all()
        assert not (metrics == "None").any().any()
        diff = at.dataframe[2].value
        assert diff.loc["pipeline.name"].tolist() == ["–", "second try"]
        assert not any(k.startswith("swinmae.") for k in diff.index)  # no images trained
        loss = at.get("plotly_chart")[0].proto.spec
        assert STREAMS["patchtst"].title in loss
    finally:
        shutil.rmtree(named)
        RunIndex(ws).remove(named.name)


def test_runs_page_refuses_to_delete_a_running_run(ws, finished):
    running = copy_run(ws, finished, "20000101-000000-0003", status="running",
                       pid=os.getpid(), pid_start=process_start(os.getpid()),
                       heartbeat=time.time(), finished=None)
    try:
        at = page("runs.py")
        at.selectbox(key="runs_action_pick").set_value(running.name).run()
        at.button(key="runs_delete").click().run()
        assert not at.exception, at.exception
        assert "running" in at.error[0].value and running.exists()
        assert not at.warning  # no confirmation offered
    finally:
        shutil.rmtree(running)
        RunIndex(ws).remove(running.name)


def test_home_shows_device_and_latest_run(ws, finished):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()  # page links need
    assert not at.exception, at.exception  # the router: Home is its default page
    import torch  # the test may import it; the pages only do so inside a cached function
    assert metric(at, "torch") == torch.__version__
    assert metric(at, "CUDA available") in ("yes", "no")
    assert finished.name in at.dataframe[-1].value.index
    assert any("No training job running" in c.value for c in at.caption)


def test_home_lists_gpus(ws, monkeypatch):
    import streamlit as st
    import core.devices
    fake = {"torch": "9.9.9", "cuda_available": True, "cuda_version": "12.8", "cpu_threads": 16,
            "nvml": True,
            "gpus": [{"index": 0, "name": "NVIDIA H200", "memory_total_gb": 139.8,
                      "memory_used_gb": 12.5, "utilization_pct": 87, "bf16": True}]}
    monkeypatch.setattr(core.devices, "device_facts", lambda: fake)
    st.cache_resource.clear()  # the pages cache the facts once per server
    try:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
        assert not at.exception, at.exception
        assert metric(at, "CUDA available") == "yes" and metric(at, "CUDA version") == "12.8"
        gpus = at.dataframe[0].value
        assert gpus["GPU"].tolist() == ["NVIDIA H200"] and gpus["memory (GB)"].tolist() == [139.8]
        assert gpus["in use (GB)"].tolist() == [12.5] and gpus["utilisation (%)"].tolist() == [87]
    finally:
        st.cache_resource.clear()


@pytest.mark.parametrize("units, shown", [
    ("AMX", "AMX bf16 units: precision `auto` trains Images (Swin MAE) in bf16, other streams "
            "in fp32"),
    (None, "no bf16 units: precision `auto` stays fp32")])
def test_home_says_whether_the_cpu_has_bf16_units(ws, monkeypatch, units, shown):
    import streamlit as st
    import core.devices
    fake = {"torch": "9.9.9", "cuda_available": False, "cuda_version": None, "cpu_threads": 2,
            "nvml": False, "gpus": [], "cpu_bf16": units}
    monkeypatch.setattr(core.devices, "device_facts", lambda: fake)
    st.cache_resource.clear()  # the pages cache the facts once per server
    try:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
        assert not at.exception, at.exception
        assert any(shown in c.value and "2 threads" in c.value for c in at.caption)
    finally:
        st.cache_resource.clear()


def test_pages_with_no_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("ATC_WORKDIR", str(tmp_path / "empty"))
    at = page("results.py")
    assert "No finished run yet" in at.info[0].value and not at.get("plotly_chart")
    assert "No runs yet" in page("runs.py").info[0].value
    home = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not home.exception and any(c.value == "No runs yet." for c in home.caption)
