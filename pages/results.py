"""Results: pick a finished run; use its model (score new data, export); then each stream's
section, drawn by the view its spec names (`pages/views/`): metrics beside the baselines, a
live threshold, the stream's charts and downloads."""
from pathlib import Path

import streamlit as st

from core import results, runs_tables
from core.errors import AtcError
from core.export import export_zip, exportable_streams
from core.runs import runs_dir, workspace
from core.scoring_runs import model_run_of, start_scoring
from core.streams import STREAMS, resolve
from core.uploads import list_datasets

PICK = "results_pick"  # the selectbox; "results_run": the choice, which other pages may set


def remember() -> None:  # the choice outlives the widget (it is dropped off this page)
    st.session_state["results_run"] = st.session_state[PICK]


def pick_run(ws: Path) -> Path:
    entries = runs_tables.finished_runs(ws)
    if not entries:
        st.info("No finished run yet. Start one on the **Train** page; its results show here.")
        st.stop()
    names = {e["run_id"]: f"{e['run_id']}  {e.get('name') or ''}" for e in entries}
    wanted = st.session_state.get("results_run")
    st.session_state[PICK] = wanted if wanted in names else next(iter(names))
    run_id = st.selectbox("Run (finished runs, newest first)", list(names), key=PICK,
                          format_func=names.get, on_change=remember)
    return runs_dir(ws) / run_id


NONE = "none"  # the dataset choice that leaves a stream out of a scoring


def score_new_data(ws: Path, run_dir: Path, streams: list[str]) -> None:
    """Pick an uploaded dataset per trained stream and start a scoring run with this run's
    models; the Train page's live panel follows it."""
    chosen = {}
    for col, stream in zip(st.columns(len(streams)), streams):
        datasets = {d.name: d for d in list_datasets(ws, STREAMS[stream].kind)}
        pick = col.selectbox(f"{STREAMS[stream].title}: data to score", [NONE, *datasets],
                             key=f"results_score_{stream}",
                             format_func=lambda n: "(none)" if n == NONE else n)
        chosen[stream] = datasets[pick].path if pick != NONE else None
    if st.button("Score new data", key="results_score", disabled=not any(chosen.values()),
                 help="A scoring run of its own: this run's model, normalisation and "
                      "threshold; the data must have the same channels (or image size and "
                      "mode)"):
        try:
            with st.spinner("Checking the data against the model, then starting…"):
                scoring = start_scoring(ws, run_dir, chosen)
        except AtcError as e:
            st.error(str(e))
        else:
            st.session_state["train_toast"] = f"Started scoring run {scoring.name}"
            st.switch_page("pages/train.py")


def use_model(ws: Path, run_dir: Path) -> None:
    """Score new data with this run's models, or download them to run elsewhere; a scoring
    run names the run whose models it used."""
    model_run = model_run_of(run_dir)
    if model_run:
        st.caption(f"A scoring run: the data was scored with the model of run {model_run}.")
        return
    streams = exportable_streams(run_dir)
    if not streams:
        return
    with st.expander("Use this model: score new data, or download it to run elsewhere"):
        score_new_data(ws, run_dir, streams)
        export_button(run_dir)


def export_button(run_dir: Path) -> None:
    st.download_button(
        "Download the model export (zip)", lambda: export_zip(run_dir),
        file_name=f"{run_dir.name}-export.zip", mime="application/zip", key="results_export",
        on_click="ignore", help="Per stream: model.onnx, model.json and predict.py, which "
        "needs only numpy, pandas, pillow and onnxruntime (built on first download, ~1 min); "
        "the image predict.py writes the pixel maps too with --maps maps.npz")


st.title("Results")
ws = workspace()
run_dir = pick_run(ws)
use_model(ws, run_dir)
streams = results.result_streams(run_dir)
if not streams:
    st.info("This run scored no stream: there are no results to show.")
for stream in streams:
    st.subheader(stream.title)
    try:
        resolve(stream.results_view)(run_dir, stream)
    except results.ResultsError as e:
        st.error(str(e))
