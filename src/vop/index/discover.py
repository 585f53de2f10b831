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


@dataclass
class Collection:
    """Where a collection's videos are: a local folder (``root`` absolute, ``local`` set) or an
    fsspec URI (``local`` None: each video is fetched to a temporary file to decode it)."""

    root: str  # what the manifest records: an absolute path, or the URI as given
    files: list[VideoFile]
    local: Path | None = None

    def source(self, relpath: str):
        """A context manager yielding a local path of the video (the file itself when local)."""
        return _local_copy(self.root, self.local, relpath)


def open_collection(where: str | os.PathLike) -> Collection:
    """The videos under a folder, a ``file://`` URI or any fsspec URI (``s3://``, ``gs://``, ...)."""
    from vop.index.uri import filesystem, local_path

    local = local_path(where)
    if local is not None:
        root = local.resolve()
        return Collection(str(root), discover_videos(root), root)
    fs, path = filesystem(where)
    if not fs.isdir(path):
        raise NotADirectoryError(f"video folder {where} does not exist or is not a folder")
    found = []
    base = path.rstrip("/") + "/"
    for full, info in sorted(fs.find(path, detail=True).items()):
        rel = full[len(base):] if full.startswith(base) else full.rsplit("/", 1)[-1]
        if any(part.startswith(".") for part in rel.split("/")) or Path(rel).suffix.lower() not in VIDEO_EXTENSIONS:
            continue
        found.append(VideoFile(rel, int(info.get("size") or 0), _mtime_ns(info)))
    return Collection(str(where).rstrip("/"), found, None)


def _mtime_ns(info: dict) -> int:
    """The modification time an fsspec backend reports (names and types differ), in ns; 0 if none."""
    import datetime

    for key in ("mtime", "LastModified", "updated", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if isinstance(value, datetime.datetime):
            value = value.timestamp()
        return int(float(value) * 1e9)
    return 0


class _local_copy:
    def __init__(self, root: str, local: Path | None, relpath: str):
        self.root, self.local, self.relpath, self.tmp = root, local, relpath, None

    def __enter__(self) -> Path:
        if self.local is not None:
            return self.local / self.relpath
        import tempfile

        from vop.index.uri import filesystem, join

        fs, path = filesystem(join(self.root, self.relpath))
        self.tmp = tempfile.TemporaryDirectory(prefix="vop-fetch-")
        target = Path(self.tmp.name) / Path(self.relpath).name
        fs.get_file(path, str(target))
        return target

    def __exit__(self, *exc):
        if self.tmp is not None:
            self.tmp.cleanup()
