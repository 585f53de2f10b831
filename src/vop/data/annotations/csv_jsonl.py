"""A user's own data: CSV (header with ``video`` and ``caption`` columns) or JSONL (one object
per line with ``video`` and ``caption``, where ``caption`` may also be a list).

``video`` is a path relative to the videos folder (or, without one, to the annotation file's
folder) or absolute; it is also the record's id. Several rows for one video make one record
with several captions. ``--annotations`` is the file itself, or a folder holding
``<split>.csv`` / ``<split>.jsonl``. An optional ``split`` column/key selects rows; without it
every row belongs to the requested split. An optional ``group`` column/key names videos that
belong together (e.g. a clip and its time-reversed copy); ``data.group_batches`` keeps them in
one training batch. A video's rows may not name two different groups.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .records import AnnotationError, Entry, check_caption, check_name, read_csv, read_text

SPLITS = ("all", "train", "val", "test")
DEFAULT_SPLIT = "all"


def _rows_csv(path: Path):
    for line, row in read_csv(path, ("video", "caption")):
        yield line, row["video"], [row["caption"]], row.get("split"), row.get("group")


def _rows_jsonl(path: Path):
    for line, text in enumerate(read_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise AnnotationError(path, f"invalid JSON ({err.msg})", line) from err
        except RecursionError:
            raise AnnotationError(path, "invalid JSON (nested too deeply)", line) from None
        if not isinstance(obj, dict) or "video" not in obj or "caption" not in obj:
            raise AnnotationError(path, "expected an object with 'video' and 'caption'", line)
        caps = obj["caption"] if isinstance(obj["caption"], list) else [obj["caption"]]
        if not caps:
            raise AnnotationError(path, "'caption' is an empty list", line)
        split, group = obj.get("split"), obj.get("group")
        yield (line, check_name(path, obj["video"], line, "'video'"), caps,
               None if split is None else check_name(path, split, line, "'split'", numbers=False),
               None if group is None else check_name(path, group, line, "'group'"))


def annotation_file(root: Path, split: str, kind: str) -> Path:
    if root.is_file():
        return root
    path = root / f"{split}.{kind}"
    if not path.is_file():
        raise FileNotFoundError(f"{kind} annotations: {root} is neither a file nor a folder holding {path.name}")
    return path


def _set_group(path: Path, entry: Entry, group: str | None, line: int) -> None:
    group = group.strip() if group else None
    if not group:
        return
    if entry.group is not None and entry.group != group:
        raise AnnotationError(path, f"video {entry.video_id!r} is in group {entry.group!r} and {group!r}", line)
    entry.group = group


def read(root: Path, split: str, kind: str) -> list[Entry]:
    path = annotation_file(root, split, kind)
    rows = _rows_csv(path) if kind == "csv" else _rows_jsonl(path)
    entries: dict[str, Entry] = {}
    for line, video, captions, row_split, group in rows:
        if not video.strip():
            raise AnnotationError(path, "empty video", line)
        if row_split and split != "all" and row_split.strip() != split:
            continue
        caps = [check_caption(path, c, line) for c in captions]
        hint = video if os.path.isabs(video) else video.strip()
        entry = entries.setdefault(video.strip(), Entry(video.strip(), [], [hint]))
        entry.captions.extend(caps)
        _set_group(path, entry, group, line)
    if not entries:
        raise AnnotationError(path, f"no rows for split {split!r}")
    return list(entries.values())
