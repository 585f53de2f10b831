"""Which file an index row may hand to a client: the one that was indexed, inside the root.

An index folder is input: a user may be given one, and its manifest (the root) and its rows
(paths, device and inode) are plain files anyone can edit. So none of them is trusted:

* the root is the one given on the command line (``vop serve --root DIR``), else the root the
  manifest records, and that only while it is an existing folder other than the file system's
  root ``/`` (:func:`serve_root`); without a root no file is served;
* a row is served only when it decoded (status ``ok``) and records a device and inode; its path
  is relative, in POSIX form, with no ``..``, ``.`` or empty part, and names a video (suffix);
* the path, symlinks resolved, must lie inside the root and be a regular file whose device and
  inode are the recorded ones (:func:`served_file`); the server then re-checks the descriptor it
  reads from (``vop.serve.files``), so a file swapped after the check is not sent either.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from vop.index.discover import VIDEO_EXTENSIONS


def serve_root(recorded: str | None, given: str | Path | None = None) -> tuple[Path | None, str | None]:
    """``(root, None)``: the folder whose files may be served; or ``(None, why)`` when none is.

    ``given`` (``--root``) must be an existing folder (else ``NotADirectoryError``); the
    ``recorded`` root is used only when it is an absolute path to an existing folder that is
    not ``/``."""
    if given is not None:
        root = Path(given).expanduser().resolve()
        if not root.is_dir():
            raise NotADirectoryError(f"--root {given} is not a folder")
        return root, None
    if not recorded or not os.path.isabs(recorded) or "\x00" in recorded:
        return None, f"the recorded root {recorded!r} is not an absolute path"
    root = Path(recorded).resolve()
    if not root.is_dir():
        return None, f"the recorded root {recorded} is not a folder (moved?)"
    if root == Path(root.anchor):
        return None, f"the recorded root {recorded} is the whole file system"
    return root, None


def parse_file_id(file_id) -> tuple[int, int] | None:
    """``"device:inode"`` -> ``(device, inode)``; anything else -> None."""
    if not isinstance(file_id, str):
        return None
    dev, sep, ino = file_id.partition(":")
    if not (sep and dev.isascii() and dev.isdigit() and ino.isascii() and ino.isdigit()):
        return None
    return int(dev), int(ino)


def safe_relpath(path) -> PurePosixPath | None:
    """A stored row path as written by ``vop index`` (relative, POSIX, a video suffix), else None."""
    if not isinstance(path, str) or not path or "\x00" in path or path.startswith("/"):
        return None
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    rel = PurePosixPath(path)
    return rel if rel.suffix.lower() in VIDEO_EXTENSIONS else None


def same_file(st: os.stat_result, file_id: tuple[int, int]) -> bool:
    return stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == file_id


def served_file(root: Path | None, info: dict | None) -> tuple[Path, tuple[int, int]] | None:
    """``(resolved path, (device, inode))`` of the file a row may serve, or None (see the module)."""
    if root is None or info is None or info.get("status") != "ok":
        return None
    file_id, rel = parse_file_id(info.get("file_id")), safe_relpath(info.get("path"))
    if file_id is None or rel is None:
        return None
    try:
        path = (root / rel).resolve(strict=True)
        st = path.stat()
    except (OSError, RuntimeError):  # gone, a link loop, a name the OS refuses
        return None
    if not path.is_relative_to(root) or not same_file(st, file_id):
        return None
    return path, file_id
