"""Image inputs (issue 13, item 10): an image whose header declares more pixels than
`swinmae.data.max_pixels` is never decoded: it is skipped and named (or fails the load with
`on_corrupt=fail`), with a message naming the setting."""
from __future__ import annotations

import struct
import warnings
import zlib

import pytest
from PIL import Image, PngImagePlugin

from core.config import load_config
from core.errors import DataError
from core.images.data import MAX_PIXELS, load_image_dataset


def png_claiming(path, width: int, height: int) -> None:
    """A few hundred bytes of PNG whose header says width×height gray pixels (a pixel bomb:
    the real thing compresses 13000×13000 zeros to ~490 KB); its data stops after one row."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = zlib.compress(b"\0" * (width + 1))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row)
                     + chunk(b"IEND", b""))


def small_images(folder, n: int = 4, size: int = 16) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("L", (size, size), i * 40).save(folder / f"{i}.png")


def test_a_pixel_bomb_is_skipped_from_its_header_without_decoding(tmp_path, monkeypatch):
    small_images(tmp_path / "d" / "train" / "good")
    png_claiming(tmp_path / "d" / "train" / "good" / "bomb.png", 13000, 13000)
    assert (tmp_path / "d" / "train" / "good" / "bomb.png").stat().st_size < 1000
    touched = []
    for step in ("load", "verify"):  # record which files get decoded or verified
        real = getattr(PngImagePlugin.PngImageFile, step)
        monkeypatch.setattr(PngImagePlugin.PngImageFile, step,
                            lambda im, _real=real: touched.append(im.filename) or _real(im))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # none: handled first
        ds = load_image_dataset(tmp_path / "d")
    assert len(ds.train) == 4 and not any(f.endswith("bomb.png") for f in touched)
    assert len(touched) == 8  # the 4 small images: verified and decoded
    assert ds.skipped == [f"train/good/bomb.png: 13000×13000 = 169,000,000 pixels, over the cap "
                          f"of {MAX_PIXELS:,} (swinmae.data.max_pixels; decoding takes ~10 "
                          "bytes a pixel)"]
    assert any("bomb.png" in w for w in ds.warnings)


def test_the_cap_fails_the_load_when_on_corrupt_is_fail(tmp_path):
    small_images(tmp_path / "d", size=64)
    with pytest.raises(DataError, match=r"0.png: 64×64 = 4,096 pixels, over the cap of 1,000 .*"
                                        r"expected at most 1,000 pixels"):
        load_image_dataset(tmp_path / "d", on_corrupt="fail", max_pixels=1000)


def test_the_cap_is_a_config_key_the_run_uses(tmp_path):
    from core.images.stages import load
    small_images(tmp_path / "d", size=64)
    cfg = load_config({"pipeline.img_data": str(tmp_path / "d"),
                       "swinmae.data.max_pixels": 4096})
    assert len(load(cfg)[1].train) == 4
    cfg.swinmae.data.max_pixels = 4095
    with pytest.raises(DataError, match="skipped as unreadable: 0.png: 64×64 = 4,096 pixels"):
        load(cfg)


def test_the_cap_must_be_positive():
    from core.errors import ConfigError
    with pytest.raises(ConfigError, match="swinmae.data.max_pixels: expected a value >= 1"):
        load_config({"swinmae.data.max_pixels": 0})


def test_an_image_past_pillows_own_limit_gets_the_same_message(tmp_path):
    small_images(tmp_path / "d")
    png_claiming(tmp_path / "d" / "huge.png", 20000, 20000)  # 400 M: Pillow refuses to open it
    ds = load_image_dataset(tmp_path / "d")
    assert ds.skipped == [f"huge.png: more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, over the "
                          f"cap of {MAX_PIXELS:,} (swinmae.data.max_pixels; decoding takes ~10 "
                          "bytes a pixel)"]
