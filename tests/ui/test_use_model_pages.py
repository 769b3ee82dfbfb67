"""Using a trained run from the console, under AppTest: Resume on the Train page (a stopped run
continues from last.pt; a finished one says why it cannot), Score new data and the export on
Results, scorings grouped under their model run and the provenance on Runs, and the Data page's
Delete naming the runs that used a dataset."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO, TINY, make_series, only_run_dir, run_cli, wait_for
from core import jobs
from core.fileio import read_json, read_jsonl
from core.runs import RunIndex
from core.uploads import uploads_dir


def page(name: str, **state) -> AppTest:
    """Page `name` under the app's router (its buttons switch pages)."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(f"pages/{name}").run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(scope="module")
def model_run(tmp_path_factory) -> Path:
    """A finished tiny time-series run in its own workspace, with an uploaded dataset that has
    the same channels ("tomorrow") and one that does not ("other")."""
    root = tmp_path_factory.mktemp("ui-use")
    data = root / "data"
    data.mkdir()
    make_series(800, 0).to_csv(data / "train.csv", index=False)
    res = run_cli("run", "--ts-data", str(data), *TINY, "--workdir", str(root / "ws"))
    assert res.returncode == 0, res.stdout + res.stderr
    uploads = uploads_dir(root / "ws", "timeseries")
    for name, frame in (("tomorrow", make_series(300, 5)),
                        ("other", make_series(300, 5).rename(columns={"c": "c2"}))):
        (uploads / name).mkdir(parents=True)
        frame.to_csv(uploads / name / "train.csv", index=False)
    return only_run_dir(root / "ws")


@pytest.fixture
def ws(model_run, monkeypatch) -> Path:
    path = model_run.parent.parent
    monkeypatch.setenv("ATC_WORKDIR", str(path))
    yield path
    for run in (path / "runs").iterdir():  # never leave a job behind a failed test
        if (run / "progress.json").exists() and \
                jobs.run_status(run)["status"] in jobs.LIVE_STATES:
            jobs.stop(run, grace_s=5)
    # a job writes its final status, then exits and frees the workspace's job lock: the next
    # test's run must not find it still held (it did, on a loaded CPU)
    wait_for(lambda: jobs.running_run_id(path) is None, "the job lock to be released", 30)


def _remove_other_runs(ws: Path, keep: Path) -> None:
    for run in (ws / "runs").iterdir():
        if run.is_dir() and run != keep:
            shutil.rmtree(run)
            RunIndex(ws).remove(run.name)


@pytest.mark.slow
def test_score_new_data_from_results_runs_and_is_listed_under_its_model(ws, model_run):
    at = page("results.py", results_run=model_run.name)
    pick = at.selectbox(key="results_score_patchtst")
    assert pick.options[0] == "(none)"
    assert sorted(pick.options[1:]) == ["other", "sample", "tomorrow"]
    assert at.button(key="results_score").disabled  # nothing picked yet
    assert at.get("download_button")  # the export zip (built when clicked)

    pick.set_value("other").run()
    at.button(key="results_score").click().run()
    assert not at.exception, at.exception
    assert "train.csv: expected the same channel columns as the data run" in at.error[0].value
    assert "missing: ['c']; extra: ['c2']" in at.error[0].value
    assert len([p for p in (ws / "runs").iterdir() if p.is_dir()]) == 1  # nothing started

    at.selectbox(key="results_score_patchtst").set_value("tomorrow").run()
    at.button(key="results_score").click().run()
    assert not at.exception, at.exception
    assert at.toast[0].value.startswith("Started scoring run")  # shown by the Train page
    scoring = next(p for p in (ws / "runs").iterdir() if p.is_dir() and p != model_run)
    try:
        assert jobs.running_run_id(ws) == scoring.name  # the Train page's live panel follows it
        train = page("train.py")
        assert any(f"Run {scoring.name}" in m.value for m in train.markdown)
        wait_for(lambda: jobs.run_status(scoring)["status"] not in jobs.LIVE_STATES,
                 "the scoring run", 120)
        assert jobs.run_status(scoring)["status"] == "done"
        assert read_json(scoring / "patchtst" / "scoring.json")["rows"] == 300

        runs = page("runs.py")
        table = runs.dataframe[0].value
        assert table.index.tolist()[:2] == [model_run.name, scoring.name]
        assert table.loc[scoring.name, "model"] == f"↳ scoring with {model_run.name}"
        runs.selectbox(key="runs_action_pick").set_value(scoring.name).run()
        where = next(e for e in runs.expander if e.label == "Where this run came from")
        facts = dict(where.dataframe[0].value.values)
        assert facts["model run"] == model_run.name and len(facts["patchtst/best.pt sha256"]) == 64
        assert "core.pipeline run " in facts["command"] and facts["seed"] == "0"

        result = page("results.py", results_run=scoring.name)
        assert any(f"model of run {model_run.name}" in c.value for c in result.caption)
        assert not any(b.key == "results_score" for b in result.button)  # no model of its own

        data = page("data.py")
        used = [w.value for w in data.warning if "Used by" in w.value]
        assert any(scoring.name in w for w in used)  # the Delete popover of "tomorrow"
    finally:
        _remove_other_runs(ws, model_run)


