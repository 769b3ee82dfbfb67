"""Data: per stream, upload a dataset, see each stored one checked and previewed, delete uploads.

Uploads are written to the workspace when Save is clicked (widget state does not survive a page
switch); everything listed below the upload area is read from disk, so it is the same in every tab.
"""
from pathlib import Path

import streamlit as st

from core import uploads
from core.errors import DataError
from core.figures.data import draw_preview, thin_split
from core.runs import workspace
from core.stages import STREAMS

ROLES = {"train": "Training CSV (normal operation, required)",
         "test": "Test CSV (optional, may hold a `label` column)",
         "labels": "Labels CSV (optional, one `label` per test row)"}


@st.cache_data(max_entries=64, show_spinner="Checking the dataset…")
def overview(path: str, stamp: tuple) -> tuple[dict, dict]:
    """Summary (with `error`) and the splits thinned for the preview; `stamp` keys the cache to
    the files' sizes and times, so a changed dataset is checked again."""
    summary, ds = uploads.check_dataset(Path(path))
    splits = {} if ds is None else {name: thin_split(s.values, s.channels, s.timestamps, s.labels)
                                    for name, s in (("train", ds.train), ("test", ds.test)) if s}
    return summary, splits


def save_timeseries(kind: str, ws: Path) -> None:
    """Save button: store the chosen files as a dataset, then give the uploaders a fresh key."""
    state, n = st.session_state, st.session_state[f"data_{kind}_round"]
    files = {role: state.get(f"data_{kind}_{role}_{n}") for role in ROLES}
    if files["train"] is None:
        state[f"data_{kind}_notice"] = ("error", "Choose a training CSV first.")
        return
    name = state.get(f"data_{kind}_name", "").strip()
    name = name or files["train"].name.removesuffix(".gz").removesuffix(".csv")
    try:
        path = uploads.save_timeseries_dataset(
            ws, name, *((f.name, f) if f is not None else None for f in files.values()))
    except DataError as e:
        state[f"data_{kind}_notice"] = ("error", str(e))
        return
    state[f"data_{kind}_round"], state[f"data_{kind}_name"] = n + 1, ""  # files live on disk now
    state[f"data_{kind}_opened"] = path.name
    summary, _ = overview(str(path), uploads.dataset_stamp(path))
    state[f"data_{kind}_notice"] = (
        ("error", f"Saved '{path.name}', but it cannot be used as it is: {summary['error']}")
        if summary["error"] else ("success", f"Saved '{path.name}': {shape(summary)}."))


def shape(summary: dict) -> str:
    return (f"{summary['train']['rows']:,} training rows × "
            f"{summary['channels']['count']} channels")


def delete(kind: str, ws: Path, name: str) -> None:
    try:
        uploads.delete_dataset(ws, kind, name)
        st.session_state[f"data_{kind}_notice"] = ("success", f"Deleted dataset '{name}'.")
    except DataError as e:
        st.session_state[f"data_{kind}_notice"] = ("error", str(e))


def upload_timeseries(kind: str, ws: Path) -> None:
    n = st.session_state.setdefault(f"data_{kind}_round", 0)
    st.text_input("Dataset name", key=f"data_{kind}_name",
                  placeholder="taken from the training file's name when empty")
    for col, (role, label) in zip(st.columns(3), ROLES.items()):
        col.file_uploader(label, type=["csv", "gz"], key=f"data_{kind}_{role}_{n}")
    st.button("Save dataset", key=f"data_{kind}_save", type="primary", on_click=save_timeseries,
              args=(kind, ws), disabled=st.session_state.get(f"data_{kind}_train_{n}") is None)


def show_notice(kind: str) -> None:
    """The message of the last Save or Delete, shown once, beside the upload area."""
    what, text = st.session_state.pop(f"data_{kind}_notice", (None, ""))
    if what:
        getattr(st, what)(text)


def show_summary(summary: dict) -> None:
    train, test = summary["train"], summary["test"]
    ratio = test and test["label_ratio"]
    cols = st.columns(5)
    cols[0].metric("Training rows", f"{train['rows']:,}")
    cols[1].metric("Test rows", f"{test['rows']:,}" if test else "none")
    cols[2].metric("Channels", summary["channels"]["count"])
    cols[3].metric("NaN cells filled", f"{summary['nan_filled']:,}")
    cols[4].metric("Label ratio", "none" if ratio is None else f"{ratio:.2%}",
                   help="Share of test rows labelled anomalous (1)")
    for split, s in (("train", train), ("test", test)):
        if s and s["time_span"]:
            st.caption(f"{split}: {s['time_span']['first']} → {s['time_span']['last']}")
    st.caption("Channels: " + ", ".join(summary["channels"]["names"]))
    for warning in summary["warnings"]:
        st.warning(warning)


def show_dataset(kind: str, ws: Path, ds: uploads.Dataset, summary: dict, splits: dict) -> None:
    key = f"data_{kind}_{ds.name}"
    st.caption("  ·  ".join(f"`{f['name']}` {f['bytes'] / 1e6:.2f} MB"
                            + (f" (uploaded as `{f['uploaded_as']}`)" if f["uploaded_as"] else "")
                            for f in uploads.stored_files(ds.path)))
    if summary["error"]:
        st.error(summary["error"])
    else:
        show_summary(summary)
        split = (st.radio("Preview", list(splits), horizontal=True, key=f"{key}_split")
                 if len(splits) > 1 else "train")
        names = splits[split].channels
        chosen = st.multiselect("Channels", names, default=names[:4], max_selections=8,
                                key=f"{key}_channels")
        st.plotly_chart(draw_preview(splits[split], chosen), key=f"{key}_chart")
    if not ds.sample:
        with st.popover("Delete", key=f"{key}_confirm"):
            st.button(f"Delete '{ds.name}' for good", key=f"{key}_delete", type="primary",
                      on_click=delete, args=(kind, ws, ds.name))


def stream_section(stream) -> None:
    st.header(stream.title)
    kind, ws = stream.kind, workspace()
    if kind != "timeseries":
        st.info("Uploads for this stream are not available yet.")
        return
    upload_timeseries(kind, ws)
    show_notice(kind)
    just_saved = st.session_state.pop(f"data_{kind}_opened", None)
    for ds in uploads.list_datasets(ws, kind):
        summary, splits = overview(str(ds.path), uploads.dataset_stamp(ds.path))
        status = "⚠️ cannot be used" if summary["error"] else shape(summary)
        label = f"**{ds.name}**{' (bundled sample)' if ds.sample else ''} · {status}"
        with st.expander(label, expanded=ds.name == just_saved):
            show_dataset(kind, ws, ds, summary, splits)


st.title("Data")
for stream in STREAMS.values():
    stream_section(stream)
