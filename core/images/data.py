"""Loading and validating image datasets (MVTec AD layout), and reading their pixels lazily.

A dataset is a folder, or a zip of one (its files at the top or in one top-level folder):
`train/good/*` normal training images; optional `test/good/*` (label 0) and
`test/<defect_type>/*` (label 1); optional `ground_truth/<defect_type>/<name>_mask.png` (0 is
normal, >0 defect; same size as the image). A flat folder of images is all training images.

Files are told apart by content (their first bytes): PNG, JPEG, BMP and TIFF are images (a JPEG
named `.png` is read as a JPEG); GIF, WebP, HEIF/AVIF (by content or extension) are a DataError
naming the file; anything else (a README, a subfolder outside the layout) is ignored and listed
in one warning; hidden files, `__MACOSX/`, `Thumbs.db`, `desktop.ini` and the uploads store's
`upload.json` are ignored silently.
Every image and mask is decoded once while listing: `verify()` (PNG checksums), then `load()`
(a truncated JPEG passes `verify()`). `ImageFile.LOAD_TRUNCATED_IMAGES` stays False, so a
truncated file raises instead of being padded with grey. A broken file is skipped and named in
`skipped` and a warning (`on_corrupt="skip"`) or is a DataError (`"fail"`).

Pixels are taken as stored: no EXIF rotation (masks are drawn on the stored pixels), alpha is
dropped, 16-bit grayscale is scaled by 1/65535, float images are clipped to [0, 1].

Importing this module does not import torch (~4 s): the Data page lists and summarizes datasets
with it. `ImageFolderDataset` imports torch when it first makes a tensor.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.archive import extract_zip
from core.config import defaults
from core.errors import DataError

KINDS = "PNG, JPEG, BMP or TIFF"
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "DIB", "TIFF")  # JPEG opens multi-picture (MPO) too
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".tif", ".tiff"}
UNSUPPORTED_SUFFIXES = {".gif": "GIF", ".webp": "WebP", ".heic": "HEIF", ".heif": "HEIF",
                        ".avif": "AVIF", ".ico": "ICO", ".svg": "SVG", ".jp2": "JPEG 2000"}
# ignored silently: OS clutter, and the uploads store's metadata (core.uploads.META_FILE)
SYSTEM_NAMES = {"__macosx", "thumbs.db", "desktop.ini", "upload.json"}
LAYOUT_DIRS = ("train", "test", "ground_truth")
RESIZE_MODES = ("resize", "pad")
HIGH_DEPTH = {"I", "I;16", "I;16L", "I;16B", "I;16N"}  # integer grayscale, scaled by 1/65535
GRAY_MODES = {"1", "L", "LA", "F", *HIGH_DEPTH}
MAX_PIXELS = defaults("swinmae.data").max_pixels  # configs/swinmae.yaml, also for the Data page


@dataclass
class ImageItem:
    """One image file. `size` (width, height) and `mode` are filled in while listing."""

    path: Path
    label: int  # 0 normal, 1 defect
    defect_type: str  # "good" for normal
    mask_path: Path | None  # None: no mask (normal, or a defect image without ground truth)
    size: tuple[int, int] | None = None  # (width, height) in pixels
    mode: str | None = None  # Pillow mode as stored: "L", "RGB", "I;16", ...


@dataclass
class ImageDataset:
    """Training images, test images, and what was noticed while listing them."""

    train: list[ImageItem]  # normal images for training (train/good or the flat folder)
    test: list[ImageItem]  # test/good + test/<defect>/* (empty when there is no test/)
    warnings: list[str]  # one human-readable line per issue
    skipped: list[str]  # "name: reason" for each corrupt file skipped
    root: Path | None = None  # the folder the items live in (a zip's extraction folder)
    layout: str = "mvtec"  # "mvtec" | "flat"


# ---------------------------------------------------------------- telling files apart

# (offset, bytes, format): what a file's first bytes say it is
MAGIC = ((0, b"\x89PNG\r\n\x1a\n", "PNG"), (0, b"\xff\xd8\xff", "JPEG"), (0, b"II*\x00", "TIFF"),
         (0, b"MM\x00*", "TIFF"), (0, b"GIF8", "GIF"), (8, b"WEBP", "WebP"),
         (4, b"ftypheic", "HEIF"), (4, b"ftypmif1", "HEIF"), (4, b"ftypavif", "AVIF"))


def _sniff(head: bytes) -> str | None:
    """The image format the first bytes of a file announce ('PNG', 'GIF', ...), or None."""
    dib_header_size = int.from_bytes(head[14:18], "little")
    if head[:2] == b"BM" and dib_header_size in (12, 40, 52, 56, 64, 108, 124):
        return "BMP"  # 'BM' alone would match text files; the DIB header size makes it sure
    return next((fmt for at, magic, fmt in MAGIC if head[at:at + len(magic)] == magic), None)


def _hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in SYSTEM_NAMES


def _entries(folder: Path) -> list[Path]:
    """The visible entries of `folder` by name; [] when it is not a folder."""
    return sorted(p for p in folder.iterdir() if not _hidden(p)) if folder.is_dir() else []


def _some(names: list[str], k: int = 5) -> str:
    """'a, b, c' or 'a, b, c, d, e (and 7 more)'."""
    more = f" (and {len(names) - k} more)" if len(names) > k else ""
    return ", ".join(names[:k]) + more


class _TooLarge(Exception):
    """An image over the pixel cap (`max_pixels`), seen in its header before decoding; the
    message says its size."""


def _check_pixels(path: Path, max_pixels: int) -> None:
    """_TooLarge when the image's header declares more than `max_pixels` pixels; nothing is
    decoded. Pillow's own bomb warning is silenced (this is the cap), its error reworded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=PILLOW_FORMATS) as im:
                w, h = im.size
        except Image.DecompressionBombError:
            raise _TooLarge(f"more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels") from None
    if w * h > max_pixels:
        raise _TooLarge(f"{w}×{h} = {w * h:,} pixels")


