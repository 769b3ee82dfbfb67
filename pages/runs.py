"""Runs: every run of the workspace as a table; compare several (loss curves, metrics, config
differences); open one in Results; delete one that is not running."""
import pandas as pd
import streamlit as st

from core import jobs, runs_tables
from core.errors import AtcError
from core.figures.runs import overlay_loss_figure
from core.provenance import provenance_rows
from core.runs import runs_dir, workspace

CONFIRM, COMPARE, MESSAGE = "runs_confirm_delete", "runs_compare", "runs_message"


def shown(table):
    """A table for display: numbers as text with three decimals, a missing value as '–' (the
    browser draws a missing number as 'None', whatever a Styler says)."""
    out = table.copy()
    for column in table.select_dtypes("number"):
        out[column] = [runs_tables.EMPTY if pd.isna(v) else f"{v:.3f}" for v in table[column]]
    return out


def compare(ws, entries: list[dict]) -> None:
    ids = [e["run_id"] for e in entries]
    # Keep the selection valid (a run may be gone); first visit: the two newest runs.
    st.session_state[COMPARE] = [r for r in st.session_state.get(COMPARE, ids[:2]) if r in ids]
    picked = st.multiselect("Runs to compare", ids, key=COMPARE)
    if not picked:
        return
    log_y = st.toggle("Log-scale loss", key="runs_log_y")
    st.plotly_chart(overlay_loss_figure(runs_tables.run_curves(ws, picked), log_y), key="runs_loss")
    chosen = [e for e in entries if e["run_id"] in picked]
    st.dataframe(shown(runs_tables.compare_metrics(chosen)), width="stretch")
    if len(picked) > 1:
        diff = runs_tables.compare_configs([runs_dir(ws) / r for r in picked])
        st.markdown("**Config differences**")
        if len(diff):
            st.dataframe(diff, width="stretch")
        else:
            st.caption("Same config.")


def details(ws, run_id: str) -> None:
    """Where the run came from (provenance.json): data hashes, versions, commit, command."""
    rows = provenance_rows(runs_dir(ws) / run_id)
    with st.expander("Where this run came from", expanded=False):
        if not rows:
            st.caption("This run records no provenance (it started before runs did, or never "
                       "started).")
            return
        st.dataframe(pd.DataFrame(rows, columns=["what", "value"]), hide_index=True,
                     width="stretch")


def actions(ws, entries: list[dict]) -> None:
    status = {e["run_id"]: e.get("status") for e in entries}
    run_id = st.selectbox("Run", list(status), key="runs_action_pick")
    details(ws, run_id)
    left, middle, right = st.columns(3)
    if left.button("Open in Results", key="runs_open", disabled=status[run_id] != "done"):
        st.session_state["results_run"] = run_id
        st.switch_page("pages/results.py")
    resumable = status[run_id] in ("stopped", "failed", "failed (lost)")
    if middle.button("Resume", key="runs_resume", disabled=not resumable,
                     help="Continue from its last checkpoint; the Train page follows it" if
                     resumable else f"Run {run_id} is {status[run_id]}: nothing to resume"):
        try:
            jobs.start(runs_dir(ws) / run_id, resume=True)
        except AtcError as e:
            st.error(str(e))
        else:
            st.session_state["train_toast"] = f"Resumed run {run_id}"
            st.switch_page("pages/train.py")
    if right.button("Delete…", key="runs_delete"):
        if status[run_id] in jobs.LIVE_STATES:
            st.error(f"Run {run_id} is running; stop it on the Train page before deleting it.")
        else:
            st.session_state[CONFIRM] = run_id
    target = st.session_state.get(CONFIRM)
    if target:
        st.warning(f"Delete run **{target}** and its folder? This cannot be undone.")
        yes, no = st.columns(2)
        if yes.button("Yes, delete it", key="runs_delete_confirm", type="primary"):
            del st.session_state[CONFIRM]
            try:
                jobs.delete_run(ws, target)
            except (AtcError, FileNotFoundError) as e:
                st.error(str(e))
            else:
                st.session_state[MESSAGE] = f"Deleted run {target}."
                st.rerun()
        if no.button("Cancel", key="runs_delete_cancel"):
            del st.session_state[CONFIRM]
            st.rerun()


st.title("Runs")
ws = workspace()
if message := st.session_state.pop(MESSAGE, None):
    st.success(message)
entries = runs_tables.index_entries(ws)
if not entries:
    st.info("No runs yet. Start one on the **Train** page.")
    st.stop()
st.dataframe(shown(runs_tables.runs_table(runs_tables.grouped_by_model(entries))), width="stretch")
st.caption("A scoring run (new data scored with a trained run's model) is listed under its "
           "model run.")
st.subheader("Compare runs")
compare(ws, entries)
st.subheader("Open or delete a run")
actions(ws, entries)
