"""Bounded numbers on the command line: argparse ``type=`` functions that refuse a value out of
range at parse time, before anything is allocated (``--frames 100000`` must not build a
6 GB batch and then an index that search refuses; ``--frames 0`` must not mean "the default").

The limits are the ones files are held to (:mod:`vop.limits`), so a command never writes what
another one then refuses. An out-of-range value is argparse's own one-line error, exit 2::

    vop index: error: argument --frames: 0 is out of range; expected an integer from 1 to 1024
"""

from __future__ import annotations

import argparse

from vop.limits import MAX_FRAMES, MAX_IMAGE_SIZE, MAX_SEARCH_PARAM

# limits of numbers that no file records (each is far above any useful value)
MIN_IMAGE_SIZE = 16  # short side of cached frames / model input: below it a frame is a smudge
MAX_BATCH = 4096  # videos or texts per forward pass
MAX_THREADS = 1024  # torch CPU threads, decoding processes, parallel runs
MAX_CHUNK = 10_000_000  # queries per similarity block
MAX_SEED = 2**32 - 1  # numpy's seed range


def bounded_int(lo: int, hi: int):
    """An argparse type: an integer in ``[lo, hi]``, else argparse's usage error (exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(
                f"{value} is out of range; expected an integer from {lo} to {hi}")
        return value

    parse.__name__ = f"integer {lo}..{hi}"  # what argparse names in its own messages
    return parse


def bounded_float(lo: float, hi: float):
    """An argparse type: a finite number in ``[lo, hi]`` (NaN and inf are refused), else argparse's
    usage error (exit 2)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None
        if not lo <= value <= hi:  # also False for NaN
            raise argparse.ArgumentTypeError(f"{text[:40]} is out of range; expected a number from {lo:g} to {hi:g}")
        return value

    parse.__name__ = f"number {lo:g}..{hi:g}"
    return parse


frames_arg = bounded_int(1, MAX_FRAMES)
image_size_arg = bounded_int(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
batch_arg = bounded_int(1, MAX_BATCH)
threads_arg = bounded_int(1, MAX_THREADS)
seed_arg = bounded_int(0, MAX_SEED)
port_arg = bounded_int(0, 65_535)  # 0: the system picks a free port
search_param_arg = bounded_int(1, MAX_SEARCH_PARAM)
