"""What machine a benchmark ran on: CPU model and the SIMD extensions that change every ratio
(AVX2 only vs AVX-512 / VNNI / BF16 / AMX). Shared by the benchmark scripts."""

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


def cpu_flags() -> str:
    """The SIMD extensions of :data:`SIMD` this CPU has, space-separated ("unknown" off Linux)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return " ".join(f for f in SIMD if f in flags)
    return "unknown"
