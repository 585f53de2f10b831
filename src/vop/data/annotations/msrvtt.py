"""MSR-VTT in the CLIP4Clip / X-Pool layout.

Files: ``MSRVTT_JSFUSION_test.csv`` (1k-A test: ``key,vid_key,video_id,sentence``, one caption per
video), ``MSRVTT_train.9k.csv`` / ``MSRVTT_train.7k.csv`` (a ``video_id`` column) and
``MSRVTT_data.json`` (``sentences[*].video_id/caption``: the training captions, 20 per video).

Splits: ``train-9k`` (9,000 videos), ``train-7k`` (7,010), ``test-1ka`` (1,000), and — MSR-VTT's
retrieval protocol has no validation split — ``val``: a deterministic 5% slice of the 9k list
(450 videos, chosen by SHA-1 of the id; see ``records.holdout_ids``). ``train-9k-noval`` and
``train-7k-noval`` are the training lists without those videos, for model selection without leakage.
"""

from __future__ import annotations

from pathlib import Path

from .records import (
    AnnotationError,
    Entry,
    check_caption,
    check_name,
    check_unique,
    holdout_ids,
    load_json,
    read_csv,
    require_file,
)

TEST_FILE = "MSRVTT_JSFUSION_test.csv"
DATA_FILE = "MSRVTT_data.json"
TRAIN_FILES = {"train-9k": "MSRVTT_train.9k.csv", "train-7k": "MSRVTT_train.7k.csv"}
SPLITS = ("train-9k", "train-7k", "test-1ka", "val", "train-9k-noval", "train-7k-noval")
DEFAULT_SPLIT = "test-1ka"


def read_test(path: Path) -> list[Entry]:
    """The 1k-A test file: one record per row, video ids unique."""
    seen: dict[str, int] = {}
    entries = []
    for line, row in read_csv(path, ("video_id", "sentence")):
        video_id = row["video_id"]
        if not video_id:
            raise AnnotationError(path, "empty video_id", line)
        check_unique(path, seen, video_id, line)
        entries.append(Entry(video_id, [check_caption(path, row["sentence"], line)], [video_id]))
    return entries


def read_id_list(path: Path) -> list[str]:
    """A ``video_id`` CSV (the 9k / 7k training lists); ids must be unique and non-empty."""
    seen: dict[str, int] = {}
    for line, row in read_csv(path, ("video_id",)):
        if not row["video_id"]:
            raise AnnotationError(path, "empty video_id", line)
        check_unique(path, seen, row["video_id"], line)
    return list(seen)


def read_captions(path: Path) -> dict[str, list[str]]:
    """``MSRVTT_data.json`` -> {video_id: [caption, ...]} in file order."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        raise AnnotationError(path, "expected an object with a 'sentences' list")
    captions: dict[str, list[str]] = {}
    for i, sent in enumerate(data["sentences"]):
        if not isinstance(sent, dict) or "video_id" not in sent or "caption" not in sent:
            raise AnnotationError(path, f"sentences[{i}] lacks 'video_id' or 'caption'")
        text = check_caption(path, sent["caption"], None, f"caption in sentences[{i}]")
        video_id = check_name(path, sent["video_id"], None, f"video_id in sentences[{i}]")
        captions.setdefault(video_id, []).append(text)
    return captions


def _train_ids(root: Path, split: str) -> list[str]:
    base = split.removesuffix("-noval") if split != "val" else "train-9k"
    ids = read_id_list(require_file(root / TRAIN_FILES[base], f"the MSR-VTT {base} video list"))
    if split == "val":
        held = holdout_ids(read_id_list(require_file(root / TRAIN_FILES["train-9k"], "the 9k list")))
        return [v for v in ids if v in held]
    if split.endswith("-noval"):
        held = holdout_ids(read_id_list(require_file(root / TRAIN_FILES["train-9k"], "the 9k list")))
        return [v for v in ids if v not in held]
    return ids


def read(root: Path, split: str) -> list[Entry]:
    if split == "test-1ka":
        return read_test(require_file(root / TEST_FILE, "the MSR-VTT 1k-A test split"))
    ids = _train_ids(root, split)
    data_path = require_file(root / DATA_FILE, f"it holds the MSR-VTT training captions that split {split!r} needs",
                             f"the {split} list itself was read and is valid: {len(ids)} videos")
    captions = read_captions(data_path)
    missing = [v for v in ids if v not in captions]
    if missing:
        raise AnnotationError(data_path, f"{len(missing)} videos of split {split!r} have no caption, e.g. {missing[0]!r}")
    return [Entry(v, captions[v], [v]) for v in ids]
