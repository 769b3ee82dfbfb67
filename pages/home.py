"""Home: what the console does, the device it trains on, the running job and the latest runs."""
import pandas as pd
import streamlit as st

from core import runs_tables
from core.runs import workspace
from core.streams import STREAMS

LATEST = 5
GPU_COLUMNS = {"index": "index", "name": "GPU", "memory_total_gb": "memory (GB)",
               "memory_used_gb": "in use (GB)", "utilization_pct": "utilisation (%)",
               "bf16": "bf16"}
TRAIN_ICON = ":material/model_training:"


@st.cache_resource(show_spinner="Looking at the hardware…")
def device_facts() -> dict:
    from core.devices import device_facts as facts  # imports torch: once per server, lazily
    return facts()


def device_panel() -> None:
    facts = device_facts()
    cols = st.columns(3)
    cols[0].metric("torch", facts["torch"])
    cols[1].metric("CUDA available", "yes" if facts["cuda_available"] else "no")
    cols[2].metric("CUDA version", facts["cuda_version"] or "—")
    if facts["gpus"]:
        gpus = pd.DataFrame(facts["gpus"], columns=list(GPU_COLUMNS))
        st.dataframe(gpus.set_index("index").rename(columns=GPU_COLUMNS), width="stretch")
        if not facts["nvml"]:
            st.caption("Memory in use is this console's own; install `nvidia-ml-py` to see the "
                       "whole GPU's memory and utilisation.")
    else:
        n, units = facts["cpu_threads"], facts["cpu_bf16"]
        in_bf16 = " and ".join(s.title for s in STREAMS.values() if s.cpu_bf16)
        bf16 = (f"{units} bf16 units: precision `auto` trains {in_bf16} in bf16, other streams "
                "in fp32 (bf16 measured slower for them)" if units else
                "no bf16 units: precision `auto` stays fp32")
        st.caption(f"No GPU visible: training runs on the CPU ({n} thread{'s' if n != 1 else ''}; "
                   f"{bf16}).")


def job_panel(ws) -> None:
    job = runs_tables.job_summary(ws)
    if job:
        st.info(f"Training **{job['run_id']}** ({job['status']}): {job['text']}")
        st.page_link("pages/train.py", label="Follow it on the Train page", icon=TRAIN_ICON)
    else:
        st.caption("No training job running.")
        st.page_link("pages/train.py", label="Start a run on the Train page", icon=TRAIN_ICON)


def latest_runs(ws) -> None:
    entries = runs_tables.index_entries(ws)[:LATEST]
    if not entries:
        st.caption("No runs yet.")
        return
    table = runs_tables.runs_table(entries).drop(columns=["streams", "params"])
    st.dataframe(table, width="stretch", column_config={
        c: st.column_config.NumberColumn(format="%.3f") for c in table.select_dtypes("number")})
    left, right = st.columns(2)
    left.page_link("pages/results.py", label="Explore results", icon=":material/monitoring:")
    right.page_link("pages/runs.py", label="All runs", icon=":material/table_rows:")


st.title("Anomaly training console")
st.markdown("Self-supervised anomaly detection on your own data: add a dataset on **Data**, "
            "train on **Train** (the job runs in the background and survives a reload), then "
            "explore scores on **Results** and compare runs on **Runs**.")
ws = workspace()
st.subheader("Device")
device_panel()
st.subheader("Training job")
job_panel(ws)
st.subheader("Latest runs")
latest_runs(ws)
