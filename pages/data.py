"""Data: per stream, upload a dataset, see each stored one checked and previewed, delete uploads.

Uploads are written to the workspace the moment they arrive (widget state does not survive a page
switch); everything listed below the upload area is read from disk, so it is the same in every tab.
Files added to a stream's uploaders while they still hold the earlier ones (one upload round)
replace the dataset that round saved; removing them all, or leaving the page, starts a new round.

The upload round, the notice, the dataset list and Delete are shared; what differs per data kind
(the uploaders, how files become a dataset, the summary and the preview) is a `KindPage`.
"""
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import streamlit as st

from core import uploads
from core.errors import DataError
from core.figures.data import draw_preview, thin_split
from core.images import uploads as image_uploads
from core.images.preview import THUMB, image_preview
from core.runs import runs_using, workspace
from core.streams import STREAMS
from core.timeseries import uploads as ts_uploads


def listed(names: list[str], k: int = 3) -> str:
    """'`a`, `b`, `c`' or '`a`, `b`, `c` and 7 more'."""
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(f"`{n}`" for n in names[:k]) + more


# ---------------------------------------------------------------- time series

TS_HELP = ("Saved as they arrive. The name tells what a file holds: `train…` the training "
           "data (normal operation, required), `test…` the test data (may hold a `label`, "
           "`is_anomaly` or `anomaly` column, never used as a channel), `test_label…` or "
           "`labels…` one `label` per test row. A single file is the training data whatever "
           "its name; with several, a role picker below shows each file's role to change.")


def ts_uploaders(kind: str, ws: Path) -> None:
    files, folder = st.columns([3, 2])
    files.file_uploader("CSV files: train.csv, optional test.csv and test_label.csv",
                        help=TS_HELP, type=["csv", "gz"], accept_multiple_files=True,
                        key=f"data_{kind}_files", on_change=save_upload, args=(kind, ws))
    folder.file_uploader("…or a folder holding them", help=TS_HELP, type=["csv", "gz"],
                         accept_multiple_files="directory", key=f"data_{kind}_folder",
                         on_change=save_upload, args=(kind, ws))
    role_picker(kind, ws)


ROLE_LABELS = {"train": "train", "test": "test", "labels": "test labels", "ignore": "ignore"}


def role_key(kind: str, file_name: str) -> str:
    """The role picker's key for one uploaded file (names may hold any character)."""
    return f"data_{kind}_role_{hashlib.sha1(file_name.encode()).hexdigest()[:12]}"


def picked_roles(kind: str, files: list[uploads.Upload]) -> dict[str, str]:
    """{file name: role}: the picker's choice, else the guess (from the name or the labels)."""
    return {n: st.session_state.get(role_key(kind, n), guess)
            for n, guess in ts_uploads.guess_roles(files).items()}


def role_picker(kind: str, ws: Path) -> None:
    """With several files held: one role per file, pre-filled with the guess; a change saves
    the round's dataset again with the new roles."""
    files = held_files(kind)
    if len(files) < 2:
        return
    roles = picked_roles(kind, [(f.name, f) for f in files])
    st.caption("Role of each file, from its name or, where the name does not say, its labels "
               "(the file with fewest labelled anomalies trains). Change it if it is wrong.")
    cols = st.columns(min(len(files), 4))
    for i, f in enumerate(files):
        key = role_key(kind, f.name)
        st.session_state[key] = roles[f.name]
        cols[i % len(cols)].selectbox(f"`{f.name}`", list(ROLE_LABELS), key=key,
                                      format_func=ROLE_LABELS.get, on_change=save_upload,
                                      args=(kind, ws))


def ts_save(ws: Path, kind: str, name: str, files: list[uploads.Upload],
            round_id: str) -> tuple[Path, str]:
    roles = ts_uploads.assign_roles(files, picked_roles(kind, files))
    names = [n for n, _ in files]
    stem = Path(roles["train"][0]).name.removesuffix(".gz").removesuffix(".csv")
    name = name or uploads.free_name(ws, kind, top_folder(names) or stem)
    path = ts_uploads.save_timeseries_dataset(ws, name, **roles, round_id=round_id)
    return path, ", ".join(f"{role} `{up[0]}`" for role, up in roles.items())


