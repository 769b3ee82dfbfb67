"""Archives (issue 13, items 7, 8, 10): names too long for a file system, two members at one
path, and an archive that expands far beyond its size are clear DataErrors, with nothing
written."""
from __future__ import annotations

import pytest

from conftest import make_zip
from core import archive
from core.archive import extract_zip
from core.errors import DataError
from core.images.uploads import save_image_dataset


def files_under(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_a_member_name_too_long_for_the_file_system_is_named(tmp_path):
    long = "x" * 300 + ".png"
    zipped = make_zip(("train/good/a.png", b"1"), (f"train/good/{long}", b"2"))
    with pytest.raises(DataError, match=r"at most 255 bytes, found one of 304"):
        extract_zip(zipped, tmp_path / "out")
    assert files_under(tmp_path / "out") == []


def test_a_long_name_reaches_the_upload_page_as_a_data_error(tmp_path):
    zipped = make_zip(("train/good/" + "é" * 200 + ".png", b"1"))  # 400 bytes in UTF-8
    with pytest.raises(DataError, match="parts.zip: zip member"):
        save_image_dataset(tmp_path, "d", [("parts.zip", zipped)])
    assert not any((tmp_path / "uploads" / "images").iterdir())


@pytest.mark.parametrize("second", ["train/good/a.png", "train//good/./a.png",
                                    "train\\good\\a.png"])
def test_two_members_at_one_path_are_refused_naming_both(tmp_path, second):
    zipped = make_zip(("train/good/a.png", b"first"), (second, b"second"))
    with pytest.raises(DataError) as e:
        extract_zip(zipped, tmp_path / "out")
    assert "'train/good/a.png'" in str(e.value) and f"'{second}'" in str(e.value)
    assert files_under(tmp_path / "out") == []


def test_an_archive_that_expands_past_the_ratio_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "RATIO_FREE_BYTES", 1024 * 1024)
    zipped = make_zip(("zeros.bin", b"\0" * 4 * 1024 * 1024))  # ~4 KB → 4 MB: ratio ~1000
    with pytest.raises(DataError, match=r"ratio [\d,]+\); expected at most 100 times"):
        extract_zip(zipped, tmp_path / "out")
    assert files_under(tmp_path / "out") == []


def test_a_compressible_archive_below_the_ratio_is_extracted(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "RATIO_FREE_BYTES", 1024)
    text = "".join(f"{i},{i * 0.37:.4f},{i % 17}\n" for i in range(20_000)).encode()
    zipped = make_zip(("data/train.csv", text))
    assert len(text) / len(zipped) < archive.MAX_ZIP_RATIO
    written = extract_zip(zipped, tmp_path / "out")
    assert [p.read_bytes() for p in written] == [text]


def test_a_small_archive_is_never_held_to_the_ratio(tmp_path):
    zipped = make_zip(("zeros.bin", b"\0" * 1024 * 1024))  # ratio ~1000, but only 1 MB
    assert len(extract_zip(zipped, tmp_path / "out")) == 1
