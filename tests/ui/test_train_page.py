"""The Train page under AppTest: choices and the merged config, a bad override, a real run
started from the page (Train disabled while it runs, `done` with the stage graph after), and
Stop. AppTest never fires `run_every`, so each `at.run()` stands for one refresh."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from conftest import REPO, wait_for
from core import jobs
from core.fileio import write_json
from core.progress import initial_progress
from core.runs import PROJECT_ROOT, RunIndex, new_run, workspace
from core.streams import plan

PAGE = str(REPO / "pages" / "train.py")
SAMPLE_TS = PROJECT_ROOT / "data" / "samples" / "timeseries"


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ATC_WORKDIR", str(tmp_path / "ws"))
    path = workspace()
    yield path
    for run in (path / "runs").iterdir():  # never leave a trainer behind a failed test
        if (run / "progress.json").exists() and \
                jobs.run_status(run)["status"] in jobs.LIVE_STATES:
            jobs.stop(run, grace_s=5)


def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def runs_of(ws: Path) -> list[Path]:
    return [p for p in (ws / "runs").iterdir() if p.is_dir()]


def markdown_text(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown)


def config_expander(at: AppTest):
    return next(e for e in at.expander if e.label.startswith("Runtime config"))


def plotly_charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def ended_run(ws: Path, status: str = "stopped", log: list[str] = (),
              device: str = "cuda:0 NVIDIA H200 NVL, bf16 × 4 processes", **overrides) -> Path:
    """A run that ended at its second stage, as the pipeline leaves it (run.yaml from the page's
    defaults plus `overrides`, progress.json, pipeline.log), indexed."""
    run = new_run(ws, {"pipeline.ts_data": str(SAMPLE_TS), **overrides})
    progress = initial_progress(run.name, [s.name for s in plan()], status, pid=None)
    progress["stages"][0].update(status="done", started=1.0, ended=2.0)
    progress["stages"][1].update(status=status, started=2.0, ended=3.0)
    progress.update(finished=time.time(), device=device,
                    error="stopped at epoch 1, step 7; checkpoint saved")
    write_json(run / "progress.json", progress)
    (run / "pipeline.log").write_text("".join(line + "\n" for line in log))
    RunIndex(ws).update(run)
    return run


def test_panel_shows_the_newest_log_line_first_and_tiles_fit(ws):
    log = [f"line {i}" for i in range(40)] + ["stop requested: finishing the step"]
    run = ended_run(ws, log=log)
    at = page()
    tail = at.code[-1].value.splitlines()
    assert tail[0] == "stop requested: finishing the step" and tail[1] == "line 39"
    assert "newest line first" in " ".join(c.value for c in at.caption)
    # tiles hold short values (a tile cuts long text); the stage name and device are a caption
    assert {m.label: m.value for m in at.metric} == {
        "Stage": f"2/{len(plan())}", "Epochs done": "—", "Samples/s": "—"}
    assert any(f"Stage: **2/{len(plan())} train_patchtst (stopped)** · device: cuda:0 NVIDIA "
               "H200 NVL, bf16 × 4 processes" == c.value for c in at.caption)
    assert f"Run {run.name} :orange-badge[stopped]" in markdown_text(at)


def test_a_reload_mid_run_shows_the_running_runs_settings(ws):
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)  # the "trainer"
    try:
        run = new_run(ws, {"pipeline.ts_data": str(SAMPLE_TS), "patchtst.preset": "tiny",
                           "patchtst.train.epochs": 3, "patchtst.train.lr": 0.002,
                           "pipeline.device": "cpu", "pipeline.name": "live one",
                           "pipeline.seed": 5})
        progress = initial_progress(run.name, [s.name for s in plan()], "running", sleeper.pid)
        write_json(run / "progress.json", progress)
        RunIndex(ws).update(run)
        at = page()  # a new session: a reload, a second tab
        assert at.button(key="train_start").disabled  # the run is live
        assert at.selectbox(key="train_data_patchtst").value == "sample"
        assert at.selectbox(key="train_data_swinmae").value == "none"
        assert at.selectbox(key="train_preset_patchtst").value == "tiny"
        assert at.number_input(key="train_patchtst_train_epochs").value == 3
        assert at.number_input(key="train_patchtst_train_lr").value == 0.002
        assert at.number_input(key="train_patchtst_data_window").value == 40  # tiny's
        assert at.selectbox(key="train_device").value == "cpu"
        assert at.text_input(key="train_name").value == "live one"
        assert at.number_input(key="train_seed").value == 5
        assert not at.get("alert") and not at.warning, [w.value for w in at.warning]
        # the live run comes first (below the fold after Train before), its settings after it
        order = [getattr(node, "key", None) or node.type for node in at.main]
        assert order.index("train_stop") < order.index("train_stage_graph") < \
            order.index("train_data_patchtst") < order.index("train_start"), order
    finally:
        sleeper.kill()
        sleeper.wait()


def start_from_page(at: AppTest, epochs: int) -> Path:
    at.selectbox(key="train_preset_patchtst").set_value("tiny").run()
    at.number_input(key="train_patchtst_train_epochs").set_value(epochs)
    at.selectbox(key="train_device").set_value("cpu")
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return wait_for(lambda: runs_of(workspace()), "a run folder", 10)[0]


def test_page_shows_datasets_presets_and_the_merged_config(ws):
    at = page()
    data = at.selectbox(key="train_data_patchtst")
    assert data.options == ["sample (bundled)", "none"] and data.value == "sample"
    assert at.selectbox(key="train_preset_patchtst").options == ["default", "tiny", "fast", "large"]
    window = at.number_input(key="train_patchtst_data_window")
    assert window.value == 100
    assert window.help == "time steps per window; a multiple of the patch length"  # the schema's
    assert at.number_input(key="train_swinmae_model_mask_ratio").max == 0.95
    config = config_expander(at).code[0].value
    assert f"ts_data: {PROJECT_ROOT / 'data' / 'samples' / 'timeseries'}" in config
    assert "preset: default" in config and "    epochs: 3\n" in config
    assert "No run yet" in at.info[0].value
    assert not at.button(key="train_start").disabled

    at.selectbox(key="train_preset_patchtst").set_value("tiny").run()  # the form follows
    assert at.number_input(key="train_patchtst_data_window").value == 40
    assert at.number_input(key="train_patchtst_model_patch_len").value == 8
    assert "preset: tiny" in config_expander(at).code[0].value

    at.selectbox(key="train_data_patchtst").set_value("none").run()
    assert at.button(key="train_start").disabled
    assert any("Choose a dataset" in i.value for i in at.info)
    assert "ts_data: null" in config_expander(at).code[0].value


def test_hardware_choices_reach_the_config(ws):
    at = page()
    assert at.selectbox(key="train_precision").options == ["auto", "bf16", "fp16", "fp32"]
    at.selectbox(key="train_precision").set_value("bf16")
    at.selectbox(key="train_distributed").set_value("true")
    at.number_input(key="train_nproc").set_value(2)
    at.toggle(key="train_compile").set_value(True)
    at.button(key="train_check").click().run()
    config = config_expander(at).code[0].value
    for line in ("precision: bf16", "distributed: 'true'", "nproc: 2", "compile: true"):
        assert line in config, (line, config)


def test_run_name_and_seed_reach_the_config(ws):
    at = page()
    assert at.number_input(key="train_seed").value == 0
    at.text_input(key="train_name").input("smd baseline")
    at.number_input(key="train_seed").set_value(7)
    at.button(key="train_check").click().run()
    config = config_expander(at).code[0].value
    assert "name: smd baseline" in config and "seed: 7" in config, config


def test_train_checks_data_and_device_first_and_starts_nothing_on_a_problem(ws):
    at = page()
    at.number_input(key="train_patchtst_data_window").set_value(5000)  # > the sample's rows
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    assert "rows are too few for window 5000" in at.error[0].value, at.error[0].value
    assert not runs_of(ws) and not RunIndex(ws).entries()  # no failed run in the index
    at.number_input(key="train_patchtst_data_window").set_value(100)
    at.button(key="train_check").click().run()  # the same checks, and what they found
    assert not at.error and "Ready to train" in at.success[0].value
    assert "device: cpu" in at.success[0].value or "device: cuda" in at.success[0].value
    assert "patchtst:" in at.success[0].value and not runs_of(ws)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is there: device=cuda is fine")
def test_train_refuses_cuda_without_a_gpu(ws):
    at = page()
    at.selectbox(key="train_device").set_value("cuda")
    at.button(key="train_start").click().run()
    assert "pipeline.device: 'cuda' was asked for" in at.error[0].value
    assert not runs_of(ws)


def test_unusable_datasets_are_not_offered(ws):
    broken = ws / "uploads" / "timeseries" / "broken"
    broken.mkdir(parents=True)
    (broken / "train.csv").write_text("a,b\n1,x\n2,y\n")
    at = page()
    assert at.selectbox(key="train_data_patchtst").options == ["sample (bundled)", "none"]
    why = [c.value for c in at.caption if "Not offered" in c.value]
    assert len(why) == 1 and "**broken**" in why[0] and "train.csv" in why[0], why


def test_a_bad_override_shows_the_config_error(ws):
    at = page()
    at.number_input(key="train_patchtst_data_window").set_value(105)
    at.button(key="train_check").click().run()
    assert [e.value for e in at.error] == [
        "patchtst.data.window (105) must be a multiple of patchtst.model.patch_len (10)"]
    at.number_input(key="train_patchtst_train_lr").set_value(0.0)
    at.button(key="train_start").click().run()  # Train with a bad config starts nothing
    assert "patchtst.train.lr: expected a value > 0.0, found 0.0" in at.error[0].value
    assert not runs_of(ws)


@pytest.mark.slow
def test_train_starts_a_run_disables_train_and_ends_done(ws):
    at = page()
    run = start_from_page(at, epochs=2)
    assert (run / "progress.json").exists() and "epochs: 2" in (run / "run.yaml").read_text()
    # the child is still importing torch: the page shows the run as live
    assert at.button(key="train_start").disabled
    assert any("Train is disabled" in i.value and run.name in i.value for i in at.info)
    assert at.button(key="train_stop")  # Stop is offered while it runs
    assert "Started run" in at.toast[0].value

    wait_for(lambda: jobs.run_status(run)["status"] not in jobs.LIVE_STATES, "the run", 120)
    at.run()
    assert not at.exception, at.exception
    assert ":green-badge[done]" in markdown_text(at), markdown_text(at)
    graph, loss = plotly_charts(at)
    assert "train_patchtst" in graph.proto.spec and "patchtst validation" in loss.proto.spec
    assert not at.button(key="train_start").disabled
    assert not any(b.key == "train_stop" for b in at.button)
    assert f"[{len(plan())}/{len(plan())}] publish" in at.code[-1].value  # the log tail

    again = page()  # a new tab (or a restarted server) shows the same run
    assert f"Run {run.name} :green-badge[done]" in markdown_text(again)


@pytest.mark.slow
def test_stop_stops_the_run_within_the_grace_period(ws):
    at = page()
    run = start_from_page(at, epochs=300)
    wait_for(lambda: ((jobs.run_status(run).get("active") or {}).get("step") or 0) >= 1,
             "training steps", 60)
    at.run()
    assert at.button(key="train_start").disabled and ":blue-badge[running]" in markdown_text(at)
    at.button(key="train_stop").click().run()
    assert not at.exception, at.exception
    status = wait_for(lambda: (s := jobs.run_status(run))["status"] not in jobs.LIVE_STATES
                      and s, "the run to stop", jobs.GRACE_S)
    assert status["status"] == "stopped", status
    at.run()
    assert ":orange-badge[stopped]" in markdown_text(at) and not at.button(key="train_start").disabled
    assert any("stopped at epoch" in w.value for w in at.warning)