class _Scan:
    """Listing one dataset folder: its root, the corrupt-file policy, and what was skipped or
    ignored on the way. Names in messages are paths inside the dataset (`test/crack/003.png`)."""

    def __init__(self, root: Path, on_corrupt: str, max_pixels: int = MAX_PIXELS):
        self.root, self.on_corrupt, self.max_pixels = root, on_corrupt, max_pixels
        self.skipped: list[str] = []
        self.skipped_paths: set[Path] = set()
        self.ignored: list[str] = []

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() + ("/" if path.is_dir() else "")

    def files(self, folder: Path) -> list[Path]:
        """The image files directly in `folder`, by name; the rest is noted as ignored."""
        found = []
        for path in _entries(folder):
            if path.is_file() and self.is_image(path):
                found.append(path)
            else:
                self.ignored.append(self.rel(path))
        return found

    def is_image(self, path: Path) -> bool:
        """True for an image we read; False for another kind of file; DataError for an image
        type we do not read. A file named like an image but holding something else counts as
        an image here, so that decoding it reports it as corrupt."""
        with open(path, "rb") as f:
            found = _sniff(f.read(32))
        if found in ("PNG", "JPEG", "TIFF", "BMP"):
            return True
        unsupported = found or UNSUPPORTED_SUFFIXES.get(path.suffix.lower())
        if unsupported:
            raise DataError(f"{self.rel(path)}: expected a {KINDS} image, found {unsupported}; "
                            f"convert it (e.g. to PNG) or remove it")
        return path.suffix.lower() in IMAGE_SUFFIXES

    def inspect(self, path: Path) -> tuple[tuple[int, int], str] | None:
        """((width, height), mode) of a readable image; None (noted as skipped) or a DataError
        (on_corrupt="fail") for a broken one."""
        expected = f"a complete {KINDS} image"
        try:
            _check_pixels(path, self.max_pixels)
            with Image.open(path, formats=PILLOW_FORMATS) as im:
                im.verify()  # structure and checksums; does not decode the pixels
            with Image.open(path, formats=PILLOW_FORMATS) as im:
                im.load()  # decodes everything: raises on truncated data
                return im.size, im.mode
        except _TooLarge as e:
            reason = (f"{e}, over the cap of {self.max_pixels:,} (swinmae.data.max_pixels; "
                      "decoding takes ~10 bytes a pixel)")
            expected = f"at most {self.max_pixels:,} pixels"
        except UnidentifiedImageError:
            reason = f"not a readable {KINDS} image"
        except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error...
            reason = f"cannot be decoded ({str(e) or type(e).__name__})"
        if self.on_corrupt == "fail":
            raise DataError(f"{self.rel(path)}: {reason}; expected {expected} "
                            f"(on_corrupt='skip' would skip it)")
        self.skipped.append(f"{self.rel(path)}: {reason}")
        self.skipped_paths.add(path)
        return None

    def items(self, folder: Path, label: int, defect_type: str) -> list[ImageItem]:
        """The readable images directly in `folder` as items."""
        return [ImageItem(path, label, defect_type, None, *found)
                for path in self.files(folder) if (found := self.inspect(path)) is not None]


# ---------------------------------------------------------------- layout

