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


def decoded_clips(decoder, videos_dir: Path, limit: int, size: int = 224):
    """Up to ``limit`` videos of ``videos_dir`` that decode, as model input ``[F, 3, size, size]``
    each (``decoder``: a ``VideoEncoder``), and their relative paths; undecodable ones are skipped."""
    from vop.data.decode import DecodeError
    from vop.data.transforms import clip_preprocess
    from vop.index.discover import discover_videos

    clips, used = [], []
    for f in discover_videos(videos_dir):
        if len(clips) == limit:
            break
        try:
            frames = decoder.decode(videos_dir / f.relpath)[0]
        except DecodeError:
            continue
        clips.append(clip_preprocess(frames, size=size))  # [F, 3, S, S]
        used.append(f.relpath)
    return clips, used
