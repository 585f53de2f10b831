"""Shared pieces of the annotation readers: the record type, errors that name file and line,
a delimiter-sniffing CSV reader, video-file lookup and the deterministic validation hold-out.
Pure Python: no torch, no video decoding."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import not_a_file

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".3gp", ".wmv", ".flv")
DELIMITERS = (",", ";", "\t", "|")
# where a benchmark has no validation split: 5% of the training videos, at most 500
VAL_FRACTION, VAL_MAX = 0.05, 500


@dataclass
class VideoRecord:
    """One video and all its captions. ``path`` is None when the file was not found. ``group``
    (optional, generic csv/jsonl only) names videos that training may keep in one batch
    (``data.group_batches``)."""

    video_id: str
    path: Path | None
    captions: list[str]
    split: str
    group: str | None = None


@dataclass
class Entry:
    """A parsed annotation before its video file is looked up: ``hints`` are candidate names
    (relative paths, file names or stems) tried in order."""

    video_id: str
    captions: list[str]
    hints: list[str] = field(default_factory=list)
    group: str | None = None


class AnnotationError(ValueError):
    """Malformed annotation input; the message names the file, the line (when known) and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str, line: int | None = None):
        self.path, self.problem, self.line = str(path), problem, line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class MissingAnnotationError(FileNotFoundError):
    """A file a split needs is absent. ``validated`` says what was still checked (for ``data check``)."""

    def __init__(self, path: str | os.PathLike, reason: str, validated: str = ""):
        self.path, self.reason, self.validated = str(path), reason, validated
        super().__init__(f"{self.path} not found: {reason}" + (f" ({validated})" if validated else ""))


def require_file(path: Path, reason: str, validated: str = "") -> Path:
    if not path.is_file():
        if path.exists() or path.is_symlink():  # a FIFO, a folder, a broken link: say which
            raise AnnotationError(path, f"{not_a_file(path, 'an annotation file')} ({reason})")
        raise MissingAnnotationError(path, reason, validated)
    return path


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")  # a BOM from spreadsheet exports is harmless
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise AnnotationError(path, f"not UTF-8 text ({err.reason})", line) from err


