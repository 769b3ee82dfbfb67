"""The console's entry point. For now a single page that says what is coming; the Data, Train,
Results and Runs pages arrive with the console issue. The headless pipeline works today:
`python -m core.pipeline run --ts-data data/samples/timeseries`."""
import streamlit as st

st.set_page_config(page_title="Anomaly training console", layout="wide")
st.title("Anomaly training console")
st.info("The console pages (upload data, train with a live stage graph, explore anomaly "
        "scores, compare runs) are coming next. The training pipeline already runs from the "
        "command line; see the README.")
st.code("python -m core.pipeline run --ts-data data/samples/timeseries --set patchtst.preset=tiny",
        language="bash")
