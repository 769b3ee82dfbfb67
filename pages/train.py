"""Train: pick data and a preset per stream, set the hyperparameters that matter, start and stop
a run, and watch it live.

The run panel is drawn from the run's files (`core.train_view`), so a second tab, a reload or a
restarted server shows the same run; while a job runs the panel comes first (above the
settings, which then show what it was started with) and is a fragment that reruns every
second; when the run starts or ends, the whole page reruns once so the buttons follow."""
from pathlib import Path

import streamlit as st

from core import jobs
from core.config import defaults, number_field, presets
from core.errors import AtcError, ConfigError
from core.figures.live import loss_figure, stage_graph
from core.train_view import (check_run, latest_run, live_view, pipeline_choices,
                       preset_values, preview_config, run_form, start_training,
                       training_overrides)
from core.runs import workspace
from core.streams import STREAMS
from core.uploads import dataset_stamp, dataset_summary, list_datasets

NONE = "none"  # the dataset choice that leaves a stream out of the run
BADGE = {"starting": "yellow", "running": "blue", "done": "green", "failed": "red",
         "stopped": "orange", "planned": "gray"}
# session keys: the next toast; (run id, live) shown; the form was filled (this session's 1st view)
TOAST, SEEN, FILLED = "train_toast", "train_seen", "train_filled"


def field_key(stream, key: str) -> str:
    return f"train_{stream.name}_{key.replace('.', '_')}"


def prefill(stream) -> None:
    """Put the chosen preset's values into the form (when the preset changes)."""
    preset = st.session_state[f"train_preset_{stream.name}"]
    for key, value in preset_values(stream, preset).items():
        st.session_state[field_key(stream, key)] = value


def fill_missing(stream) -> None:
    """Give form fields with no value the preset's (on first load; and when an interrupted
    rerun dropped a field's state, which would else show 0)."""
    missing = [f.key for f in stream.form_fields
               if field_key(stream, f.key) not in st.session_state]
    if missing:
        values = preset_values(stream, st.session_state[f"train_preset_{stream.name}"])
        for key in missing:
            st.session_state[field_key(stream, key)] = values[key]


def fill_from_run(ws: Path, run_dir: Path) -> None:
    """Put the settings a run was started with into the form (a reload or a new tab while it
    runs shows them, not the defaults). A dataset no longer stored is left as it is."""
    form = run_form(run_dir)
    if form is None:
        return
    for name, stream in STREAMS.items():
        path = form.data[name]
        stored = {Path(d.path).resolve(): d.name for d in list_datasets(ws, stream.kind)}
        if path is None or Path(path).resolve() in stored:
            st.session_state[f"train_data_{name}"] = stored[Path(path).resolve()] if path else NONE
        st.session_state[f"train_preset_{name}"] = form.presets[name]
        for key, value in form.values[name].items():
            st.session_state[field_key(stream, key)] = value
    for key, value in form.pipeline.items():
        st.session_state[f"train_{key}"] = value


@st.cache_data(max_entries=64, show_spinner="Checking the datasets…")
def dataset_error(kind: str, path: str, stamp: tuple) -> str | None:
    """Why a stored dataset cannot be used (the Data page's check), or None; `stamp` keys the
    cache to its files."""
    return dataset_summary(Path(path), kind)["error"]


def usable_datasets(ws: Path, kind: str) -> tuple[dict, dict]:
    """({name: Dataset} that load, {name: why not} for those that do not)."""
    usable, refused = {}, {}
    for d in list_datasets(ws, kind):
        if error := dataset_error(kind, str(d.path), dataset_stamp(d.path)):
            refused[d.name] = error
        else:
            usable[d.name] = d
    return usable, refused


def choose_data(ws: Path) -> tuple[dict, dict]:
    """Dataset and preset per stream → ({stream: path or None}, {stream: preset}). A dataset
    that cannot be used is not offered; a caption says why."""
    data, chosen = {}, {}
    for stream in STREAMS.values():
        datasets, refused = usable_datasets(ws, stream.kind)
        left, right = st.columns(2)
        options = [*datasets, NONE]
        key = f"train_data_{stream.name}"
        if st.session_state.get(key) not in options:  # first load, or its dataset was deleted
            st.session_state[key] = options[0] if stream.preselected else NONE
        name = left.selectbox(f"{stream.title}: dataset", options, key=key,
                              format_func=lambda n: f"{n} (bundled)"
                              if n in datasets and datasets[n].sample else n,
                              help="upload more on the Data page; 'none' leaves this stream out")
        chosen[stream.name] = right.selectbox(f"{stream.title}: preset", presets(stream.name),
                                              key=f"train_preset_{stream.name}",
                                              on_change=prefill, args=(stream,))
        fill_missing(stream)
        for bad, why in refused.items():
            left.caption(f"Not offered: **{bad}** cannot be used: {why}")
        data[stream.name] = datasets[name].path if name in datasets else None
    return data, chosen


