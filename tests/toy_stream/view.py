"""The toy stream's Results section."""
from pathlib import Path

import streamlit as st

from core.fileio import read_json


def section(run_dir: Path, stream) -> None:
    scoring = read_json(Path(run_dir) / stream.name / "scoring.json")
    metrics = read_json(Path(run_dir) / stream.name / "metrics.json") or {}
    st.markdown(f"Toy levels: {scoring['flagged']} of {scoring['rows']} values flagged; "
                f"hit rate {metrics.get('hit_rate')}")
