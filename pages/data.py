"""Data: per stream, upload a dataset, see each stored one checked and previewed, delete uploads.

Uploads are written to the workspace the moment they arrive (widget state does not survive a page
switch); everything listed below the upload area is read from disk, so it is the same in every tab.
Files added to the uploader while it still holds the earlier ones (one upload round) replace the
dataset that round saved; removing them all, or leaving the page, starts a new round.
"""
import secrets
from pathlib import Path

import streamlit as st

from core import uploads
from core.errors import DataError
from core.figures.data import draw_preview, thin_split
from core.runs import workspace
from core.stages import STREAMS

FILES_HELP = ("Saved as they arrive. The name tells what a file holds: `train…` the training "
              "data (normal operation, required), `test…` the test data (may hold a `label` "
              "column), `test_label…` or `labels…` one `label` per test row. A single file is "
              "the training data whatever its name.")


@st.cache_data(max_entries=64, show_spinner="Checking the dataset…")
def overview(path: str, stamp: tuple) -> tuple[dict, dict]:
    """Summary (with `error`) and the splits thinned for the preview; `stamp` keys the cache to
    the files' sizes and times, so a changed dataset is checked again."""
    summary, ds = uploads.check_dataset(Path(path))
    splits = {} if ds is None else {name: thin_split(s.values, s.channels, s.timestamps, s.labels)
                                    for name, s in (("train", ds.train), ("test", ds.test)) if s}
    return summary, splits


def save_upload(kind: str, ws: Path) -> None:
    """Uploader on_change: save the files it holds now, as this round's dataset."""
    state = st.session_state
    files = state.get(f"data_{kind}_files") or []
    if not files:
        return  # all removed: the next run ends the round
    round_ = state.get(f"data_{kind}_round") or {"id": secrets.token_hex(8), "dataset": None}
    try:
        roles = uploads.assign_roles([(f.name, f) for f in files])
        name = (round_["dataset"] or state.get(f"data_{kind}_name", "").strip()
                or roles["train"][0].removesuffix(".gz").removesuffix(".csv"))
        path = uploads.save_timeseries_dataset(ws, name, **roles, round_id=round_["id"])
    except DataError as e:
        state[f"data_{kind}_notice"] = ("error", str(e))
        return
    state[f"data_{kind}_round"] = round_ | {"dataset": path.name}
    state[f"data_{kind}_opened"] = path.name
    summary, _ = overview(str(path), uploads.dataset_stamp(path))
    got = ", ".join(f"{role} `{up[0]}`" for role, up in roles.items())
    state[f"data_{kind}_notice"] = (
        ("error", f"Saved '{path.name}' ({got}), but it cannot be used as it is: "
                  f"{summary['error']}")
        if summary["error"] else ("success", f"Saved '{path.name}' ({got}): {shape(summary)}."))


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
    state = st.session_state
    if not state.get(f"data_{kind}_files") and state.pop(f"data_{kind}_round", None):
        state[f"data_{kind}_name"] = ""  # uploader emptied or page left: the round is over
    round_ = state.get(f"data_{kind}_round")
    st.text_input("Dataset name", key=f"data_{kind}_name", disabled=round_ is not None,
                  placeholder="taken from the training file's name when empty",
                  on_change=save_upload, args=(kind, ws))  # a name refused: retry with a new one
    st.file_uploader("CSV files: train.csv, optional test.csv and test_label.csv", help=FILES_HELP,
                     type=["csv", "gz"], accept_multiple_files=True, key=f"data_{kind}_files",
                     on_change=save_upload, args=(kind, ws))
    if round_:
        st.caption(f"Files added here go to '{round_['dataset']}' (they replace its files); "
                   f"remove them all to start a new dataset.")


def show_notice(kind: str) -> None:
    """The message of the last upload or Delete, shown once, beside the upload area."""
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