def ts_preview(ds) -> dict:
    """The splits thinned for the chart."""
    return {name: thin_split(s.values, s.channels, s.timestamps, s.labels)
            for name, s in (("train", ds.train), ("test", ds.test)) if s}


def ts_shape(summary: dict) -> str:
    return (f"{summary['train']['rows']:,} training rows × "
            f"{summary['channels']['count']} channels")


def ts_files(ds: uploads.Dataset) -> str:
    return "  ·  ".join(f"`{f['name']}` {f['bytes'] / 1e6:.2f} MB"
                        + (f" (uploaded as `{f['uploaded_as']}`)" if f["uploaded_as"] else "")
                        for f in uploads.stored_files(ds.path))


def ts_show(key: str, summary: dict, splits: dict) -> None:
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
    show_warnings(summary)
    split = (st.radio("Preview", list(splits), horizontal=True, key=f"{key}_split")
             if len(splits) > 1 else "train")
    names = splits[split].channels
    chosen = st.multiselect("Channels", names, default=names[:4], max_selections=8,
                            key=f"{key}_channels")
    st.plotly_chart(draw_preview(splits[split], chosen), key=f"{key}_chart")


# ---------------------------------------------------------------- images

IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"]
IMAGES_HELP = ("Saved as they arrive. Image files are normal images for training. A zip (on its "
               "own) or a folder may follow the MVTec layout: `train/good/` normal training "
               "images, `test/good/` and `test/<defect type>/` test images, "
               "`ground_truth/<defect type>/<name>_mask.png` masks of the same size.")


def image_uploaders(kind: str, ws: Path) -> None:
    files, folder = st.columns([3, 2])
    files.file_uploader("Image files or a .zip", help=IMAGES_HELP, type=["zip", *IMAGE_TYPES],
                        accept_multiple_files=True, key=f"data_{kind}_files",
                        on_change=save_upload, args=(kind, ws))
    folder.file_uploader("…or a folder (MVTec layout or all training images)", help=IMAGES_HELP,
                         type=IMAGE_TYPES, accept_multiple_files="directory",
                         key=f"data_{kind}_folder", on_change=save_upload, args=(kind, ws))


def image_save(ws: Path, kind: str, name: str, files: list[uploads.Upload],
               round_id: str) -> tuple[Path, str]:
    names = [n for n, _ in files]
    zipped = len(names) == 1 and names[0].lower().endswith(".zip")
    default = names[0].rsplit(".", 1)[0] if zipped else top_folder(names) or "images"
    name = name or uploads.free_name(ws, kind, default)
    path = image_uploads.save_image_dataset(ws, name, files, round_id=round_id)
    return path, uploaded_as(names)


def top_folder(names: list[str]) -> str | None:
    """The folder a folder upload came from: the first part shared by all names, if any."""
    paths = [n.replace("\\", "/") for n in names]
    tops = {p.partition("/")[0] for p in paths}
    return tops.pop() if len(tops) == 1 and all("/" in p for p in paths) else None


def uploaded_as(names: list[str]) -> str:
    folder = top_folder(names)
    return (listed(names) if len(names) <= 3 else
            f"the folder `{folder}`, {len(names):,} files" if folder else f"{len(names):,} files")


def image_shape(summary: dict) -> str:
    return f"{summary['train']:,} training + {summary['test']:,} test images"


def image_files(ds: uploads.Dataset) -> str:
    names = uploads.upload_meta(ds.path).get("uploaded", [])
    return f"Uploaded as {uploaded_as(names)}" if names else ""


def span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}–{hi}"


def image_show(key: str, summary: dict, thumbs: list) -> None:
    cols = st.columns(4)  # tiles hold counts; sizes and modes are text a tile would cut
    cols[0].metric("Training images", f"{summary['train']:,}")
    cols[1].metric("Test good", f"{summary['test_good']:,}")
    cols[2].metric("Test defect", f"{summary['test_defect']:,}")
    cols[3].metric("Masks", f"{summary['masks']:,}")
    st.caption(f"Size: {span(*summary['width'])} × {span(*summary['height'])} px "
               "(width × height, smallest–largest) · mode: "
               + ", ".join(f"{m} ({n:,} images)" for m, n in summary["modes"].items()))
    if summary["layout"] == "flat":
        st.caption("A flat folder: all images are normal training images.")
    elif summary["counts"]["test"]:
        st.caption("Test images by type: " + " · ".join(
            f"{t} {n:,}" for t, n in summary["counts"]["test"].items()))
    show_warnings(summary)
    st.image([t for _, t in thumbs], caption=[c for c, _ in thumbs], width=THUMB)


