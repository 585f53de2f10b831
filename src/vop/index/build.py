"""``vop index``: encode every video of a folder once, incrementally and resumably.

* Incremental: a stored row whose (size, mtime) still match the file is kept; new or changed
  files are encoded; rows of files that disappeared are dropped.
* Resumable: each video's row and vector are one SQLite transaction, so a killed run keeps
  everything it finished and the next run starts where it stopped. Nothing is duplicated
  (the path is the row's unique key).
* Undecodable videos (``DecodeError``) become 'error' rows with the reason, are logged and
  listed in ``report.json``, and are not retried until the file changes (or ``retry_failed``).
  Any other exception is a bug and stops the run (with everything before it kept).
* Sharding: shard ``i`` of ``n`` owns the files whose path hashes to ``i`` and writes its own
  index under ``OUT/shards/i-of-n``; :func:`merge_shards` combines them into ``OUT``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from vop.index.discover import discover_videos, shard_of
from vop.index.manifest import (
    MANIFEST_NAME,
    IndexMismatchError,
    Manifest,
    check_same_model,
    read_manifest,
    write_manifest,
)
from vop.index.store import DB_NAME, IndexStore, VideoRow
from vop.index.vectors import EXACT_MAX, load_or_build

log = logging.getLogger("vop.index")
REPORT_NAME = "report.json"
LOCK_NAME = ".lock"
BAD_NAME = "file name is not valid UTF-8 (shown with \\xNN escapes); rename the file to index it"
SHARDS_DIR = "shards"
MERGE_BATCH = 1000
DECODE_AHEAD = 2  # videos decoded ahead of the model (bounded: frames of F x 224 px each)


@dataclass
class IndexReport:
    root: str
    discovered: int = 0  # video files found (in this shard)
    encoded: int = 0  # encoded in this run (new or changed)
    from_cache: int = 0  # of those, read from the frame cache (vop index --cache) instead of decoded
    unchanged: int = 0
    removed: int = 0
    failed: list[dict] = field(default_factory=list)  # failed in this run: {path, error}
    indexed: int = 0  # rows with a vector, in total
    errors: list[dict] = field(default_factory=list)  # every undecodable video in the index
    warnings: list[dict] = field(default_factory=list)  # indexed, with a warning (e.g. truncated)
    vector_index: dict = field(default_factory=dict)
    seconds: float = 0.0
    shard: list[int] | None = None

    def summary(self) -> str:
        return (
            f"{self.indexed} videos indexed ({self.encoded} encoded now, {self.unchanged} unchanged, "
            f"{self.removed} removed), "
            + (f"{self.from_cache} of the encoded from the frame cache, " if self.from_cache else "")
            + f"{len(self.errors)} undecodable, "
            + (f"{len(self.warnings)} with warnings, " if self.warnings else "")
            + f"{self.seconds:.1f}s"
        )


class IndexLockedError(OSError):
    """Another run is writing this index folder."""


@contextmanager
def index_lock(out: Path):
    """Hold an exclusive lock on ``out`` for one run (released when the process ends, even killed)."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise IndexLockedError(
                f"{out} is being written by another vop index run (pid {holder}); wait for it to finish "
                f"or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def shard_dir(out: str | Path, shard: tuple[int, int]) -> Path:
    return Path(out) / SHARDS_DIR / f"{shard[0]}-of-{shard[1]}"


