"""The error every checkpoint reader raises for a file it cannot load, and its one-line reason."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: the message names the file and the reason."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of ``err``'s message, cut at ``limit`` characters (library errors can be long)."""
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line[:limit] + ("..." if len(line) > limit else "")
