"""The console's entry point: page navigation and the sidebar (device, running job).

`streamlit run app.py`. Pages live in pages/ and stay thin: they read state from `core` and
draw; training runs in a separate process started through `core.jobs`."""
import streamlit as st

from core import jobs
from core.runs import workspace

st.set_page_config(page_title="Anomaly training console", page_icon=":material/troubleshoot:",
                   layout="wide")


@st.cache_resource(show_spinner="Looking at the hardware…")
def device_facts() -> dict:
    from core.devices import device_facts as facts  # imports torch: once per server, lazily
    return facts()


def sidebar() -> None:
    facts = device_facts()
    with st.sidebar:
        if facts["gpus"]:
            for gpu in facts["gpus"]:
                st.caption(f"GPU {gpu['index']}: {gpu['name']} ({gpu['memory_total_gb']} GB)")
        else:
            n = facts["cpu_threads"]
            st.caption(f"CPU only ({n} thread{'s' if n != 1 else ''}), torch {facts['torch']}")
        running = jobs.active_run_id(workspace())
        st.caption(f"Training: **{running}**" if running else "No training job running")


pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/folder_open:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/results.py", title="Results", icon=":material/monitoring:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/table_rows:"),
]
nav = st.navigation(pages)
sidebar()
nav.run()
