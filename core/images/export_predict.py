"""Score an image folder with an exported Swin MAE model:
`python predict.py IMAGE_FOLDER --out scores.csv`.

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
top share of pixels (or its maximum); flagged above `threshold`.
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


def in_normal_units(maps: np.ndarray, keys: np.ndarray, normal: dict, bank) -> np.ndarray:
    """(B, S, S) maps of images with `keys` (B, T [+ D]), or (B, M, S, S): M maps of each
    image → (B, S, S) z-scores against the normal maps' mean and spread (the nearest
    `neighbours` of `bank`'s when given); |z| when two-sided; an image's M maps each capped
    at `map_cap` (when > 0), then summed. Each spread map is floored at a tenth of its median
    and a thousandth of its mean map's median magnitude, as the run did."""
    if "neighbours" in normal:
        k = normal["neighbours"]
        query, near = comparable(keys, bank["keys"], normal)  # (B, K), (N, K)
        dist = ((query[:, None] - near[None]) ** 2).sum(-1)
        ref = bank["maps"][np.argsort(dist, axis=1, kind="stable")[:, :k]]  # (B, k, [M,] S, S)
        mean, std = ref.mean(axis=1), ref.std(axis=1, ddof=1)
    else:
        mean, std = (np.asarray(normal[key], np.float32) for key in ("mean", "std"))

    def median(m: np.ndarray) -> np.ndarray:  # (..., S, S) → (..., 1, 1): the lower middle
        # value, as torch's median
        flat = m.reshape(*m.shape[:-2], -1)
        return np.quantile(flat, 0.5, axis=-1, method="lower")[..., None, None]
    floor = np.maximum(0.1 * median(std), 1e-3 * median(np.abs(mean))) + 1e-12
    z = (maps - mean) / np.maximum(std, floor)
    z = np.abs(z) if normal.get("two_sided") else z  # absent before two-sided maps
    if z.ndim == 3:
        return z
    cap = normal.get("map_cap") or 0.0  # absent before the cap
    return (np.minimum(z, cap) if cap > 0 else z).sum(axis=1)


def score(folder: Path, spec: dict, session) -> pd.DataFrame:
    root, items = list_images(folder)
    if not items:
        sys.exit(f"{folder}: expected PNG, JPEG, BMP or TIFF images, found none")
    normal, bank = spec["normal_map"], None
    if normal and "neighbours" in normal:
        with np.load(HERE / normal["file"], allow_pickle=False) as z:
            bank = {"maps": z["maps"].astype(np.float32), "keys": z["keys"]}
    scores = []
    for i in range(0, len(items), spec["batch_size"]):
        batch = np.stack([load_image(p, spec["image_size"], spec["channels"], spec["resize"])
                          for p, _ in items[i:i + spec["batch_size"]]])  # (B, C, S, S)
        maps, keys = session.run(None, {"images": batch})  # (B, [M,] S, S), (B, T [+ D])
        if normal:
            maps = in_normal_units(maps, keys, normal, bank)
        scores.append(image_scores(maps, spec["image_score"], spec["topk"]))
    scores = np.concatenate(scores)
    return pd.DataFrame({"file": [p.relative_to(root).as_posix() for p, _ in items],
                         "defect_type": [d for _, d in items], "score": scores,
                         "is_anomaly": (scores > spec["threshold"]).astype(np.int8),
                         "label": [int(d != "good") for _, d in items]})


def main() -> None:
    import onnxruntime as ort
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of images (or an MVTec layout)")
    parser.add_argument("--out", type=Path, default=Path("scores.csv"))
    args = parser.parse_args()
    spec = json.loads((HERE / "model.json").read_text(encoding="utf-8"))
    session = ort.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
    frame = score(args.folder, spec, session)
    frame.to_csv(args.out, index=False, float_format="%.6g")
    print(f"{len(frame)} images scored, {int(frame['is_anomaly'].sum())} above the threshold "
          f"{spec['threshold']:.4g}: {args.out}")


if __name__ == "__main__":
    main()
