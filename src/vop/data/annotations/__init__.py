"""Annotation readers: pure parsers from the files people actually have to ``VideoRecord``s.

``load_records(name, annotations, split, videos_dir)`` is the one entry point; ``check_dataset``
validates without raising (for ``vop data check`` / ``vop prepare``). No torch, no decoding here.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from statistics import mean

from . import activitynet, csv_jsonl, didemo, lsmdc, msrvtt, msvd
from .records import AnnotationError, MissingAnnotationError, VideoFinder, VideoRecord, holdout_ids

__all__ = [
    "DATASETS",
    "AnnotationError",
    "MissingAnnotationError",
    "VideoFinder",
    "VideoRecord",
    "check_dataset",
    "default_split",
    "holdout_ids",
    "load_records",
    "splits_of",
]

# name -> (reader(root, split) -> list[Entry], splits, default split)
DATASETS = {
    "msrvtt": (msrvtt.read, msrvtt.SPLITS, msrvtt.DEFAULT_SPLIT),
    "msvd": (msvd.read, msvd.SPLITS, msvd.DEFAULT_SPLIT),
    "didemo": (didemo.read, didemo.SPLITS, didemo.DEFAULT_SPLIT),
    "activitynet": (activitynet.read, activitynet.SPLITS, activitynet.DEFAULT_SPLIT),
    "lsmdc": (lsmdc.read, lsmdc.SPLITS, lsmdc.DEFAULT_SPLIT),
    "csv": (partial(csv_jsonl.read, kind="csv"), csv_jsonl.SPLITS, csv_jsonl.DEFAULT_SPLIT),
    "jsonl": (partial(csv_jsonl.read, kind="jsonl"), csv_jsonl.SPLITS, csv_jsonl.DEFAULT_SPLIT),
}


def _lookup(name: str):
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def splits_of(name: str) -> tuple[str, ...]:
    return _lookup(name)[1]


def default_split(name: str) -> str:
    return _lookup(name)[2]


def load_records(
    name: str,
    annotations: str | os.PathLike,
    split: str | None = None,
    videos_dir: str | os.PathLike | None = None,
    finder: VideoFinder | None = None,
) -> list[VideoRecord]:
    """Records of one split. ``path`` is the video file found under ``videos_dir`` (None if missing)."""
    reader, splits, default = _lookup(name)
    split = split or default
    if split not in splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; choose one of {', '.join(splits)}")
    root = Path(annotations)
    if not root.exists():
        raise FileNotFoundError(f"annotations {root} do not exist")
    if finder is None:
        base = videos_dir if videos_dir is not None else (root.parent if root.is_file() else None)
        finder = VideoFinder(base)
    return [VideoRecord(e.video_id, finder.find(e.hints), e.captions, split, e.group) for e in reader(root, split)]


def _caption_stats(records: list[VideoRecord]) -> dict:
    counts = [len(r.captions) for r in records]
    words = [len(c.split()) for r in records for c in r.captions]
    return {"total": sum(counts), "per_record_min": min(counts), "per_record_mean": round(mean(counts), 2),
            "per_record_max": max(counts), "words_mean": round(mean(words), 2)}


def _present_splits(name: str, root: Path) -> tuple[str, ...]:
    """Every split of a benchmark; for csv/jsonl only those whose file exists ('all' for one file)."""
    if name not in ("csv", "jsonl"):
        return splits_of(name)
    if root.is_file():
        return ("all",)
    return tuple(s for s in splits_of(name) if (root / f"{s}.{name}").is_file()) or ("all",)


def check_dataset(name: str, annotations: str | os.PathLike, videos_dir: str | os.PathLike | None = None,
                  splits: list[str] | None = None) -> dict:
    """Validate every split that can be read; problems are collected, never raised."""
    report = {"dataset": name, "annotations": str(annotations),
              "videos": None if videos_dir is None else str(videos_dir), "splits": {}, "problems": []}
    finder = VideoFinder(videos_dir) if videos_dir is not None else VideoFinder(None)
    for split in splits or _present_splits(name, Path(annotations)):
        entry: dict = {"ok": False}
        try:
            records = load_records(name, annotations, split, finder=finder)
        except MissingAnnotationError as err:
            entry["error"] = str(err)
            report["problems"].append(f"{split}: {err}")
        except (AnnotationError, FileNotFoundError) as err:
            entry["error"] = str(err)
            report["problems"].append(f"{split}: {err}")
        else:
            entry.update(ok=True, records=len(records), captions=_caption_stats(records))
            if videos_dir is not None:
                missing = [r.video_id for r in records if r.path is None]
                entry.update(videos_found=len(records) - len(missing), videos_missing=len(missing),
                             missing_examples=missing[:5])
                if missing:
                    report["problems"].append(f"{split}: {len(missing)} of {len(records)} videos not found "
                                              f"under {videos_dir}, e.g. {missing[0]!r}")
        report["splits"][split] = entry
    return report
