"""core.archive: zip extraction keeps the folder structure and refuses escapes (`..`, absolute
paths, links), oversized and over-counted archives and headers that lie, writing nothing.
More archive attacks: tests/safety/test_archives.py."""
from __future__ import annotations

import io
import stat
import zipfile

import pytest

from conftest import make_zip
from core import archive
from core.archive import extract_zip
from core.errors import DataError


def test_extract_zip_keeps_the_folder_structure(tmp_path):
    data = make_zip(("good/a.png", b"A" * 10), ("good/sub/b.png", b"B"), ("top.txt", b"t"),
                    ("empty/", b""), ("./dot/c.png", b"C"))
    written = extract_zip(data, tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.relative_to(out).as_posix() for p in written) == [
        "dot/c.png", "good/a.png", "good/sub/b.png", "top.txt"]
    assert (out / "good" / "a.png").read_bytes() == b"A" * 10
    assert (out / "good" / "sub" / "b.png").read_bytes() == b"B"


def symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


@pytest.mark.parametrize("member, message", [
    (("../evil.txt", b"x"), "found '..'"),
    (("ok/../../evil.txt", b"x"), "found '..'"),
    (("..\\evil.txt", b"x"), "found '..'"),
    (("/etc/evil.txt", b"x"), "found an absolute one"),
    (("C:/evil.txt", b"x"), "found an absolute one"),
    (symlink("link", "/etc/passwd"), "found a link"),
])
def test_extract_zip_rejects_escapes_before_writing_anything(tmp_path, member, message):
    data = make_zip(("first.txt", b"written first?"), member)
    with pytest.raises(DataError, match=message):
        extract_zip(data, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "first.txt").exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").rglob("*")) == []


def test_extract_zip_caps_size_and_count(tmp_path):
    bomb = make_zip(("zeros.bin", b"\0" * 100_000))  # compresses to ~100 bytes
    assert len(bomb) < 1000
    with pytest.raises(DataError, match="at most 50,000 bytes uncompressed, found 100,000"):
        extract_zip(bomb, tmp_path / "a", max_bytes=50_000)
    with pytest.raises(DataError, match="at most 2 files, found 3"):
        extract_zip(make_zip(("1", b""), ("2", b""), ("3", b"")), tmp_path / "b", max_files=2)
    assert not list((tmp_path).rglob("*.bin"))


def test_extract_zip_header_that_lies_about_size_is_an_error(tmp_path):
    data = bytearray(make_zip(("keep.txt", b"k"), ("zeros.bin", b"\0" * 100_000)))
    # patch the declared size in the central directory (offset 24 of its entry) down to 10:
    # zipfile then stops at 10 bytes and the CRC check fails (our own byte count is a backstop)
    at = data.rfind(b"PK\x01\x02")
    data[at + 24:at + 28] = (10).to_bytes(4, "little")
    with pytest.raises(DataError, match="zip member 'zeros.bin': cannot be read .*CRC"):
        extract_zip(bytes(data), tmp_path / "out", max_bytes=50_000)
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []  # all removed


def test_copy_capped_counts_the_bytes_that_come_out(tmp_path):
    with pytest.raises(DataError, match="at most 100 bytes, found more"):
        archive._copy_capped(io.BytesIO(b"x" * 101), tmp_path / "f", 100, 100, "f")
    assert archive._copy_capped(io.BytesIO(b"x" * 100), tmp_path / "g", 100, 100, "g") == 100


def test_extract_zip_refuses_non_zip(tmp_path):
    with pytest.raises(DataError, match="expected a zip archive"):
        extract_zip(b"not a zip", tmp_path / "out")