def _as_folder(path: Path, extract_to: Path | None) -> Path:
    """The dataset folder: `path` itself, or where the zip at `path` was extracted."""
    if path.is_dir():
        return path
    if not path.exists():
        raise DataError(f"{path}: expected a folder of images or a .zip archive, found nothing")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path.name}: expected a folder of images or a .zip archive, "
                        f"found a file that is not a zip archive")
    if extract_to is None:
        extract_to = Path(tempfile.mkdtemp(prefix="atc-images-"))
        atexit.register(shutil.rmtree, extract_to, ignore_errors=True)
    with open(path, "rb") as f:
        extract_zip(f, extract_to)
    return Path(extract_to)


def dataset_root(folder: Path) -> Path:
    """`folder`, or its only entry when that is a folder not named like a layout folder
    (a zip that wraps the dataset in one top-level folder)."""
    entries = [p for p in folder.iterdir() if not _hidden(p)]
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in LAYOUT_DIRS:
        return entries[0]
    return folder


def _mvtec(scan: _Scan) -> tuple[list[ImageItem], list[ImageItem]]:
    """(train, test) items of an MVTec layout; masks are paired later."""
    root, good = scan.root, scan.root / "train" / "good"
    scan.ignored += [scan.rel(p) for p in _entries(root) if p.name not in LAYOUT_DIRS]
    scan.ignored += [scan.rel(p) for p in _entries(root / "train") if p != good]
    train = scan.items(good, 0, "good") if good.is_dir() else []
    test = []
    for folder in _entries(root / "test"):
        if folder.is_dir():
            test += scan.items(folder, int(folder.name != "good"), folder.name)
        else:
            scan.ignored.append(scan.rel(folder))
    return train, test


def _no_training_images(scan: _Scan) -> DataError:
    """The error for a dataset without one usable training image, saying what was found."""
    expected = (f"expected {KINDS} images in train/good/ (MVTec layout: train/good/, "
                f"optional test/<type>/ and ground_truth/<type>/) or directly in the folder")
    entries = [scan.rel(p) for p in _entries(scan.root)]
    if (scan.root / "train").is_dir():
        entries = [scan.rel(p) for p in _entries(scan.root / "train" / "good")] \
            or ["train/ without images in train/good/"]
    found = _some(entries) if entries else "an empty folder"
    if not (scan.root / "train").is_dir() and entries:
        found += " but no train/ folder"
    if scan.skipped:
        found += f"; skipped as unreadable: {_some(scan.skipped, 3)}"
    return DataError(f"{scan.root.name}: {expected}; found {found}")


def _mask_target(by_key: dict, scan: _Scan, mask: Path, defect_type: str) -> ImageItem | None:
    """The test item a mask belongs to (stem `<name>_mask` or `<name>`), None when its image
    was skipped as corrupt; DataError when there is none or it already has a mask."""
    stems = [mask.stem.removesuffix("_mask"), mask.stem]
    item = next((by_key[(defect_type, s)] for s in stems if (defect_type, s) in by_key), None)
    if item is None:
        folder = scan.root / "test" / defect_type
        if any(p.parent == folder and p.stem in stems for p in scan.skipped_paths):
            return None
        raise DataError(f"{scan.rel(mask)}: expected an image test/{defect_type}/{stems[0]}.* "
                        f"for this mask, found none")
    if item.mask_path is not None:
        raise DataError(f"{scan.rel(item.path)} has two masks, {scan.rel(item.mask_path)} and "
                        f"{scan.rel(mask)}; expected one")
    return item


def _pair_masks(scan: _Scan, test: list[ImageItem]) -> None:
    """Set `mask_path` of test items from ground_truth/<defect_type>/, checking sizes."""
    gt = scan.root / "ground_truth"
    by_key = {(item.defect_type, item.path.stem): item for item in test}
    for folder in _entries(gt):
        if not folder.is_dir():
            scan.ignored.append(scan.rel(folder))
            continue
        for mask in scan.files(folder):
            item = _mask_target(by_key, scan, mask, folder.name)
            found = None if item is None else scan.inspect(mask)
            if found is None:
                continue
            if found[0] != item.size:
                (mw, mh), (iw, ih) = found[0], item.size
                raise DataError(f"{scan.rel(mask)} is {mw}×{mh} (width×height) but its image "
                                f"{scan.rel(item.path)} is {iw}×{ih}; expected the same size")
            item.mask_path = mask


