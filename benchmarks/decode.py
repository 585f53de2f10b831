"""Decoding speed: 12 frames from each real video in ../shared/data/videos, side by side.

* ``vop``      : ``count_frames`` + ``sample_indices`` + ``read_frames`` (one pass, early stop, FFmpeg threads)
* ``vop-224``  : the same with ``short_side=224`` (what training and ``vop prepare`` use)
* ``opencv``   : the X-Pool / ModelScope way: ``cv2.VideoCapture``, ``CAP_PROP_FRAME_COUNT``,
                 then ``set(CAP_PROP_POS_FRAMES, i)`` + ``read()`` per frame (up to 5 retries)
* ``cache``    : reading the same 12 samples from a ``vop prepare`` frame cache (32 frames, 224 px)

Each method runs ``--repeats`` times per video, interleaved, and the median is kept. Also
reports whether OpenCV's frames match ours (mean absolute pixel difference) since seeking by
frame number is known to land on the wrong frame in some containers.

    python benchmarks/decode.py [--repeats 3] [--out benchmarks/results/decode.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VIDEOS = Path(os.environ.get("VOP_SHARED_DATA", REPO.parent / "shared" / "data")) / "videos"
FRAMES = 12
SKIP = {"corrupted.mp4"}  # fails by design; the typed error is tested, not timed


def opencv_xpool(path: Path, frames: int) -> np.ndarray:
    """X-Pool's ``VideoCapture`` sampler: indices from the reported count, a seek per frame."""
    import cv2

    from vop.data.sampling import sample_indices

    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if count < 1:
        return np.zeros((0, 1, 1, 3), np.uint8)
    indices = sample_indices(count, frames)  # our index rule, so frames can be compared with ours
    out = []
    for index in indices:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
        for _ in range(5):
            if ok:
                break
            ok, frame = cap.read()
        if ok:
            out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(out) if out else np.zeros((0, 1, 1, 3), np.uint8)


def vop_read(path: Path, frames: int, short_side: int | None) -> np.ndarray:
    from vop.data.decode import count_frames, read_frames
    from vop.data.sampling import sample_indices

    return read_frames(path, sample_indices(count_frames(path), frames), short_side=short_side)


def cache_read(cache, video_id: str, frames: int) -> np.ndarray:
    from vop.data.sampling import sample_indices

    stored = cache.load(video_id)
    return np.ascontiguousarray(stored[sample_indices(stored.shape[0], frames)])


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "decode.json"))
    args = parser.parse_args(argv)

    import av
    import cv2

    from vop.data.annotations import VideoRecord
    from vop.data.cache import FrameCache, build_cache

    paths = sorted(p for p in VIDEOS.glob("*/*") if p.suffix in {".mp4", ".mkv", ".mov", ".avi", ".webm"}
                   and p.name not in SKIP)
    records = [VideoRecord(p.name, p, ["-"], "bench") for p in paths]
    with tempfile.TemporaryDirectory() as tmp:
        t_build, _ = timed(lambda: build_cache(records, tmp, frames=32, short_side=224, progress=False))
        cache = FrameCache(tmp)
        methods = {
            "vop": lambda p: vop_read(p, FRAMES, None),
            "vop-224": lambda p: vop_read(p, FRAMES, 224),
            "opencv": lambda p: opencv_xpool(p, FRAMES),
            "cache": lambda p: cache_read(cache, p.name, FRAMES),
        }
        rows = []
        for path in paths:
            times = {m: [] for m in methods}
            outputs = {}
            for _ in range(args.repeats):
                for name, fn in methods.items():
                    seconds, outputs[name] = timed(lambda fn=fn, path=path: fn(path))
                    times[name].append(seconds)
            ours, theirs = outputs["vop"], outputs["opencv"]
            same_shape = ours.shape == theirs.shape
            diff = float(np.abs(ours.astype(np.int16) - theirs.astype(np.int16)).mean()) if same_shape else None
            row = {"video": f"{path.parent.name}/{path.name}", "frames_returned": {k: int(v.shape[0]) for k, v in outputs.items()},
                   "shape_vop": list(ours.shape[1:]), "shape_opencv": list(theirs.shape[1:]),
                   "opencv_mean_abs_diff_vs_vop": diff}
            row.update({f"{k}_s": statistics.median(v) for k, v in times.items()})
            rows.append(row)
            print(f"{row['video']:<42} vop {row['vop_s'] * 1e3:7.1f} ms  vop-224 {row['vop-224_s'] * 1e3:7.1f} ms  "
                  f"opencv {row['opencv_s'] * 1e3:7.1f} ms  cache {row['cache_s'] * 1e3:6.2f} ms  "
                  f"opencv/vop {row['opencv_s'] / row['vop_s']:5.1f}x  "
                  f"diff {'-' if diff is None else f'{diff:.1f}'}  n_cv={theirs.shape[0]}", flush=True)

    total = {k: sum(r[f"{k}_s"] for r in rows) for k in methods}
    ok = [r for r in rows if r["frames_returned"]["opencv"] == FRAMES]  # OpenCV got every frame
    ratios = {"opencv_over_vop": total["opencv"] / total["vop"],
              "opencv_over_vop_where_opencv_ok": sum(r["opencv_s"] for r in ok) / sum(r["vop_s"] for r in ok),
              "opencv_over_vop224": total["opencv"] / total["vop-224"],
              "vop_over_cache": total["vop"] / total["cache"],
              "vop224_over_cache": total["vop-224"] / total["cache"]}
    print("totals (s): " + "  ".join(f"{k} {v:.3f}" for k, v in total.items()))
    print("ratios: " + "  ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))
    failed_cv = [r["video"] for r in rows if r["frames_returned"]["opencv"] != FRAMES]
    print(f"OpenCV returned fewer than {FRAMES} frames for: {', '.join(failed_cv) or 'none'}")
    print(f"cache build for {len(paths)} videos (32 frames, 224 px): {t_build:.2f} s")
    result = {
        "benchmark": "decode 12 frames per real video",
        "machine": "shared 2-core CPU (other engineers' jobs may run concurrently); no GPU",
        "cpu_count": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "platform": platform.platform(),
        "python": sys.version.split()[0], "av": av.__version__, "opencv": cv2.__version__,
        "repeats": args.repeats, "statistic": "median per video, summed over videos",
        "frames_per_video": FRAMES, "cache": {"frames": 32, "short_side": 224, "build_s": t_build},
        "totals_s": total, "ratios": ratios, "opencv_incomplete": failed_cv, "videos": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
