"""Safe zip extraction: every member's path is checked (no absolute paths, `..`, links, names too
long for a file system, or two members at one path) and the archive's size, file count and
compression ratio are capped before anything is written; the bytes that really come out are
counted too, so a header that lies is caught.

A leaf module (errors and the standard library only): the dataset store (`core.uploads`) and the
image loader (`core.images.data`, which reads a zipped dataset) both use it."""
from __future__ import annotations

import contextlib
import io
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from core.errors import DataError

MAX_ZIP_BYTES = 2 * 1024**3  # uncompressed total an archive may expand to
MAX_ZIP_FILES = 100_000
MAX_ZIP_RATIO = 100  # uncompressed / compressed: images barely compress, CSV ~5-20x, bombs 1000x
RATIO_FREE_BYTES = 64 * 1024**2  # archives expanding to less than this skip the ratio check
MAX_NAME_BYTES = 255  # per path part: what common file systems allow


def safe_parts(name: str, what: str) -> list[str]:
    """The parts of a relative path (`\\` and `/` both separate, empty and `.` parts dropped);
    DataError for an absolute path or a `..` part. `what` names it in messages."""
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        raise DataError(f"{what} '{name}': expected a relative path, found an absolute one")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"{what} '{name}': expected a path inside the upload, found '..'")
    return parts


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The member's relative path, None for a folder entry; DataError for an unsafe one or a
    part longer than a file system allows."""
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DataError(f"zip member '{info.filename}': expected a regular file, found a link")
    parts = safe_parts(info.filename, "zip member")
    long = next((p for p in parts if len(p.encode()) > MAX_NAME_BYTES), None)
    if long is not None:
        raise DataError(f"zip member '{info.filename[:80]}…': expected names of at most "
                        f"{MAX_NAME_BYTES} bytes, found one of {len(long.encode())}")
    if info.is_dir() or not parts:
        return None
    return PurePosixPath(*parts)


def _checked_members(archive: zipfile.ZipFile, max_files: int
                     ) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The archive's files with their safe relative paths; DataError for an unsafe path, too
    many files, or two members stored at one path (naming both)."""
    members, seen = [], {}
    for info in archive.infolist():
        rel = _member_path(info)
        if rel is None:
            continue
        key = rel.as_posix()  # 'a//b.png', './a/b.png' and 'a\\b.png' are one path
        if key in seen:
            raise DataError(f"zip members '{seen[key]}' and '{info.filename}' would both be "
                            f"stored as {rel}; expected each path once")
        seen[key] = info.filename
        members.append((info, rel))
    if len(members) > max_files:
        raise DataError(f"zip archive: expected at most {max_files:,} files, "
                        f"found {len(members):,}")
    return members


def _expansion_cap(members: list[tuple[zipfile.ZipInfo, PurePosixPath]], max_bytes: int,
                   max_ratio: float) -> int:
    """The bytes the archive may expand to: `max_bytes`, and past RATIO_FREE_BYTES no more than
    `max_ratio` times its compressed size (a zip bomb: 2 MB that expand to 2 GB). DataError when
    the sizes the archive declares break either."""
    declared = sum(info.file_size for info, _ in members)
    packed = sum(info.compress_size for info, _ in members)
    if declared > max_bytes:
        raise DataError(f"zip archive: expected at most {max_bytes:,} bytes uncompressed, "
                        f"found {declared:,}")
    cap = min(max_bytes, max(RATIO_FREE_BYTES, int(max_ratio * packed)))
    if declared > cap:
        raise DataError(f"zip archive: {packed:,} bytes that expand to {declared:,} (ratio "
                        f"{declared / max(packed, 1):,.0f}); expected at most {max_ratio:g} "
                        f"times the compressed size past {RATIO_FREE_BYTES:,} bytes")
    return cap


def _copy_capped(src: BinaryIO, path: Path, budget: int, limit: int, member: str) -> int:
    """Copy until EOF; DataError once more than `budget` bytes came out (`limit` is the
    archive's cap, for the message). Returns the bytes copied."""
    written = 0
    with open(path, "wb") as out:
        while chunk := src.read(1024 * 1024):
            written += len(chunk)
            if written > budget:  # the header's size can lie (zip bombs): count what comes out
                raise DataError(f"zip member '{member}': expected the archive to expand to at "
                                f"most {limit:,} bytes, found more")
            out.write(chunk)
    return written


def extract_zip(data: bytes | BinaryIO, dest: Path, max_bytes: int = MAX_ZIP_BYTES,
                max_files: int = MAX_ZIP_FILES, max_ratio: float = MAX_ZIP_RATIO) -> list[Path]:
    """Extract a zip archive under `dest` (created) and return the files written.

    Every member is checked before anything is written: absolute paths, `..` components,
    symbolic links, names too long for a file system and two members at one path are
    DataErrors, as are more than `max_files` files or a declared total over `max_bytes` or over
    `max_ratio` times the compressed size (see `_expansion_cap`); the real decompressed size is
    counted too. On any error, the files written so far are removed. Folder structure inside the
    archive is kept.
    """
    dest = Path(dest)
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"expected a zip archive, found unreadable data ({e})") from None
    with archive:
        members = _checked_members(archive, max_files)
        cap = _expansion_cap(members, max_bytes, max_ratio)
        dest.mkdir(parents=True, exist_ok=True)
        root, written, budget = dest.resolve(), [], cap
        try:
            for info, rel in members:
                target = dest / rel
                if not target.resolve().is_relative_to(root):  # belt and braces
                    raise DataError(f"zip member '{info.filename}': leaves the target folder")
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    written.append(target)
                    with archive.open(info) as src:
                        budget -= _copy_capped(src, target, budget, cap, info.filename)
                except (zipfile.BadZipFile, RuntimeError, OSError, EOFError) as e:
                    raise DataError(f"zip member '{info.filename}': cannot be read ({e})") from None
        except BaseException:
            for path in written:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            raise
    return written
