"""ActivityNet Captions, official ``captions.zip`` layout: ``train.json`` and ``val_1.json``
(``{"v_<id>": {"duration", "timestamps": [[s, e], ...], "sentences": [...]}}``).

Paragraph retrieval: one record per video, its sentences sorted by start time and joined.
Splits: ``test`` is ``val_1.json`` (what CLIP4Clip and the VoP paper report on); ``val`` is a
deterministic 5% slice of ``train.json`` (ActivityNet has no third split; ``records.holdout_ids``),
``train`` the whole of ``train.json`` and ``train-noval`` it without the ``val`` videos.
"""

from __future__ import annotations

import math
from pathlib import Path

from .records import AnnotationError, Entry, check_caption, holdout_ids, json_kind, load_json, require_file

FILES = {"train": "train.json", "test": "val_1.json"}
SPLITS = ("train", "val", "test", "train-noval")
DEFAULT_SPLIT = "test"


def _start(path: Path, video_id: str, i: int, stamp) -> float:
    """The start time of timestamp ``[start, end]``: a finite number (or a numeric string)."""
    try:
        start = float(stamp[0])
    except (TypeError, ValueError, IndexError, KeyError):
        raise AnnotationError(path, f"video {video_id!r}: timestamp {i} is {json_kind(stamp)}, "
                             "not [start, end]") from None
    if not math.isfinite(start):
        raise AnnotationError(path, f"video {video_id!r}: timestamp {i} starts at {start}")
    return start


def read_file(path: Path) -> list[Entry]:
    data = load_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(path, "expected an object {video_id: {timestamps, sentences}}")
    entries = []
    for video_id, ann in data.items():
        if not isinstance(ann, dict):
            raise AnnotationError(path, f"video {video_id!r}: expected an object, found {json_kind(ann)}")
        sentences, stamps = ann.get("sentences"), ann.get("timestamps")
        if not isinstance(sentences, list) or not isinstance(stamps, list) or len(sentences) != len(stamps):
            raise AnnotationError(path, f"video {video_id!r}: 'sentences' and 'timestamps' must be lists of equal length")
        if not sentences:
            raise AnnotationError(path, f"video {video_id!r}: no sentences")
        parts = sorted(
            (_start(path, video_id, i, stamp), i, check_caption(path, s, None, f"sentence {i} of video {video_id!r}"))
            for i, (stamp, s) in enumerate(zip(stamps, sentences))
        )
        # files are named v_<id>.mp4 or, in some downloads, <id>.mp4
        entries.append(Entry(video_id, [" ".join(t for _, _, t in parts)], [video_id, video_id.removeprefix("v_")]))
    return entries


def read(root: Path, split: str) -> list[Entry]:
    base = "test" if split == "test" else "train"
    entries = read_file(require_file(root / FILES[base], f"the ActivityNet Captions {base} annotations"))
    if split in ("train", "test"):
        return entries
    held = holdout_ids(e.video_id for e in entries)
    return [e for e in entries if (e.video_id in held) == (split == "val")]
