"""What CPU this is: its model name and the SIMD extensions that change every speed ratio
(AVX2 only vs AVX-512 / VNNI / BF16 / AMX). The benchmarks record them beside their numbers, and
the OpenVINO runtime warns when int8 lacks the instructions that make it pay."""

from __future__ import annotations

import platform
from pathlib import Path

SIMD = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> set[str] | None:
    """Every flag of the CPU (``/proc/cpuinfo``); None where that cannot be read (off Linux)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def simd_flags() -> str:
    """The SIMD extensions of :data:`SIMD` this CPU has, space-separated ("unknown" off Linux)."""
    flags = cpu_flags()
    return "unknown" if flags is None else " ".join(f for f in SIMD if f in flags)
