"""Local paths and fsspec URIs (``file://``, ``s3://``, ``gs://``, ...) for videos, shards and exports.

A plain path or a ``file://`` URI is used as a local path (the fast path, with device/inode
recorded); any other scheme goes through fsspec, which needs the user's backend for it
(``s3fs`` for ``s3://``, ``gcsfs`` for ``gs://``): a missing one is one clear line naming it.
The index folder itself (SQLite + FAISS) is always local.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_SCHEME = "file://"


def has_scheme(where: str | os.PathLike) -> bool:
    return "://" in str(where)


def local_path(where: str | os.PathLike) -> Path | None:
    """The local path of a plain path or a ``file://`` URI; None for any other scheme."""
    text = str(where)
    if text.startswith(FILE_SCHEME):
        return Path(text[len(FILE_SCHEME):])
    return None if has_scheme(text) else Path(text)


def filesystem(where: str | os.PathLike):
    """``(fsspec filesystem, path inside it)`` for any path or URI."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(str(where))
    except (ImportError, ValueError) as err:  # unknown scheme, or its backend is not installed
        scheme = str(where).split("://", 1)[0]
        raise ValueError(
            f"{where}: cannot open {scheme}:// URIs ({err}); install the fsspec backend for it "
            f"(e.g. s3fs for s3://, gcsfs for gs://)"
        ) from None
    return fs, path


def join(where: str, name: str) -> str:
    """``where/name`` for a path or a URI (always '/')."""
    return str(where).rstrip("/") + "/" + name