def _warnings(scan: _Scan, test: list[ImageItem]) -> list[str]:
    """One line per issue found while listing."""
    notes = []
    if scan.skipped:
        notes.append(f"skipped {len(scan.skipped)} unreadable file(s): {_some(scan.skipped)}")
    if scan.ignored:
        notes.append(f"ignored {len(scan.ignored)} entries that are not {KINDS} images in "
                     f"the expected layout: {_some(scan.ignored)}")
    defects = [it for it in test if it.label == 1]
    unmasked = [scan.rel(it.path) for it in defects if it.mask_path is None]
    if unmasked:
        notes.append(f"{len(unmasked)} of {len(defects)} defect images have no mask in "
                     f"ground_truth/<type>/; pixel metrics skip them: {_some(unmasked)}")
    if test and not defects:
        notes.append("test/ holds no defect images: image AUROC needs some")
    if defects and len(defects) == len(test):
        notes.append("test/ holds no normal images (test/good/): image AUROC needs some")
    return notes


def load_image_dataset(path: str | Path, on_corrupt: str = "skip",
                       extract_to: str | Path | None = None,
                       max_pixels: int = MAX_PIXELS) -> ImageDataset:
    """List and validate an image dataset: an MVTec-layout folder, a zip of one, or a flat folder
    of images (all training images). A zip is extracted into `extract_to` (default: a temporary
    folder removed when the process exits). `on_corrupt`: "skip" or "fail" (see the module doc);
    an image of more than `max_pixels` pixels (from its header, before decoding) is treated
    the same way.

    Raises DataError, naming the file, for an unsupported image type, a mask without an image or
    of another size than its image, a corrupt file under "fail", or no training image at all.
    """
    if on_corrupt not in ("skip", "fail"):
        raise ValueError(f"on_corrupt: expected 'skip' or 'fail', found {on_corrupt!r}")
    folder = _as_folder(Path(path), Path(extract_to) if extract_to else None)
    scan = _Scan(dataset_root(folder), on_corrupt, max_pixels)
    layout = "mvtec" if any((scan.root / d).is_dir() for d in LAYOUT_DIRS) else "flat"
    train, test = _mvtec(scan) if layout == "mvtec" else (scan.items(scan.root, 0, "good"), [])
    if not train:
        raise _no_training_images(scan)
    _pair_masks(scan, test)
    return ImageDataset(train, test, _warnings(scan, test), scan.skipped, scan.root, layout)


def summarize_images(ds: ImageDataset) -> dict:
    """JSON-able summary: counts per split and defect type, size range, modes, masks, issues."""
    items = ds.train + ds.test
    for item in items:
        if item.size is None:  # items made by hand: read the header only
            with Image.open(item.path) as im:
                item.size, item.mode = im.size, im.mode
    widths, heights = [it.size[0] for it in items], [it.size[1] for it in items]
    modes = Counter(it.mode for it in items)
    defects = [it for it in ds.test if it.label == 1]
    return {
        "layout": ds.layout, "train": len(ds.train), "test": len(ds.test),
        "test_good": len(ds.test) - len(defects), "test_defect": len(defects),
        "counts": {"train": dict(Counter(it.defect_type for it in ds.train)),
                   "test": dict(sorted(Counter(it.defect_type for it in ds.test).items()))},
        "width": [min(widths), max(widths)] if items else None,  # [min, max] in pixels
        "height": [min(heights), max(heights)] if items else None,
        "modes": dict(sorted(modes.items())),
        "channels": 1 if set(modes) <= GRAY_MODES else 3,  # a sensible default for `channels`
        "masks": sum(it.mask_path is not None for it in ds.test),
        "defects_without_mask": sum(it.mask_path is None for it in defects),
        "skipped": list(ds.skipped), "warnings": list(ds.warnings),
    }


# ---------------------------------------------------------------- pixels