def _no_duplicate_keys(path: Path):
    def hook(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise AnnotationError(path, f"duplicate key {key!r} in a JSON object")
            seen.add(key)
        return dict(pairs)

    return hook


def load_json(path: Path):
    """Parse a JSON file; duplicate object keys (which ``json`` would silently drop) are errors."""
    try:
        return json.loads(read_text(path), object_pairs_hook=_no_duplicate_keys(path))
    except json.JSONDecodeError as err:
        raise AnnotationError(path, f"invalid JSON ({err.msg})", err.lineno) from err
    except RecursionError:
        raise AnnotationError(path, "invalid JSON (nested too deeply)") from None


def sniff_delimiter(path: Path, header: str, required: Iterable[str]) -> str:
    """The delimiter under which ``header`` contains every required column.

    Decision: a copy saved with ``;`` (e.g. by a spreadsheet in a European locale) is read, not
    rejected: the delimiter is chosen by which split of the header names the required columns.
    """
    required = list(required)
    for delim in DELIMITERS:
        columns = [c.strip() for c in header.split(delim)]
        if all(name in columns for name in required):
            return delim
    found = [c.strip() for c in header.split(",")]
    hint = " (wrong delimiter? tried , ; tab |)" if len(found) == 1 else ""
    raise AnnotationError(path, f"missing column(s) {', '.join(required)}; header is {header.strip()!r}{hint}", 1)


def read_csv(path: Path, required: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row dict) from a headed CSV; CRLF or LF, sniffed delimiter."""
    text = read_text(path)
    if not text.strip():
        raise AnnotationError(path, "file is empty")
    header = text.splitlines()[0]
    delim = sniff_delimiter(path, header, required)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    columns = [c.strip() for c in next(reader)]
    start = reader.line_num + 1  # first line of the next record
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:  # e.g. a field over csv.field_size_limit() (128 KiB)
            raise AnnotationError(path, f"unreadable CSV row ({err})", start) from None
        # a record may span lines only inside quotes; captions never do, so an opening quote
        # that runs over lines is an unterminated quote swallowing the rows after it
        if reader.line_num > start and any("\n" in cell or "\r" in cell for cell in row):
            raise AnnotationError(
                path, f"a quoted field opened here runs on to line {reader.line_num} "
                "(unterminated quote? captions may not span lines)", start)
        line, start = reader.line_num, reader.line_num + 1
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines (e.g. a trailing one) carry nothing
        if len(row) != len(columns):
            raise AnnotationError(
                path, f"expected {len(columns)} fields separated by {delim!r}, found {len(row)}", line
            )
        yield line, dict(zip(columns, (cell.strip() for cell in row)))


_JSON_KINDS = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
               bool: "true/false", type(None): "null"}


def json_kind(value) -> str:
    """How a parsed JSON value reads in an error message ("an integer", "a list", ...)."""
    return _JSON_KINDS.get(type(value), type(value).__name__)


def check_name(path: Path, value, line: int | None, what: str, numbers: bool = True) -> str:
    """A name-like field (video id, split, group) as a string.

    An integer is accepted where ``numbers`` (ids are often written as numbers in JSON) and
    becomes its decimal string; anything else (a list, an object, a float, true/false, null) is
    an ``AnnotationError`` naming the file, the line and the type found, never silently ``str()``-ed
    into an id like ``"['a.mp4']"``.
    """
    if isinstance(value, str) or (numbers and isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    expected = "a string or an integer" if numbers else "a string"
    raise AnnotationError(path, f"{what} must be {expected}, found {json_kind(value)}", line)


def check_caption(path: Path, caption, line: int | None, what: str = "caption") -> str:
    if not isinstance(caption, str):
        raise AnnotationError(path, f"{what} must be a string, found {json_kind(caption)}", line)
    if not caption.strip():
        raise AnnotationError(path, f"empty {what}", line)
    return caption.strip()


def check_unique(path: Path, seen: dict[str, int], key: str, line: int, what: str = "video id") -> None:
    if key in seen:
        raise AnnotationError(path, f"duplicate {what} {key!r} (first on line {seen[key]})", line)
    seen[key] = line


def holdout_ids(ids: Iterable[str], fraction: float = VAL_FRACTION, maximum: int = VAL_MAX) -> set[str]:
    """A deterministic validation slice of ``ids``: those with the smallest SHA-1 of their name.

    Independent of file order and of any RNG, so every run and every machine holds out the same videos.
    """
    ids = sorted(set(ids))
    size = min(maximum, max(1, round(fraction * len(ids)))) if len(ids) > 1 else 0
    ranked = sorted(ids, key=lambda v: hashlib.sha1(v.encode("utf-8")).hexdigest())
    return set(ranked[:size])


class VideoFinder:
    """Looks video files up under a folder (scanned once, recursively) by relative path, file
    name or stem, so ``video9770`` finds ``all/video9770.mp4`` and a DiDeMo ``x.m4v`` finds a
    transcoded ``x.mp4``."""

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root) if root is not None else None
        self._by_rel: dict[str, Path] = {}
        self._by_name: dict[str, Path] = {}
        self._by_stem: dict[str, Path] = {}
        if self.root is not None:
            if not self.root.is_dir():
                raise FileNotFoundError(f"videos folder {self.root} does not exist")
            self._scan()

    def _scan(self) -> None:
        for dirpath, _, files in sorted(os.walk(self.root)):
            for name in sorted(files):
                path = Path(dirpath) / name
                self._by_rel.setdefault(path.relative_to(self.root).as_posix(), path)
                self._by_name.setdefault(name, path)
                if path.suffix.lower() in VIDEO_EXTENSIONS:
                    self._by_stem.setdefault(path.stem, path)

    def find(self, hints: Iterable[str]) -> Path | None:
        hints = list(hints)
        for hint in hints:
            if os.path.isabs(hint):
                return Path(hint) if Path(hint).is_file() else None
        if self.root is None:
            return None
        for table, key in ((self._by_rel, lambda h: h), (self._by_name, lambda h: Path(h).name),
                           (self._by_stem, lambda h: h), (self._by_stem, lambda h: Path(h).stem)):
            for hint in hints:
                if key(hint) in table:
                    return table[key(hint)]
        return None
