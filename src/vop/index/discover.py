"""Find the videos of a collection and decide which shard owns each one."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("vop.index")

# Containers people actually have; matched case-insensitively on the file suffix.
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".mpg",
        ".mpeg",
        ".wmv",
        ".flv",
        ".3gp",
        ".ts",
        ".mts",
        ".m2ts",
        ".ogv",
        ".vob",
        ".divx",
        ".f4v",
        ".asf",
    }
)


@dataclass(frozen=True)
class VideoFile:
    """A video on disk; ``size`` + ``mtime_ns`` decide whether a stored vector is still valid."""

    relpath: str  # POSIX path relative to the collection root
    size: int
    mtime_ns: int
    file_id: str | None = None  # "device:inode" when found
    bad_name: bool = False  # the name is not UTF-8: relpath shows its bytes escaped (\\xNN)


def escape_name(relpath: str) -> tuple[str, bool]:
    """``(relpath, False)`` for a UTF-8 name, else the name with its undecodable bytes written
    ``\\xNN`` and True. os.walk hands such bytes over as lone surrogates, which SQLite cannot store."""
    try:
        relpath.encode("utf-8")
        return relpath, False
    except UnicodeEncodeError:
        raw = relpath.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace"), True


def discover_videos(root: str | Path) -> list[VideoFile]:
    """Every video file under ``root`` (recursive, hidden folders skipped), sorted by path.

    Symlinked folders are not followed, and a file link that resolves outside ``root`` is skipped:
    the server plays only files inside the collection, so such a video could never be shown.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"video folder {root} does not exist or is not a folder")
    real_root = root.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            full = Path(dirpath) / name
            try:
                st = full.stat()
            except OSError:  # vanished or a dangling link: nothing to index
                continue
            if full.is_symlink() and not full.resolve().is_relative_to(real_root):
                log.warning("skipping %s: a link to %s, outside the collection", full, full.resolve())
                continue
            relpath, bad_name = escape_name(full.relative_to(root).as_posix())
            if bad_name:
                log.warning("%s: file name is not valid UTF-8; recorded as an error row", relpath)
            found.append(VideoFile(relpath, st.st_size, st.st_mtime_ns, f"{st.st_dev}:{st.st_ino}", bad_name))
    return sorted(found, key=lambda v: v.relpath)


def shard_of(relpath: str, num_shards: int) -> int:
    """Stable shard number of a path (a hash, so shards stay balanced and survive new files)."""
    digest = hashlib.sha1(relpath.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


MAX_SHARDS = 100_000  # shards of one index (a shard's manifest.json is held to it too)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    if n > MAX_SHARDS:
        raise ValueError(f"--shard {text}: at most {MAX_SHARDS:,} shards")
    return i, n