def pad_geometry(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(w, h, left, top): a width×height image scaled to fit size×size keeping its aspect,
    centred. E.g. pad_geometry(200, 100, 64) == (64, 32, 0, 16)."""
    scale = size / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return w, h, (size - w) // 2, (size - h) // 2


def _check_args(size: int, channels: int, resize: str) -> None:
    if not (isinstance(size, int) and size > 0):
        raise ValueError(f"size: expected a positive int, found {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 or 3, found {channels!r}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize: expected one of {RESIZE_MODES}, found {resize!r}")


def _fit(img: Image.Image, size: int, resize: str, resample: Image.Resampling) -> Image.Image:
    """`img` stretched to size×size ("resize"), or scaled to fit and centred on black ("pad")."""
    if resize == "resize":
        return img.resize((size, size), resample)
    w, h, left, top = pad_geometry(*img.size, size)
    canvas = Image.new(img.mode, (size, size), 0)
    canvas.paste(img.resize((w, h), resample), (left, top))
    return canvas


def _decoded(path: Path) -> Image.Image:
    """The fully decoded image at `path`; DataError naming it when it cannot be read."""
    try:
        with Image.open(path, formats=PILLOW_FORMATS) as im:
            im.load()
            return im.copy()
    except Exception as e:  # see _Scan.inspect
        raise DataError(f"{path}: cannot be read ({str(e) or type(e).__name__}); expected a "
                        f"complete {KINDS} image") from None


def load_image(path: Path, size: int, channels: int, resize: str = "resize") -> np.ndarray:
    """(C, size, size) float32 in [0, 1] from the image at `path`, converted to "L" (C=1) or
    "RGB" (C=3), stretched ("resize") or fitted and padded with black ("pad"); bilinear."""
    _check_args(size, channels, resize)
    img = _decoded(path)
    if img.mode in HIGH_DEPTH or img.mode == "F":  # keep the depth: resample as float
        scale = 65535.0 if img.mode != "F" else 1.0
        img = Image.fromarray(np.clip(np.asarray(img, np.float32) / scale, 0, 1))
    else:
        img = img.convert("L" if channels == 1 else "RGB")
    pixels = np.asarray(_fit(img, size, resize, Image.Resampling.BILINEAR), np.float32)
    pixels = pixels if img.mode == "F" else pixels / 255.0
    # (H, W) -> (C, H, W) by repeating gray; (H, W, C) -> (C, H, W)
    pixels = np.repeat(pixels[None], channels, 0) if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)


def load_mask(path: Path | None, size: int, resize: str = "resize") -> np.ndarray:
    """(size, size) uint8 0/1 from a mask (the geometry of `load_image`, nearest neighbour);
    zeros when `path` is None. Masks of 0/1 and of 0/255 both work: a pixel is defect when it
    is above 0 (masks whose maximum is 1) or above 127 (otherwise)."""
    _check_args(size, 1, resize)
    if path is None:
        return np.zeros((size, size), np.uint8)
    gray = np.asarray(_decoded(path).convert("L"))
    binary = (gray > (0 if gray.max() <= 1 else 127)).astype(np.uint8)
    fitted = _fit(Image.fromarray(binary), size, resize, Image.Resampling.NEAREST)
    return np.array(fitted, dtype=np.uint8)


class ImageFolderDataset:
    """A map-style torch dataset: items as tensors, each read from disk when asked for (nothing
    is opened here). Not derived from `torch.utils.data.Dataset`, so that importing this module
    does not import torch; `DataLoader`, `Subset` and samplers need only `__len__` and
    `__getitem__`.

    An item is {"image": (C, size, size) float32, "label": int, "index": i} plus, with
    `with_masks`, "mask": (size, size) uint8 0/1 and "mask_known": bool (True for normal images
    and defect images with a mask; False for a defect image without one, whose zeros are not
    ground truth, so pixel metrics must leave it out). `hflip` flips image and mask together
    left-right with probability 1/2 (training augmentation). `crop`: the item is a random
    crop × crop part of the size × size image instead (training at a zoom, `data.zoom`).
    """

    def __init__(self, items: list[ImageItem], size: int, channels: int, resize: str = "resize",
                 with_masks: bool = False, hflip: bool = False, crop: int | None = None):
        _check_args(size, channels, resize)
        if crop is not None and not 0 < crop <= size:
            raise ValueError(f"crop: expected 1 to {size} pixels, found {crop}")
        self.items, self.size, self.channels, self.resize = list(items), size, channels, resize
        self.with_masks, self.hflip, self.crop = with_masks, hflip, crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        import torch  # see the class docstring; cached in sys.modules after the first item

        item = self.items[i]
        image = torch.from_numpy(load_image(item.path, self.size, self.channels, self.resize))
        flip = self.hflip and bool(torch.rand(()) < 0.5)  # torch RNG: seeded per worker
        view = self._view(flip)
        out = {"image": view(image), "label": item.label, "index": i}
        if self.with_masks:
            out["mask"] = view(torch.from_numpy(load_mask(item.mask_path, self.size,
                                                          self.resize)))
            out["mask_known"] = item.label == 0 or item.mask_path is not None
        return out

    def _view(self, flip: bool):
        """What an item shows of its image (..., size, size) and mask alike: flipped, and
        cropped at one random place when `crop` is set."""
        import torch

        top = left = 0
        side = self.crop or self.size
        if side < self.size:
            top, left = torch.randint(self.size - side + 1, (2,)).tolist()

        def view(x):
            x = x[..., top:top + side, left:left + side]
            return x.flip(-1) if flip else x
        return view
