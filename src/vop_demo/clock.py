"""C3's time: the measured wall clock of the ``vop demo`` process, from its start to its results.

A demo that trains every run itself measures its own wall clock and records it beside the runs
(``runs-<world>/clock.json``, keyed by the set of runs). A rerun that reuses every run reports
the clock recorded by the demo that trained them, not the seconds it took to reuse them. A demo
that trained some runs and reused others has no honest wall clock of the whole: its time is
reported as not measured (C3 is then "not checked"; a fresh ``--out`` measures it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

OWN_PROCESS_S = 60.0  # a process started this shortly before the demo began was started for it (a loaded machine imports slowly)


def process_started_at() -> float | None:
    """When this process started (``time.time()`` scale), from ``/proc``; None where unknown."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks since boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def demo_started_at(entered: float | None = None) -> float:
    """The start of the demo's wall clock: the process's start when the process was started for
    the demo (within :data:`OWN_PROCESS_S` of ``entered``, when the command began), else
    ``entered`` (the demo called inside a longer-lived process, e.g. a test session)."""
    entered = time.time() if entered is None else entered
    started = process_started_at()
    if started is not None and 0 <= entered - started <= OWN_PROCESS_S:
        return started
    return entered


def runs_key(keys: list[str]) -> str:
    """One key for a set of runs (their result keys)."""
    return hashlib.sha256(json.dumps(sorted(keys)).encode()).hexdigest()[:16]


def record(runs_dir: Path, keys: list[str], seconds: float, jobs: int, machine: str) -> None:
    """Remember ``seconds`` as the wall clock of the demo that trained the runs ``keys``."""
    path = runs_dir / "clock.json"
    table = json.loads(path.read_text()) if path.is_file() else {}
    table[runs_key(keys)] = {"seconds": seconds, "runs": len(keys), "jobs": jobs, "machine": machine,
                             "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    path.write_text(json.dumps(table, indent=1) + "\n")


def recorded(runs_dir: Path, keys: list[str]) -> dict | None:
    """The wall clock recorded by the demo that trained exactly the runs ``keys``, if any."""
    path = runs_dir / "clock.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(runs_key(keys))


def demo_clock(runs: list[dict], runs_dir: Path, started: float, jobs: int, machine: str,
               save: bool = True) -> dict:
    """C3's clock for a demo that began at ``started``, read now: ``seconds`` (None: not measured),
    ``source`` and the number of runs it reused; a demo that trained every run records its clock
    (``save``)."""
    keys = [r["key"] for r in runs]
    reused = sum(bool(r.get("reused")) for r in runs)
    seconds = time.time() - started
    if reused == 0:
        if save:
            record(runs_dir, keys, seconds, jobs, machine)
        return {"seconds": seconds, "source": "measured", "reused": 0, "this_process_seconds": seconds}
    earlier = recorded(runs_dir, keys) if reused == len(runs) else None
    if earlier is not None:
        return {"seconds": earlier["seconds"], "source": "recorded", "recorded_on": earlier["date"],
                "recorded_jobs": earlier["jobs"], "reused": reused, "this_process_seconds": seconds}
    return {"seconds": None, "source": "not measured", "reused": reused, "this_process_seconds": seconds}
