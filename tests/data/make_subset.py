"""Rebuild tests/data from the full third-party copy (the team's shared/data folder).

    python tests/data/make_subset.py /path/to/shared/data

Files are copied byte-for-byte, except four big annotation files that are cut to their first
videos (whole videos, file order kept, written back in the source's own JSON layout, which
re-serialises the full files byte-identically). What is cut, and why the tests do not need the
rest, is in tests/data/README.md.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

COPY = [
    "msrvtt/MSRVTT_JSFUSION_test.csv",
    "msrvtt/MSRVTT_JSFUSION_test.semicolon_crlf.csv",
    "msrvtt/MSRVTT_train.9k.csv",
    "msrvtt/MSRVTT_train.7k.csv",
    "videos/decord/flipping_a_pancake.mkv",
    "videos/decord/corrupted.mp4",
    "videos/decord/video_0.mov",
    "videos/decord/video_90.mov",
    "videos/decord/unordered.mov",
    "videos/mmaction2/test.mp4",
    "videos/mmaction2/test.avi",
    "videos/mmaction2/video_text_test_list.json",
    "videos/moviepy/big_buck_bunny_432_433.webm",
    "videos/moviepy/no_duration.webm",
]
MSVD_VIDEOS = {"train": 60, "val": 10, "test": 30}  # the first ids of each CLIP4Clip list
DIDEMO_VIDEOS = 40  # per split
ACTIVITYNET_VIDEOS = 100


def _write_json(path: Path, data, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, **kwargs), encoding="utf-8")  # ensure_ascii, no final newline: as the source


def _first_videos(annotations: list[dict], n: int) -> list[dict]:
    keep: set[str] = set()
    for ann in annotations:
        if len(keep) == n:
            break
        keep.add(ann["video"])
    return [a for a in annotations if a["video"] in keep]


def main(source: Path, out: Path = HERE) -> None:
    for name in COPY:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, out / name)

    (out / "msvd").mkdir(exist_ok=True)
    captions = json.loads((source / "msvd/captions_msvd.json").read_text(encoding="utf-8"))
    kept: set[str] = set()
    for split, n in MSVD_VIDEOS.items():
        ids = (source / f"msvd/{split}_list.txt").read_text(encoding="utf-8").splitlines()[:n]
        (out / f"msvd/{split}_list.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        kept.update(ids)
    _write_json(out / "msvd/captions_msvd.json", {k: v for k, v in captions.items() if k in kept})

    for split in ("test", "val"):
        data = json.loads((source / f"didemo/{split}_data.json").read_text(encoding="utf-8"))
        _write_json(out / f"didemo/{split}_data.json", _first_videos(data, DIDEMO_VIDEOS))

    val = json.loads((source / "activitynet/val_1.json").read_text(encoding="utf-8"))
    _write_json(out / "activitynet/val_1.json", dict(list(val.items())[:ACTIVITYNET_VIDEOS]), indent=2)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
