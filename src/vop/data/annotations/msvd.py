"""MSVD in the CLIP4Clip / X-Pool layout: ``captions_msvd.json`` ({video_id: [caption, ...]})
and ``{train,val,test}_list.txt`` (one id per line). 1,200 / 100 / 670 videos.

Every record carries all captions of its video (18-81). Training draws one per step; evaluation
expands a multi-caption record into one query per caption (every caption a query), as in
CLIP4Clip's MSVD protocol.
"""

from __future__ import annotations

from pathlib import Path

from .records import AnnotationError, Entry, check_caption, check_unique, load_json, read_text, require_file

CAPTIONS_FILE = "captions_msvd.json"
SPLITS = ("train", "val", "test")
DEFAULT_SPLIT = "test"


def read_list(path: Path) -> list[str]:
    seen: dict[str, int] = {}
    for line, text in enumerate(read_text(path).splitlines(), start=1):
        video_id = text.strip()
        if not video_id:
            continue
        if any(ch in video_id for ch in ",;\t "):
            raise AnnotationError(path, f"expected one video id per line, got {video_id!r}", line)
        check_unique(path, seen, video_id, line)
    return list(seen)


def read_captions(path: Path) -> dict[str, list[str]]:
    data = load_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(path, "expected an object {video_id: [caption, ...]}")
    out = {}
    for video_id, caps in data.items():
        if not isinstance(caps, list) or not caps:
            raise AnnotationError(path, f"video {video_id!r}: expected a non-empty list of captions")
        out[video_id] = [check_caption(path, c, None, f"caption {i} of video {video_id!r}") for i, c in enumerate(caps)]
    return out


def read(root: Path, split: str) -> list[Entry]:
    list_path = require_file(root / f"{split}_list.txt", f"the MSVD {split} video list")
    ids = read_list(list_path)
    captions = read_captions(require_file(root / CAPTIONS_FILE, "the MSVD captions",
                                          f"the {split} list was read: {len(ids)} videos"))
    for video_id in ids:
        if video_id not in captions:
            raise AnnotationError(list_path, f"video {video_id!r} has no captions in {CAPTIONS_FILE}")
    return [Entry(v, captions[v], [v]) for v in ids]