def identity() -> dict:
    """The run's name (shown in the runs index) and its random seed: `pipeline` keys."""
    left, right, _ = st.columns([2, 1, 3])
    return {"name": left.text_input("Run name", key="train_name", max_chars=80,
                                    placeholder="optional, shown on the Runs page"),
            "seed": right.number_input("Seed", min_value=0, step=1, key="train_seed",
                                       help="the same seed and config give the same run")}


def hardware() -> dict:
    """Where and how to train: `pipeline` keys (device, precision, processes, compile)."""
    with st.expander("Hardware"):
        cols = st.columns(4)
        chosen = {
            "device": cols[0].selectbox("Device", pipeline_choices("device"), key="train_device",
                                        help="auto: CUDA when the trainer sees a GPU, else CPU"),
            "precision": cols[1].selectbox(
                "Precision", pipeline_choices("precision"), key="train_precision",
                help="auto: bf16 autocast on CUDA (fp16 with loss scaling where bf16 is "
                     "missing), fp32 on CPU"),
            "distributed": cols[2].selectbox(
                "Several processes", pipeline_choices("distributed"), key="train_distributed",
                help="train with torchrun and DistributedDataParallel; auto: when 2+ GPUs are "
                     "visible"),
            "nproc": cols[3].number_input("Processes", min_value=0, step=1, key="train_nproc",
                                          help="0: one per visible GPU"),
            "compile": st.toggle("torch.compile", key="train_compile",
                                 help="compile the model for training: slower start, faster "
                                      "steps on GPU; falls back to eager if it cannot compile")}
    return chosen


def hyperparameters(busy: bool, any_data: bool) -> tuple[dict, dict, bool, bool]:
    """The form: ({stream: {key: value}}, `pipeline` keys (name, seed, hardware), Check
    clicked, Train clicked). Values apply on submit."""
    values = {}
    with st.form("train_form"):
        chosen = identity()
        for stream in STREAMS.values():
            st.markdown(f"**{stream.title}**")
            cols = st.columns(3)
            for i, f in enumerate(stream.form_fields):
                schema = number_field(f"{stream.name}.{f.key}")
                step, fmt = (1, "%d") if schema.kind is int else \
                    (0.05, "%.2f") if f.key.endswith("ratio") else (1e-4, "%.1e")
                cols[i % 3].number_input(f.label, step=step, format=fmt, help=schema.help or None,
                                         min_value=schema.low, max_value=schema.high,
                                         key=field_key(stream, f.key))
            values[stream.name] = {f.key: st.session_state[field_key(stream, f.key)]
                                   for f in stream.form_fields}
        chosen |= hardware()
        left, right, _ = st.columns([1, 1, 4])
        check = left.form_submit_button("Check config", key="train_check",
                                        help="check the config, the device and the data as "
                                             "`--dry-run` does; trains nothing")
        train = right.form_submit_button("Train", key="train_start", type="primary",
                                         disabled=busy or not any_data)
    return values, chosen, check, train


def draw_panel(run_dir: Path) -> None:
    """The run's status, stage graph, progress, loss curves and log tail."""
    status_box, loss_box, log_box = st.container(), st.container(), st.container()
    with loss_box:
        left, right, _ = st.columns([1, 2, 3])
        log_y = left.toggle("Log scale", key="train_log_y")
        smoothing = right.slider("Smoothing (EMA of training loss)", 0.0, 0.99, 0.0, 0.01,
                                 key="train_smoothing")
    view = live_view(run_dir, smoothing=smoothing)
    with status_box:
        took = f" · {view.elapsed_s:.0f} s" if view.elapsed_s else ""
        st.markdown(f"#### Run {view.run_id} :{BADGE.get(view.status, 'gray')}-badge[{view.label}]"
                    f"{took}")
        if view.error:
            (st.warning if view.status == "stopped" else st.error)(view.error)
        for stream, text in view.warnings.items():
            st.warning(f"**{stream}**: {text}")
        st.plotly_chart(stage_graph(view.stages), key="train_stage_graph",
                        config={"displayModeBar": False})
        # tiles hold short numbers; the stage name and the device are text and would be cut
        c = st.columns(3)
        c[0].metric("Stage", view.stage_count)
        c[1].metric("Epoch" if view.live else "Epochs done",
                    f"{view.epoch or 0}/{view.n_epochs}" if view.n_epochs else "—")
        c[2].metric("Samples/s", f"{view.samples_per_s:,.0f}" if view.samples_per_s else "—")
        st.caption(f"Stage: **{view.stage_text}** · device: {view.device}")
        if view.fraction is not None:
            text = f"step {view.step}/{view.n_steps} · ETA {view.eta_text}" if view.n_steps \
                else "training finished"
            st.progress(view.fraction, text=text)
    with loss_box:
        st.plotly_chart(loss_figure(view.curves, log_y, revision=view.run_id),
                        key="train_loss_chart", config={"displayModeBar": False})
    with log_box:
        # newest first: a scrolled box opens at its top, where "run done" must be seen
        st.caption("pipeline.log, newest line first")
        st.code("\n".join(reversed(view.log_tail)) or "(no log yet)", language=None,
                height=300, wrap_lines=True)


