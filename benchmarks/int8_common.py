"""Helpers shared by the int8 benchmarks (``int8_options.py``, ``int8_quality.py``, ``index_throughput.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def loadavg() -> str:
    """``/proc/loadavg`` (the machine is shared: every result records how loaded it was)."""
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unavailable"


def default_videos() -> Path | None:
    """Real videos to run on: ``tests/data/videos`` if a clone has them, else the team's shared folder."""
    for d in (Path("tests/data/videos"), Path("/work/shared/data/videos")):
        if d.is_dir():
            return d
    return None


def finish(result: dict, out: str | Path, failed: list[str], check: bool) -> int:
    """Write ``result`` (with ``checks_failed``) as JSON, print the failed checks; the exit status."""
    result["checks_failed"] = failed
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    for f in failed:
        print(f"CHECK FAILED: {f}", file=sys.stderr)
    return 1 if (check and failed) else 0
