"""DiDeMo, original LocalizingMoments release: ``{train,val,test}_data.json``, each a list of
moment annotations (``video``, ``description``, ``times`` in 5-second chunks).

Paragraph retrieval: one record per video whose single caption is all its descriptions joined
in temporal order (mean start chunk over annotators, as CLIP4Clip does; ties keep file order).
"""

from __future__ import annotations

from pathlib import Path

from .records import AnnotationError, Entry, check_caption, check_name, load_json, require_file

SPLITS = ("train", "val", "test")
DEFAULT_SPLIT = "test"


def _start(path: Path, i: int, ann: dict) -> float:
    times = ann.get("times")
    try:
        return sum(float(t[0]) for t in times) / len(times)
    except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError) as err:
        raise AnnotationError(path, f"annotation {i} (video {ann.get('video')!r}): bad 'times' {times!r}") from err


def read(root: Path, split: str) -> list[Entry]:
    path = require_file(root / f"{split}_data.json", f"the DiDeMo {split} annotations")
    data = load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(path, "expected a list of annotations")
    moments: dict[str, list[tuple[float, int, str]]] = {}
    for i, ann in enumerate(data):
        if not isinstance(ann, dict) or "video" not in ann or "description" not in ann:
            raise AnnotationError(path, f"annotation {i} lacks 'video' or 'description'")
        text = check_caption(path, ann["description"], None, f"description in annotation {i}")
        video = check_name(path, ann["video"], None, f"video in annotation {i}")
        moments.setdefault(video, []).append((_start(path, i, ann), i, text))
    return [Entry(video, [" ".join(t for _, _, t in sorted(parts))], [video]) for video, parts in moments.items()]