def rerun_on_change(ws: Path) -> Path | None:
    """Rerun the whole page once when the followed run or its liveness changed (buttons)."""
    run_dir = latest_run(ws)
    # the page watches the run it shows: an overdue stop is ended, a lost run recorded
    now = (run_dir.name, jobs.watchdog(run_dir)["status"] in jobs.LIVE_STATES) \
        if run_dir else None
    if now != st.session_state.get(SEEN):
        st.rerun()
    return run_dir


@st.fragment(run_every=1.0)
def live_panel(ws: Path) -> None:
    run_dir = rerun_on_change(ws)
    draw_panel(run_dir)


@st.fragment(run_every=5.0)
def watch(ws: Path) -> None:
    """Idle: notice a run started elsewhere (another tab, the CLI) without redrawing charts."""
    rerun_on_change(ws)


def settings(ws: Path, busy: bool) -> None:
    """Data, preset, hyperparameters and hardware of a new run; Check config and Train."""
    data, chosen = choose_data(ws)
    values, pipeline, check, train = hyperparameters(busy, any(data.values()))
    if not busy and not any(data.values()):
        st.info("Choose a dataset for at least one stream to train.")
    overrides = training_overrides(data, chosen, values, pipeline)
    try:
        config_text = preview_config(overrides)
    except ConfigError as e:
        st.error(str(e))
        config_text = None
    with st.expander("Runtime config (defaults ← preset ← your values)"):
        st.code(config_text or "fix the error above", language="yaml")
    if check and config_text is not None and any(data.values()):
        try:
            with st.spinner("Checking the device and the data…"):
                found = check_run(overrides)
        except AtcError as e:
            st.error(str(e))
        else:
            st.success("Ready to train:\n" + "\n".join(f"- {line}" for line in found))
    if train and config_text is not None:  # a bad config is already shown above
        try:
            with st.spinner("Checking the device and the data, then starting…"):
                run = start_training(ws, overrides)
        except AtcError as e:
            st.error(str(e))
        else:
            st.session_state[TOAST] = f"Started run {run.name}"
            st.rerun()


def controls(run_dir: Path | None, busy: bool) -> None:
    """Refresh; Stop while a run is live, else Resume for the run shown."""
    left, right, _ = st.columns([1, 1, 6])
    left.button("Refresh", key="train_refresh")  # any click reruns the page: files re-read
    if busy and right.button("Stop", key="train_stop", type="primary"):
        jobs.stop(run_dir, wait=False)
        st.session_state[TOAST] = "Stop requested: the trainer saves a checkpoint, then stops"
        st.rerun()
    if not busy and run_dir is not None:
        resume_button(right, run_dir)


def resume_button(box, run_dir: Path) -> None:
    """Resume a stopped or failed (lost) run from its last checkpoint; a finished run says why
    it cannot be resumed."""
    status = jobs.run_status(run_dir)
    resumable = status["status"] in ("stopped", "failed")
    why = "continue from its last checkpoint (last.pt)" if resumable else \
        f"run {run_dir.name} is {status['label']}: nothing to resume"
    if box.button("Resume", key="train_resume", disabled=not resumable,
                  help=f"Resume run {run_dir.name}: {why}"):
        try:
            jobs.start(run_dir, resume=True)
        except AtcError as e:
            st.error(str(e))
        else:
            st.session_state[TOAST] = f"Resumed run {run_dir.name}"
            st.rerun()


def main() -> None:
    st.title("Train")
    if TOAST in st.session_state:
        st.toast(st.session_state.pop(TOAST))
    ws = workspace()
    run_dir = latest_run(ws)
    status = jobs.run_status(run_dir) if run_dir else None
    busy = bool(status and status["status"] in jobs.LIVE_STATES)
    st.session_state[SEEN] = (run_dir.name, busy) if run_dir else None
    if FILLED not in st.session_state:  # this session's first view of the page
        st.session_state[FILLED] = True
        st.session_state["train_seed"] = defaults("pipeline").seed
        if busy:
            fill_from_run(ws, run_dir)

    if busy:  # the live run first, where Train left the user; the settings below it
        st.info(f"Run {run_dir.name} is {status['label']}: Train is disabled until it finishes "
                "or you stop it. Its settings are below.")
        controls(run_dir, busy)
        live_panel(ws)
        st.divider()
        st.subheader("Settings")
        settings(ws, busy)
        return
    settings(ws, busy)
    controls(run_dir, busy)
    st.divider()
    if run_dir is None:
        st.info("No run yet: choose data above and click Train.")
    else:
        draw_panel(run_dir)
    watch(ws)


main()
