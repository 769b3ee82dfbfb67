"""Generate the bundled image sample: a made-up machined surface, so a fresh install can train the
image stream at once.

The data is ours and fully synthetic: 96×96 grayscale PNGs in the MVTec AD layout that
`core.images.data.load_image_dataset` reads.

- A normal part is a regular grid of small bumps (period `PERIOD` px, a random phase per image,
  so position alone tells nothing) on a mid-grey base, under gentle illumination (a linear
  gradient of random direction) with a little Gaussian sensor noise.
- `train/good/`: `N_TRAIN` normal parts; `test/good/`: `N_TEST_GOOD` more.
- `test/<type>/`: `N_PER_DEFECT` parts per defect type, each with one defect:
  `scratch` a thin bright line, `spot` a dark soft blob, `missing_pattern` a rectangle where the
  bump grid is absent (same mean brightness: only the texture tells it apart).
- `ground_truth/<type>/<name>_mask.png`: the defect's pixels as 255, the rest 0.

Regenerate with `python data/make_image_samples.py [OUT_DIR]` (default: `data/samples/images/`
next to this file). The seed is fixed, so two runs with the same numpy and Pillow (its zlib) give
byte-identical files; `tests/test_image_samples.py` checks the committed files against a fresh run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SEED = 20260102
SIZE = 96  # px, width and height
PERIOD = 8  # px between bumps of the normal pattern
N_TRAIN = 60
N_TEST_GOOD = 10
N_PER_DEFECT = 5
DEFECT_TYPES = ("scratch", "spot", "missing_pattern")
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "samples" / "images"

Y, X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)  # pixel row and column coordinates


def normal_part(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(background, pattern), each (SIZE, SIZE) float: a normal part is their sum.

    The background is the base grey, the illumination gradient and sensor noise; the pattern is
    the bump grid, which the `missing_pattern` defect removes.
    """
    phase_x, phase_y = rng.uniform(0, 2 * np.pi, size=2)
    pattern = 0.12 * np.sin(2 * np.pi * X / PERIOD + phase_x) * np.sin(2 * np.pi * Y / PERIOD
                                                                       + phase_y)
    angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0.04, 0.10)
    light = strength * ((X - SIZE / 2) * np.cos(angle) + (Y - SIZE / 2) * np.sin(angle)) / SIZE
    background = rng.uniform(0.47, 0.53) + light + rng.normal(0.0, 0.02, size=(SIZE, SIZE))
    return background, pattern


def scratch(image: np.ndarray, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a bright line 1.5-2.5 px wide and 30-50 px long; returns its mask (bool)."""
    x0, y0 = rng.uniform(20, SIZE - 20, size=2)
    angle, length, width = rng.uniform(0, np.pi), rng.uniform(30, 50), rng.uniform(1.5, 2.5)
    dx, dy = np.cos(angle), np.sin(angle)
    # distance of each pixel to the segment centred at (x0, y0)
    along = np.clip((X - x0) * dx + (Y - y0) * dy, -length / 2, length / 2)
    dist = np.hypot(X - (x0 + along * dx), Y - (y0 + along * dy))
    alpha = np.clip(width / 2 + 0.5 - dist, 0.0, 1.0)  # 1 inside, a 1 px soft edge
    image += 0.35 * alpha
    return alpha >= 0.5


def spot(image: np.ndarray, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darken a soft ellipse with radii of 4-8 px; returns its mask (bool)."""
    cx, cy = rng.uniform(20, SIZE - 20, size=2)
    rx, ry = rng.uniform(4, 8, size=2)
    r = np.hypot((X - cx) / rx, (Y - cy) / ry)  # 1 on the ellipse's edge
    image -= 0.3 * np.clip((1.25 - r) * 4, 0.0, 1.0)  # full inside r < 1, fading out by 1.25
    return r <= 1.0


def missing_pattern(image: np.ndarray, background: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Remove the bump grid from a 16-26 px rectangle; returns its mask (bool)."""
    w, h = rng.integers(16, 27, size=2)
    left, top = rng.integers(8, SIZE - 8 - w), rng.integers(8, SIZE - 8 - h)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[top:top + h, left:left + w] = True
    image[mask] = background[mask]
    return mask


DEFECTS = {"scratch": scratch, "spot": spot, "missing_pattern": missing_pattern}


def to_png(values: np.ndarray, path: Path) -> None:
    """Write [0, 1] floats as an 8-bit grayscale PNG (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")


def build_samples(seed: int = SEED) -> dict[str, np.ndarray]:
    """Every file as {relative path: (SIZE, SIZE) array}: floats in [0, 1] for images, bool for
    masks. Drawn in a fixed order from one generator, so the result depends only on `seed`."""
    rng = np.random.default_rng(seed)
    files = {}
    for split, count in (("train", N_TRAIN), ("test", N_TEST_GOOD)):
        for i in range(count):
            files[f"{split}/good/{i:03d}.png"] = sum(normal_part(rng))
    for kind in DEFECT_TYPES:
        for i in range(N_PER_DEFECT):
            background, pattern = normal_part(rng)
            image = background + pattern
            files[f"ground_truth/{kind}/{i:03d}_mask.png"] = DEFECTS[kind](image, background, rng)
            files[f"test/{kind}/{i:03d}.png"] = image
    return files


def main(out_dir: Path = DEFAULT_OUT_DIR) -> list[Path]:
    """Write the sample into `out_dir` (files of the same names are overwritten), print a
    summary, and return the written files. Other files there are kept but named, since a stale
    one would become part of the dataset."""
    out_dir = Path(out_dir)
    written = []
    for name, values in build_samples().items():
        to_png(values.astype(np.float64) if values.dtype == bool else values, out_dir / name)
        written.append(out_dir / name)
    total = sum(p.stat().st_size for p in written)
    print(f"{N_TRAIN} train, {N_TEST_GOOD} test/good, {N_PER_DEFECT} x {', '.join(DEFECT_TYPES)} "
          f"with masks: {len(written)} PNGs of {SIZE}x{SIZE} px, {total:,} B -> {out_dir}")
    others = sorted(set(p for p in out_dir.rglob("*") if p.is_file()) - set(written))
    if others:
        print(f"note: {len(others)} other file(s) in {out_dir} (delete them if stale): "
              + ", ".join(p.relative_to(out_dir).as_posix() for p in others[:5]))
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=DEFAULT_OUT_DIR,
                        help="folder for train/, test/ and ground_truth/ (default: %(default)s)")
    main(parser.parse_args().out_dir)
