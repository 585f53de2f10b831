"""Thread settings for the search benchmarks, to apply *before* NumPy is imported (BLAS reads them
once, when NumPy loads it). No NumPy import here on purpose."""

from __future__ import annotations

import os


def threads_from_argv(argv: list[str], default: str = "1") -> str:
    """The value of ``--threads N`` / ``--threads=N`` in ``argv`` (``default`` without one)."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return default


def pin_blas_threads(argv: list[str]) -> None:
    """BLAS and OpenMP get ``--threads`` threads; their idle workers sleep at once
    (``OPENBLAS_THREAD_TIMEOUT=4``, ``OMP_WAIT_POLICY=PASSIVE``) instead of spinning and slowing
    whatever is timed next on the same cores. Values already in the environment win."""
    threads = threads_from_argv(argv)
    for var, value in (("OMP_NUM_THREADS", threads), ("OPENBLAS_NUM_THREADS", threads),
                       ("OPENBLAS_THREAD_TIMEOUT", "4"), ("OMP_WAIT_POLICY", "PASSIVE")):
        os.environ.setdefault(var, value)
