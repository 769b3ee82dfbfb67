"""Results-view parts every stream's section uses."""
import streamlit as st

from core import results
from core.images import results as img
from core.timeseries import results as ts_results


def downloads(res: ts_results.TSResults | img.ImageResults, key: str) -> None:
    left, right = st.columns(2)
    left.download_button("Download scores.csv", (res.stream_dir / results.SCORES).read_bytes,
                         file_name=f"{res.run_id}-{res.stream}-scores.csv", mime="text/csv",
                         key=f"{key}_dl_scores", on_click="ignore",
                         help="is_anomaly uses the run's threshold, not the slider's")
    ckpt = res.checkpoint
    right.download_button("Download model checkpoint (best.pt)", ckpt.read_bytes if ckpt else b"",
                          file_name=f"{res.run_id}-{res.stream}-best.pt", key=f"{key}_dl_ckpt",
                          on_click="ignore", disabled=ckpt is None)
