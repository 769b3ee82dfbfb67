"""Image uploads: image files placed in an MVTec tree by their names, or one zip extracted
safely (`core.archive`), stored as a dataset folder through the dataset store
(`core.uploads.store`)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path, PurePosixPath

from core.archive import extract_zip, safe_parts
from core.errors import DataError
from core.images.data import IMAGE_SUFFIXES, KINDS, LAYOUT_DIRS, SYSTEM_NAMES
from core.uploads import Upload, dataset_name, listed, sanitize_name, store, write_upload


def save_image_dataset(ws: Path, dataset: str, files: list[Upload], *,
                       round_id: str | None = None) -> Path:
    """Store uploaded images, or one zip of them, as `<ws>/uploads/images/<dataset>/`.

    A `.zip` (alone: one archive is one dataset) is extracted with `extract_zip`; when it wraps
    everything in one top-level folder (`bottle/train/good/...`), that folder is dropped. Image
    files are placed by `image_paths`: normal training images in `train/good/` unless their name,
    a path inside a folder the user uploaded, already follows the MVTec layout. `upload.json`
    keeps the uploaded names under "uploaded". Pixels are not checked here (see
    `dataset_summary`); `round_id` and replacing work as in `core.uploads.store`.

    Raises DataError for a bad dataset name, no files, a zip with other files, a file that is not
    a zip or an image by its name, an unsafe path, two files that would be stored at one path,
    an unsafe or unreadable archive, or an existing dataset this round did not save.
    """
    name = dataset_name(dataset)
    if not files:
        raise DataError(f"expected a .zip archive or {KINDS} image files, found none")
    zips = [up for up in files if up[0].lower().endswith(".zip")]
    if zips and len(files) > 1:
        raise DataError(f"{listed([up[0] for up in files])}: expected one .zip archive on its "
                        f"own, or image files without an archive; found {len(zips)} archive(s) "
                        f"among {len(files)} files")
    placed = {} if zips else image_paths(files)

    def fill(staging: Path) -> None:
        if zips:
            content = zips[0][1]
            if not isinstance(content, (bytes, bytearray, memoryview)):
                content.seek(0)  # an UploadedFile may have been read already
            try:
                extract_zip(content, staging)
            except DataError as e:
                raise DataError(f"{zips[0][0]}: {e}") from None
            _drop_top_folder(staging)
        for rel, (_, content) in placed.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            write_upload(content, staging / rel)

    return store(ws, "images", name, fill, {"uploaded": [up[0] for up in files]}, round_id)


def image_paths(files: list[Upload]) -> dict[str, Upload]:
    """Where each uploaded image goes in an image dataset: {relative path: upload}.

    A name may be a path: a folder upload names each file by its path inside the chosen folder,
    that folder first (`bottle/test/crack/000.png`). When all such paths share one first folder
    that is not `train`, `test` or `ground_truth`, it is dropped. A path that then follows the
    MVTec layout (`train/good/x.png`, `test/<type>/x.png`, `ground_truth/<type>/x_mask.png`) is
    kept; any other file is a normal training image, `train/good/<its folders and name joined
    by _>`. Every part is sanitised (`sanitize_name`); files hidden by the OS (`.DS_Store`,
    `._x.png`, `__MACOSX/`) are left out. DataError for an absolute path or `..`, a name that is
    not an image's (.png, .jpg, ...), two files stored at one path, or no image left.

    >>> sorted(image_paths([("b/test/crack/0.png", b""), ("b/c d/1.jpg", b""), ("2.png", b"")]))
    ['test/crack/0.png', 'train/good/2.png', 'train/good/c_d_1.jpg']
    """
    visible = []
    for up in files:
        rel = safe_parts(up[0], "file")
        if not rel:
            raise DataError(f"file {up[0]!r}: expected a file name, found none")
        if not any(p.startswith(".") or p.lower() in SYSTEM_NAMES for p in rel):
            visible.append((up, rel))
    tops = {rel[0] for _, rel in visible if len(rel) > 1}
    if len(tops) == 1 and tops.isdisjoint(LAYOUT_DIRS):  # the uploaded folder's own name
        visible = [(up, rel[1:] if len(rel) > 1 else rel) for up, rel in visible]
    placed: dict[str, list[Upload]] = {}
    for up, rel in visible:
        suffix = PurePosixPath(rel[-1]).suffix
        if suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{up[0]}: expected a .zip archive or a {KINDS} image "
                            f"({', '.join(sorted(IMAGE_SUFFIXES))}), found "
                            f"{repr(suffix) if suffix else 'no extension'}")
        mvtec = len(rel) == 3 and rel[0] in LAYOUT_DIRS
        safe = ([sanitize_name(p) for p in rel] if mvtec
                else ["train", "good", sanitize_name("_".join(rel))])
        placed.setdefault("/".join(safe), []).append(up)
    for rel, ups in placed.items():
        if len(ups) > 1:
            raise DataError(f"{listed([up[0] for up in ups])}: would all be stored as {rel}; "
                            f"expected names that differ in letters or digits")
    if not placed:
        raise DataError(f"{listed([up[0] for up in files])}: expected {KINDS} image files, "
                        f"found only files the system hides")
    return {rel: ups[0] for rel, ups in placed.items()}


def _drop_top_folder(folder: Path) -> None:
    """Move the content of `folder`'s only entry up when that is a folder not named like a layout
    folder (a zip of `bottle/`); OS clutter (`__MACOSX/`, `.DS_Store`) does not count."""
    entries = [p for p in folder.iterdir()
               if not (p.name.startswith(".") or p.name.lower() in SYSTEM_NAMES)]
    if len(entries) != 1 or not entries[0].is_dir() or entries[0].name in LAYOUT_DIRS:
        return
    top = folder / f".top-{secrets.token_hex(4)}"
    os.rename(entries[0], top)  # first, so a child named like the folder can move up
    for child in top.iterdir():
        os.rename(child, folder / child.name)
    top.rmdir()