# ---------------------------------------------------------------- any other kind

def plain_uploaders(kind: str, ws: Path) -> None:
    st.file_uploader("Data files", accept_multiple_files=True, key=f"data_{kind}_files",
                     on_change=save_upload, args=(kind, ws),
                     help="Saved as they arrive, as one dataset; the stream's own check reads "
                          "them below.")


def plain_save(ws: Path, kind: str, name: str, files: list[uploads.Upload],
               round_id: str) -> tuple[Path, str]:
    name = name or uploads.free_name(ws, kind, Path(files[0][0]).stem)
    path = uploads.save_files_dataset(ws, kind, name, files, round_id=round_id)
    return path, f"{len(files)} file{'s' if len(files) != 1 else ''}"


def plain_shape(summary: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in summary.items()
                     if k not in ("error", "warnings") and isinstance(v, (int, float, str)))


def plain_files(ds: uploads.Dataset) -> str:
    return "Files: " + ", ".join(f"`{f['name']}`" for f in uploads.stored_files(ds.path))


def plain_show(key: str, summary: dict, preview) -> None:
    show_warnings(summary)


# ---------------------------------------------------------------- per kind

@dataclass(frozen=True)
class KindPage:
    """What the Data page does differently for one data kind."""

    file_keys: tuple[str, ...]  # key suffixes of its uploaders: data_<kind>_<suffix>
    name_label: str  # the name box's label: unique on the page (people and browser tests)
    name_hint: str  # where the dataset's name comes from when none is typed
    uploaders: Callable[[str, Path], None]  # draws them (on_change: save_upload)
    save: Callable  # (ws, kind, name, [(name, file)], round id) -> (path, what was saved)
    preview: Callable  # loaded dataset -> what `show` draws (cached)
    shape: Callable[[dict], str]  # summary -> one line for the dataset's label
    files: Callable[[uploads.Dataset], str]  # the stored files, for a caption
    show: Callable[[str, dict, object], None]  # (key prefix, summary, preview): draws them


KINDS = {
    "timeseries": KindPage(("files", "folder"), "Dataset name",
                           "taken from the folder's or the training file's name when empty",
                           ts_uploaders, ts_save, ts_preview, ts_shape, ts_files, ts_show),
    "images": KindPage(("files", "folder"), "Name of the image dataset",
                       "taken from the zip's or folder's name when empty",
                       image_uploaders, image_save, image_preview, image_shape, image_files,
                       image_show),
}
PLAIN = KindPage(("files",), "Dataset name", "taken from the first file's name when empty",
                 plain_uploaders, plain_save, lambda ds: None, plain_shape, plain_files,
                 plain_show)  # a stream without a page of its own: files in, its check shown


def kind_page(kind: str) -> KindPage:
    return KINDS.get(kind, PLAIN)


# ---------------------------------------------------------------- shared

@st.cache_data(max_entries=64, show_spinner="Checking the dataset…")
def overview(kind: str, path: str, stamp: tuple) -> tuple[dict, object]:
    """Summary (with `error`) and the kind's preview (None when invalid); `stamp` keys the cache
    to the files' sizes and times, so a changed dataset is checked again."""
    summary, ds = uploads.check_dataset(Path(path), kind)
    return summary, None if ds is None else kind_page(kind).preview(ds)


def held_files(kind: str) -> list:
    """The files all of the kind's uploaders hold now."""
    return [f for suffix in kind_page(kind).file_keys
            for f in st.session_state.get(f"data_{kind}_{suffix}") or []]