def open_index_dir(out: Path, manifest: Manifest) -> IndexStore:
    """Create ``out`` or check that the existing index there was made from the same root and model."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST_NAME).is_file():
        old = read_manifest(out)
        if old.root != manifest.root:
            raise IndexMismatchError(f"{out} indexes {old.root}, not {manifest.root}; choose another --out")
        check_same_model(old, manifest, "the backbone/adapter given now")
    elif (out / DB_NAME).exists():
        raise FileExistsError(
            f"{out} holds {DB_NAME} but no {MANIFEST_NAME}; remove it or choose another --out"
        )
    write_manifest(out, manifest)  # written first, so even a run killed at once leaves a readable index
    return IndexStore(out / DB_NAME)


def build_index(
    video_dir: str | Path,
    out: str | Path,
    encoder,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    vector_index: str | None = None,
    exact_max: int = EXACT_MAX,
    after_each: Callable[[int], None] | None = None,
) -> IndexReport:
    """Bring the index at ``out`` (or its shard folder) up to date with ``video_dir``.

    ``vector_index``: "auto" | "exact" | "pq" | "ivf" (None keeps the last choice; see ``vectors.py``).
    ``after_each(n)`` is called after the n-th video is committed (tests inject a kill there).
    """
    from vop import __version__

    start = time.perf_counter()
    root = Path(video_dir).resolve()
    files = discover_videos(root)
    if shard is not None:
        files = [f for f in files if shard_of(f.relpath, shard[1]) == shard[0]]
        out = shard_dir(out, shard)
    out = Path(out)
    manifest = Manifest(
        root=str(root),
        shard=None if shard is None else list(shard),
        vop_version=__version__,
        **encoder.identity(),
    )
    report = IndexReport(root=str(root), discovered=len(files), shard=manifest.shard)
    before = read_manifest(out) if (out / MANIFEST_NAME).is_file() else None
    with index_lock(out), open_index_dir(out, manifest) as store:
        stored = store.signatures()
        failed_before = {e["path"] for e in store.errors()} if retry_failed else set()
        present = {f.relpath for f in files}
        removed = sorted(set(stored) - present)
        store.remove(removed)
        todo = [
            f for f in files if stored.get(f.relpath) != (f.size, f.mtime_ns) or f.relpath in failed_before
        ]
        report.removed, report.unchanged = len(removed), len(files) - len(todo)
        known = store.file_ids()  # unchanged files whose inode moved (rsync, restore): follow them
        pending = {f.relpath for f in todo}
        store.set_file_ids({f.relpath: f.file_id for f in files
                            if f.relpath not in pending and f.file_id and known.get(f.relpath) != f.file_id})
        if report.unchanged and before is not None and before.precision != manifest.precision:
            manifest.precision = "mixed"  # kept rows were encoded at the other precision
            write_manifest(out, manifest)
        _encode_all(root, todo, encoder, store, report, progress, after_each)
        _finish(out, store, manifest.dim, report, vector_index, exact_max, start)
    return report


def _encode_all(
    root: Path, todo, encoder, store: IndexStore, report: IndexReport, progress: bool, after_each
) -> None:
    from tqdm.auto import tqdm

    from vop.data.decode import DecodeError

    bar = tqdm(total=len(todo), desc="indexing", unit="video", disable=not progress or not todo)
    for n, (f, pending) in enumerate(_decode_ahead(root, todo, encoder), 1):
        row = VideoRow(path=f.relpath, size=f.size, mtime_ns=f.mtime_ns, status="ok", file_id=f.file_id)
        try:
            if f.bad_name:
                raise DecodeError(f.relpath, BAD_NAME)
            enc = encoder.encode_decoded(pending.result())
            if not np.isfinite(enc.vector).all():
                raise DecodeError(f.relpath, "the model gave a non-finite vector (NaN/Inf); not stored")
        except DecodeError as err:
            log.warning("skipping %s: %s", f.relpath, err.reason)
            row.status, row.error = "error", err.reason
            report.failed.append({"path": f.relpath, "error": err.reason})
        else:
            row.vector, row.thumbnail = enc.vector, enc.thumbnail
            row.error = getattr(enc, "warning", None)  # an ok row's error column holds its warning
            row.duration, row.num_frames, row.width, row.height = (
                enc.duration,
                enc.num_frames,
                enc.width,
                enc.height,
            )
            report.encoded += 1
            report.from_cache += bool(getattr(enc, "from_cache", False))
        store.put(row)  # one transaction: the row and its vector land together or not at all
        bar.update()
        if after_each is not None:
            after_each(n)
    bar.close()


def _decode_ahead(root: Path, todo, encoder, ahead: int = DECODE_AHEAD):
    """Yield ``(file, future of its decoded frames)`` in order, decoding up to ``ahead`` videos in a
    background thread while the caller runs the model on the current one."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vop-decode")
    queue: deque = deque()
    files = iter(todo)
    try:
        for f in files:
            queue.append((f, None if f.bad_name else pool.submit(encoder.decode, root / f.relpath)))
            if len(queue) > ahead:
                yield queue.popleft()
        while queue:
            yield queue.popleft()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a stopped run leaves no thread behind


def _finish(
    out: Path,
    store: IndexStore,
    dim: int,
    report: IndexReport,
    kind: str | None,
    exact_max: int,
    start: float,
) -> None:
    """Rebuild the derived FAISS file and write ``report.json``."""
    vi = load_or_build(out, store, dim, kind=kind, exact_max=exact_max)
    report.indexed = store.count("ok")
    report.errors = store.errors()
    report.warnings = store.warnings()
    report.vector_index = asdict(vi.info)
    report.seconds = time.perf_counter() - start
    tmp = out / (REPORT_NAME + ".tmp")
    tmp.write_text(json.dumps(asdict(report), indent=2) + "\n")
    os.replace(tmp, out / REPORT_NAME)


def merge_shards(out: str | Path, vector_index: str | None = None, exact_max: int = EXACT_MAX) -> IndexReport:
    """Combine ``OUT/shards/*-of-n`` (all n present, same root and model) into the index at ``OUT``."""
    start = time.perf_counter()
    out = Path(out)
    shards = sorted((out / SHARDS_DIR).glob("*-of-*")) if (out / SHARDS_DIR).is_dir() else []
    if not shards:
        raise FileNotFoundError(
            f"no shards under {out / SHARDS_DIR} (write them with `vop index --shard i/n`)"
        )
    manifests = [read_manifest(d) for d in shards]
    n = manifests[0].shard[1]
    have = sorted(m.shard[0] for m in manifests if m.shard and m.shard[1] == n)
    if have != list(range(n)) or len(manifests) != n:
        raise ValueError(
            f"shards under {out / SHARDS_DIR} are incomplete or mixed: found "
            f"{[d.name for d in shards]}, need 0-of-{n} ... {n - 1}-of-{n}"
        )
    for d, m in zip(shards[1:], manifests[1:]):
        if m.root != manifests[0].root:
            raise IndexMismatchError(
                f"shard {d} indexes {m.root}, shard {shards[0]} indexes {manifests[0].root}"
            )
        check_same_model(manifests[0], m, f"shard {d}")
    precisions = {m.precision for m in manifests}
    merged = replace(manifests[0], shard=None, precision=precisions.pop() if len(precisions) == 1 else "mixed")
    report = IndexReport(root=merged.root)
    with index_lock(out), open_index_dir(out, merged) as store:
        keep = set()
        for d in shards:
            with IndexStore(d / DB_NAME, readonly=True) as shard_store:
                rows = shard_store.rows()
            keep.update(r.path for r in rows)
            for i in range(0, len(rows), MERGE_BATCH):
                store.put_many(rows[i : i + MERGE_BATCH])
            report.discovered += len(rows)
        removed = sorted(set(store.signatures()) - keep)
        store.remove(removed)
        report.removed = len(removed)
        _finish(out, store, merged.dim, report, vector_index, exact_max, start)
    return report


def read_report(index_dir: str | Path) -> dict | None:
    path = Path(index_dir) / REPORT_NAME
    return json.loads(path.read_text()) if path.is_file() else None
