"""Why a path is not a readable regular file, in words, for error messages.

A FIFO, a socket or a device where a video or an annotation file is expected is named as such
and never opened (reading a FIFO waits forever for a writer); only a path that does not exist is
"not found". Pure standard library: the annotation parsers and the decoder both use it.
"""

from __future__ import annotations

import stat
from pathlib import Path

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_a_file(path: Path, what: str = "a video file") -> str:
    """The reason ``path`` is not a regular file: "file not found", "a broken symbolic link",
    "is a FIFO (named pipe), not a video file", ..."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if path.is_symlink() else "file not found"
    except (OSError, ValueError) as err:  # ValueError: an embedded NUL byte
        return f"cannot be read ({getattr(err, 'strerror', None) or err})"
    kind = next((name for test, name in _KINDS if test(mode)), None)
    return f"is {kind}, not {what}" if kind else "not a regular file"