def test_a_finished_run_offers_no_resume_and_says_why(ws, model_run):
    at = page("train.py")
    resume = at.button(key="train_resume")
    assert resume.disabled and f"run {model_run.name} is done: nothing to resume" in resume.help
    runs = page("runs.py")
    runs.selectbox(key="runs_action_pick").set_value(model_run.name).run()
    assert runs.button(key="runs_resume").disabled
    assert "is done: nothing to resume" in runs.button(key="runs_resume").help


@pytest.mark.slow
def test_resume_continues_a_stopped_run_from_its_checkpoint(ws, model_run):
    res = run_cli("run", "--ts-data", str(model_run.parent.parent.parent / "data"), *TINY,
                  "--set", "patchtst.train.epochs=300", "--workdir", str(ws), "--detach")
    assert res.returncode == 0, res.stdout + res.stderr
    run = max((p for p in (ws / "runs").iterdir() if p.is_dir()), key=lambda p: p.name)
    try:
        wait_for(lambda: ((jobs.run_status(run).get("active") or {}).get("step") or 0) >= 1,
                 "training steps", 120)
        jobs.stop(run, grace_s=30)
        stopped_at = jobs.run_status(run)
        assert stopped_at["status"] == "stopped" and (run / "patchtst" / "last.pt").exists()

        # the stopped process writes its status, then exits and frees the workspace's job lock
        wait_for(lambda: jobs.running_run_id(ws) is None, "the job lock to be released", 30)
        at = page("train.py")
        assert not at.button(key="train_resume").disabled
        at.button(key="train_resume").click().run()
        assert not at.exception, at.exception
        assert not at.error, [e.value for e in at.error]
        assert at.toast[0].value == f"Resumed run {run.name}"
        assert jobs.run_status(run)["status"] in jobs.LIVE_STATES
        assert any(f"Run {run.name}" in m.value for m in at.markdown)  # the panel follows it
        wait_for(lambda: "resuming run" in (run / "pipeline.log").read_text(), "the resume", 60)
        wait_for(lambda: ((jobs.run_status(run).get("active") or {}).get("step") or 0) > 0,
                 "resumed steps", 60)
        steps = [line["step"] for line in read_jsonl(run / "metrics.jsonl")
                 if line.get("kind") == "step"]
        assert steps == sorted(steps)  # continued, not restarted from step 0
        assert len(read_json(run / "provenance.json")["resumes"]) == 1
    finally:
        jobs.stop(run, grace_s=10)
        _remove_other_runs(ws, model_run)
