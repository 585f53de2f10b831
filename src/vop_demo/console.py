"""What ``vop demo`` prints: every line labelled with what it belongs to (``[vop] step 50/600
...``; ``[demo]`` for the world, the cache and the backbone), and progress bars only where a
person watches them: when both stdout and stderr are terminals. Otherwise (``vop demo > log``,
a pipe, CI) there are no bars, only the plain labelled lines.

Runs trained side by side write to the same stdout from their own processes; each complete line
goes out in one write, so lines interleave but never mix.
"""

from __future__ import annotations

import contextlib
import io
import sys


def bars_wanted(quiet: bool = False) -> bool:
    """Progress bars: not ``--quiet``, and stdout and stderr are both terminals."""
    return not quiet and _isatty(sys.stdout) and _isatty(sys.stderr)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or bare stream
        return False


def run_label(name: str, seed: int, seeds) -> str:
    """``vop`` with one training seed, ``vop seed 1`` with several."""
    return name if len(tuple(seeds)) <= 1 else f"{name} seed {seed}"


class LabelledLines(io.TextIOBase):
    """A text stream that writes every complete line to ``stream`` as ``[label] line``, in one
    write and flushed; a carriage return ends a line too (a progress bar's frame becomes a line)."""

    def __init__(self, stream, label: str):
        super().__init__()
        self.stream, self.prefix, self.pending = stream, f"[{label}] ", ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.stream.write(self.prefix + line + "\n")
        if lines:
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def finish(self) -> None:
        """Write what is left of an unfinished line."""
        if self.pending.strip():
            self.stream.write(self.prefix + self.pending + "\n")
        self.pending = ""
        self.stream.flush()


@contextlib.contextmanager
def labelled_stdout(label: str):
    """Within the block, everything printed to stdout (``print``, ``tqdm.write``) is labelled."""
    stream = LabelledLines(sys.stdout, label)
    try:
        with contextlib.redirect_stdout(stream):
            yield stream
    finally:
        stream.finish()


def say(label: str, message: str) -> None:
    """One labelled line on stdout."""
    print(f"[{label}] {message}", flush=True)
