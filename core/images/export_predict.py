"""Score an image folder with an exported Swin MAE model:
`python predict.py IMAGE_FOLDER --out scores.csv [--maps maps.npz]`.

Needs only numpy, pandas, pillow and onnxruntime; model.onnx and model.json sit beside this
file. The folder is read as the run read its data: an MVTec layout scores its test/<type>/
images (else train/good/), any other folder the images in it. Each image is converted to the
model's mode, fitted to its square (bilinear; stretched, or padded with black), scaled to
[0, 1]; model.onnx gives its smoothed anomaly map (with a defect head two or three: the
reconstruction error, the head's probability, and its features' distance to the normal ones)
and its key (a 16 x 16 thumbnail, then with `match_head` what the defect heads see), and the map
is put in units of the normal training images' maps at each pixel (their distance from
normal either way, when two-sided): of all of them, or (`neighbours` in model.json) of those
whose keys lie nearest the image's (each thumbnail less its mean and over its spread first,
when `match_shape`; the heads' part standardised over the normal images and weighted by
`match_head`), read from normal_maps.npz beside model.json; the
maps' z-scores, each capped at `map_cap`, are added; the image score is the mean of the map's
top share of pixels (or its maximum); flagged above `threshold`. `--maps` also writes each
image's pixel map as the run's Results shows it: with a defect head and model.json's `coarse`,
plus the head's map smoothed at `coarse.sigma` pixels in units of its `coarse.neighbours` nearest
normal images' (normal_maps.npz's `coarse`), counted only above them, times `coarse.weight`.
(Shipped verbatim by `python -m core.pipeline export`; it imports nothing of the project that
made it.)"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

HERE = Path(__file__).resolve().parent
FORMATS = ("PNG", "JPEG", "BMP", "DIB", "TIFF")
SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".tif", ".tiff"}
HIGH_DEPTH = {"I", "I;16", "I;16L", "I;16B", "I;16N"}  # integer grayscale, scaled by 1/65535
LAYOUT = ("train", "test", "ground_truth")


def visible(folder: Path) -> list:
    hidden = {"__macosx", "thumbs.db", "desktop.ini", "upload.json"}
    return sorted(p for p in folder.iterdir()
                  if not p.name.startswith(".") and p.name.lower() not in hidden)


def images_in(folder: Path) -> list:
    if not folder.is_dir():
        return []
    return [p for p in visible(folder) if p.is_file() and p.suffix.lower() in SUFFIXES]


def list_images(folder: Path) -> tuple:
    """(root, [(path, defect_type)]) of the images to score."""
    entries = visible(folder)
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in LAYOUT:
        folder = entries[0]  # a folder wrapping the dataset
    if not any((folder / d).is_dir() for d in LAYOUT):
        return folder, [(p, "good") for p in images_in(folder)]
    test = [(p, d.name) for d in visible(folder / "test") if d.is_dir() for p in images_in(d)] \
        if (folder / "test").is_dir() else []
    return folder, test or [(p, "good") for p in images_in(folder / "train" / "good")]


def fit(img: Image.Image, size: int, resize: str) -> Image.Image:
    if resize == "resize":
        return img.resize((size, size), Image.Resampling.BILINEAR)
    scale = size / max(img.size)
    w, h = max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))
    canvas = Image.new(img.mode, (size, size), 0)
    canvas.paste(img.resize((w, h), Image.Resampling.BILINEAR), ((size - w) // 2, (size - h) // 2))
    return canvas


def load_image(path: Path, size: int, channels: int, resize: str) -> np.ndarray:
    """(C, size, size) float32 in [0, 1]."""
    try:
        with Image.open(path, formats=FORMATS) as im:
            im.load()
            img = im.copy()
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError...
        sys.exit(f"{path}: cannot be read ({str(e) or type(e).__name__}); expected a complete "
                 "PNG, JPEG, BMP or TIFF image")
    if img.mode in HIGH_DEPTH or img.mode == "F":
        scale = 65535.0 if img.mode != "F" else 1.0
        img = Image.fromarray(np.clip(np.asarray(img, np.float32) / scale, 0, 1))
    else:
        img = img.convert("L" if channels == 1 else "RGB")
    pixels = np.asarray(fit(img, size, resize), np.float32)
    pixels = pixels if img.mode == "F" else pixels / 255.0
    pixels = np.repeat(pixels[None], channels, 0) if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)


def image_scores(maps: np.ndarray, how: str, topk: float) -> np.ndarray:
    """(B, H, W) → (B,): the maximum, or the mean of the top `topk` share of pixels."""
    flat = maps.reshape(len(maps), -1)
    if how == "max":
        return flat.max(axis=1)
    k = max(1, round(topk * flat.shape[1]))
    return np.sort(flat, axis=1)[:, -k:].mean(axis=1)


def shape_only(thumbs: np.ndarray) -> np.ndarray:
    """(N, T) thumbnails, each less its mean and over its spread (ddof 1, as torch's std)."""
    return (thumbs - thumbs.mean(axis=1, keepdims=True)) \
        / (thumbs.std(axis=1, ddof=1, keepdims=True) + 1e-6)


def comparable(query: np.ndarray, keys: np.ndarray, normal: dict) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Query keys (B, T [+ D]) and the normal ones (N, T [+ D]) as the run compared them: the
    thumbnails (by shape when `match_shape`), and with `match_head` the heads' part
    standardised over the normal images, each part's distance per number, that one weighted."""
    t = normal["thumbnail"] ** 2
    q, k = query[:, :t], keys[:, :t]
    if normal.get("match_shape"):  # absent before shape matching
        q, k = shape_only(q), shape_only(k)
    weight = normal.get("match_head") or 0.0  # absent before head matching
    if weight <= 0:
        return q, k
    dq, dk = query[:, t:], keys[:, t:]
    mean, std = dk.mean(axis=0), dk.std(axis=0, ddof=1) + 1e-6
    w = weight / np.sqrt(dk.shape[1])
    return (np.concatenate([q / np.sqrt(t), w * (dq - mean) / std], axis=1),
            np.concatenate([k / np.sqrt(t), w * (dk - mean) / std], axis=1))


def nearest(keys: np.ndarray, normal: dict, bank_keys: np.ndarray, k: int) -> np.ndarray:
    """(B, k) indices of the `k` normal images whose keys lie nearest each of `keys` (B, T [+
    D]), compared as the run compared them (`comparable`)."""
    query, near = comparable(keys, bank_keys, normal)  # (B, K), (N, K)
    dist = ((query[:, None] - near[None]) ** 2).sum(-1)
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def floored_z(maps: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(maps - mean) / std, each spread map floored at a tenth of its median and a thousandth
    of its mean map's median magnitude, as the run did (shapes broadcast, (..., S, S))."""
    def median(m: np.ndarray) -> np.ndarray:  # (..., S, S) → (..., 1, 1): the lower middle
        # value, as torch's median
        flat = m.reshape(*m.shape[:-2], -1)
        return np.quantile(flat, 0.5, axis=-1, method="lower")[..., None, None]
    floor = np.maximum(0.1 * median(std), 1e-3 * median(np.abs(mean))) + 1e-12
    return (maps - mean) / np.maximum(std, floor)


def in_normal_units(maps: np.ndarray, keys: np.ndarray, normal: dict, bank) -> np.ndarray:
    """(B, S, S) maps of images with `keys` (B, T [+ D]), or (B, M, S, S): M maps of each
    image → (B, S, S) z-scores against the normal maps' mean and spread (the nearest
    `neighbours` of `bank`'s when given); |z| when two-sided; an image's M maps each capped
    at `map_cap` (when > 0), then summed."""
    if "neighbours" in normal:
        ref = bank["maps"][nearest(keys, normal, bank["keys"], normal["neighbours"])]
        mean, std = ref.mean(axis=1), ref.std(axis=1, ddof=1)  # ref: (B, k, [M,] S, S)
    else:
        mean, std = (np.asarray(normal[key], np.float32) for key in ("mean", "std"))
    z = floored_z(maps, mean, std)
    z = np.abs(z) if normal.get("two_sided") else z  # absent before two-sided maps
    if z.ndim == 3:
        return z
    cap = normal.get("map_cap") or 0.0  # absent before the cap
    return (np.minimum(z, cap) if cap > 0 else z).sum(axis=1)


def blur(maps: np.ndarray, sigma: float) -> np.ndarray:
    """(B, S, S) → (B, S, S) float32: a Gaussian of `sigma` pixels with reflected borders, cut
    at 3 sigma or at the side, as the run smoothed (a blur matrix A: A · map · Aᵀ)."""
    side = maps.shape[-1]
    radius = max(1, min(int(np.ceil(3 * sigma)), side - 1))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    source = np.abs(np.arange(side)[:, None] + offsets[None])  # (S, taps), reflected at 0
    source = np.where(source > side - 1, 2 * (side - 1) - source, source)  # and at S - 1
    matrix = np.zeros((side, side))
    np.add.at(matrix, (np.repeat(np.arange(side), len(offsets)), source.ravel()),
              np.tile(kernel, side))
    return (matrix @ maps.astype(np.float64) @ matrix.T).astype(np.float32)


def coarse_units(maps: np.ndarray, keys: np.ndarray, normal: dict, bank) -> np.ndarray:
    """Images' maps (B, M, S, S) → (B, S, S): the coarse scale the run's pixel maps add
    (model.json's `coarse`): the head's map (the second) smoothed at `sigma` pixels, in units
    of its `neighbours` nearest normal images' head maps smoothed alike (`bank["coarse"]`,
    saved by the export as the run smoothed and rounded them), counted only above them, times
    `weight`."""
    coarse = normal["coarse"]
    ref = bank["coarse"][nearest(keys, normal, bank["keys"], coarse["neighbours"])]
    z = floored_z(blur(maps[:, 1], coarse["sigma"]), ref.mean(axis=1), ref.std(axis=1, ddof=1))
    return coarse["weight"] * z


def load_bank(normal: dict):
    """normal_maps.npz beside model.json: the normal images' maps and keys, and with a coarse
    scale their head maps smoothed as the run smoothed them; None without."""
    if not normal or "neighbours" not in normal:
        return None
    with np.load(HERE / normal["file"], allow_pickle=False) as z:
        return {name: z[name].astype(np.float32) for name in ("maps", "keys", "coarse")
                if name in z.files}  # coarse: absent before exports carried the coarse scale


def score(folder: Path, spec: dict, session, maps_out: Path | None = None) -> pd.DataFrame:
    """The images of `folder` scored and flagged; with `maps_out`, their pixel maps as the
    run's Results shows them (with its coarse scale) written there beside the file names."""
    root, items = list_images(folder)
    if not items:
        sys.exit(f"{folder}: expected PNG, JPEG, BMP or TIFF images, found none")
    normal = spec["normal_map"]
    bank = load_bank(normal)
    coarse = bank is not None and "coarse" in bank  # the pixel maps add a coarse scale
    scores, shown = [], []
    for i in range(0, len(items), spec["batch_size"]):
        batch = np.stack([load_image(p, spec["image_size"], spec["channels"], spec["resize"])
                          for p, _ in items[i:i + spec["batch_size"]]])  # (B, C, S, S)
        maps, keys = session.run(None, {"images": batch})  # (B, [M,] S, S), (B, T [+ D])
        z = in_normal_units(maps, keys, normal, bank) if normal else maps
        scores.append(image_scores(z, spec["image_score"], spec["topk"]))
        if maps_out is not None:
            shown.append((z + coarse_units(maps, keys, normal, bank) if coarse else z
                          ).astype(np.float16))
    scores = np.concatenate(scores)
    files = [p.relative_to(root).as_posix() for p, _ in items]
    if maps_out is not None:
        np.savez_compressed(maps_out, maps=np.concatenate(shown), files=np.array(files))
    return pd.DataFrame({"file": files, "defect_type": [d for _, d in items], "score": scores,
                         "is_anomaly": (scores > spec["threshold"]).astype(np.int8),
                         "label": [int(d != "good") for _, d in items]})


def main() -> None:
    import onnxruntime as ort
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of images (or an MVTec layout)")
    parser.add_argument("--out", type=Path, default=Path("scores.csv"))
    parser.add_argument("--maps", type=Path, help="also write the pixel anomaly maps (float16, "
                        "as the run's Results shows them) and the file names to this .npz")
    args = parser.parse_args()
    spec = json.loads((HERE / "model.json").read_text(encoding="utf-8"))
    session = ort.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
    frame = score(args.folder, spec, session, args.maps)
    frame.to_csv(args.out, index=False, float_format="%.6g")
    print(f"{len(frame)} images scored, {int(frame['is_anomaly'].sum())} above the threshold "
          f"{spec['threshold']:.4g}: {args.out}" + (f"; maps: {args.maps}" if args.maps else ""))


if __name__ == "__main__":
    main()