def save_upload(kind: str, ws: Path) -> None:
    """Uploader on_change: save the files the uploaders hold now, as this round's dataset."""
    state = st.session_state
    files = held_files(kind)
    if not files:
        return  # all removed: the next run ends the round
    round_ = state.get(f"data_{kind}_round") or {"id": secrets.token_hex(8), "dataset": None}
    try:
        name = round_["dataset"] or state.get(f"data_{kind}_name", "").strip()
        path, got = kind_page(kind).save(ws, kind, name, [(f.name, f) for f in files],
                                          round_["id"])
    except DataError as e:
        state[f"data_{kind}_notice"] = ("error", str(e))
        return
    state[f"data_{kind}_round"] = round_ | {"dataset": path.name}
    state[f"data_{kind}_opened"] = path.name
    summary, _ = overview(kind, str(path), uploads.dataset_stamp(path))
    saved = f"Saved '{path.name}' ({got})"
    state[f"data_{kind}_notice"] = (
        ("error", f"{saved}, but it cannot be used as it is: {summary['error']}")
        if summary["error"] else
        ("warning", f"{saved}: {kind_page(kind).shape(summary)}; " + "; ".join(summary["warnings"]))
        if summary["warnings"] else ("success", f"{saved}: {kind_page(kind).shape(summary)}."))


def delete(kind: str, ws: Path, name: str) -> None:
    try:
        uploads.delete_dataset(ws, kind, name)
        st.session_state[f"data_{kind}_notice"] = ("success", f"Deleted dataset '{name}'.")
    except DataError as e:
        st.session_state[f"data_{kind}_notice"] = ("error", str(e))


def upload_area(kind: str, ws: Path) -> None:
    """The dataset name, the kind's uploaders, and which dataset this round's files go to."""
    state = st.session_state
    if not held_files(kind) and state.pop(f"data_{kind}_round", None):
        state[f"data_{kind}_name"] = ""  # uploaders emptied or page left: the round is over
        for key in [k for k in state if str(k).startswith(f"data_{kind}_role_")]:
            del state[key]  # a file of the same name in a new round starts from its guess
    round_ = state.get(f"data_{kind}_round")
    st.text_input(kind_page(kind).name_label, key=f"data_{kind}_name", disabled=round_ is not None,
                  placeholder=kind_page(kind).name_hint,
                  on_change=save_upload, args=(kind, ws))  # a name refused: retry with a new one
    kind_page(kind).uploaders(kind, ws)
    if round_:
        st.caption(f"Files added here go to '{round_['dataset']}' (they replace its files); "
                   f"remove them all to start a new dataset.")


def show_notice(kind: str) -> None:
    """The message of the last upload or Delete, shown once, beside the upload area."""
    what, text = st.session_state.pop(f"data_{kind}_notice", (None, ""))
    if what:
        getattr(st, what)(text)


def show_warnings(summary: dict) -> None:
    for warning in summary["warnings"]:
        st.warning(warning)


def show_dataset(kind: str, ws: Path, ds: uploads.Dataset, summary: dict, preview) -> None:
    key = f"data_{kind}_{ds.name}"
    if files := kind_page(kind).files(ds):
        st.caption(files)
    if summary["error"]:
        st.error(summary["error"])
    else:
        kind_page(kind).show(key, summary, preview)
    if not ds.sample:
        with st.popover("Delete", key=f"{key}_confirm"):
            if users := runs_using(ws, ds.path):
                st.warning(f"Used by {len(users)} run(s): {', '.join(users)}. Their results "
                           "stay, but they cannot be resumed or re-checked from this data.",
                           icon=":material/warning:")
            st.button(f"Delete '{ds.name}' for good", key=f"{key}_delete", type="primary",
                      on_click=delete, args=(kind, ws, ds.name))


def dataset_list(kind: str, ws: Path) -> None:
    """One expander per stored dataset, the one just saved open."""
    just_saved = st.session_state.pop(f"data_{kind}_opened", None)
    for ds in uploads.list_datasets(ws, kind):
        summary, preview = overview(kind, str(ds.path), uploads.dataset_stamp(ds.path))
        status = "⚠️ cannot be used" if summary["error"] else kind_page(kind).shape(summary)
        label = f"**{ds.name}**{' (bundled sample)' if ds.sample else ''} · {status}"
        with st.expander(label, expanded=ds.name == just_saved):
            show_dataset(kind, ws, ds, summary, preview)


def stream_section(stream) -> None:
    with st.container(key=f"data_{stream.kind}"):
        st.header(stream.title)
        ws = workspace()
        upload_area(stream.kind, ws)
        show_notice(stream.kind)
        dataset_list(stream.kind, ws)


st.title("Data")
for stream in STREAMS.values():
    stream_section(stream)
