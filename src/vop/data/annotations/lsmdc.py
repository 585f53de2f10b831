"""LSMDC 2016 retrieval files (tab-separated, no header, six fields per line:
clip id, start/end aligned, start/end extracted, sentence). Files:
``LSMDC16_annos_training.csv`` (train), ``LSMDC16_annos_val.csv`` (val),
``LSMDC16_challenge_1000_publictect.csv`` (the 1,000-clip test). Sentences are taken verbatim
(quotes are not CSV quoting here). Clips appearing on several lines collect all their sentences.
"""

from __future__ import annotations

from pathlib import Path

from .records import AnnotationError, Entry, check_caption, read_text, require_file

FILES = {"train": "LSMDC16_annos_training.csv", "val": "LSMDC16_annos_val.csv",
         "test": "LSMDC16_challenge_1000_publictect.csv"}
SPLITS = ("train", "val", "test")
DEFAULT_SPLIT = "test"
FIELDS = 6


def read_file(path: Path) -> list[Entry]:
    captions: dict[str, list[str]] = {}
    for line, text in enumerate(read_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != FIELDS:
            hint = " (is the file tab-separated?)" if len(fields) == 1 else ""
            raise AnnotationError(path, f"expected {FIELDS} tab-separated fields, found {len(fields)}{hint}", line)
        clip_id = fields[0].strip()
        if not clip_id:
            raise AnnotationError(path, "empty clip id", line)
        captions.setdefault(clip_id, []).append(check_caption(path, fields[-1], line, "sentence"))
    if not captions:
        raise AnnotationError(path, "no annotations")
    # videos live in <movie>/<clip id>.avi; the finder looks names up recursively
    return [Entry(clip, caps, [clip]) for clip, caps in captions.items()]


def read(root: Path, split: str) -> list[Entry]:
    return read_file(require_file(root / FILES[split], f"the LSMDC {split} annotations"))
