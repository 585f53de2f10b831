"""``vop index``: encode every video of a collection once into Parquet shards, then build the index.

Every encoding path writes the same thing, ``OUT/embeddings/part-*.parquet`` + ``manifest.json``
(:mod:`vop.index.shards`), and one builder (:mod:`vop.index.from_shards`) turns the shards into
SQLite + FAISS:

* Incremental: a video whose newest shard row has its (size, mtime) is not encoded again; new or
  changed files are; rows of files that disappeared are dropped (the shards are compacted).
* Resumable: rows are written as complete parts (every ``part_rows`` videos or ``part_seconds``),
  so a killed run keeps every finished part and the next run encodes only what is missing.
  Nothing is duplicated: the newest row of a path wins, older ones are compacted away.
* Undecodable videos (``DecodeError``) become 'error' rows with the reason, are logged and
  listed in ``report.json``, and are not retried until the file changes (or ``retry_failed``).
  Any other exception is a bug and stops the run (with every finished part kept).
* Sharding: shard ``i`` of ``n`` encodes the files whose path hashes to ``i`` into the same
  ``OUT/embeddings`` and marks itself done; ``vop index --from-shards OUT/embeddings --out OUT``
  builds the index once all n are done.
* Engines: ``engine="local"`` decodes (and resizes, normalises, thumbnails) the next videos in
  ``decode_workers`` threads while the model runs (PyAV and torch release the GIL);
  ``engine="ray"`` runs decoding as Ray tasks and encoding in a Ray actor pool
  (:mod:`vop.index.ray_engine`); both write the same rows.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vop.index.discover import Collection, open_collection, shard_of
from vop.index.from_shards import (
    DONE_PREFIX,
    LOCK_NAME,
    REPORT_NAME,
    IndexLockedError,
    IndexReport,
    build_from_shards,
    check_index_dir,
    index_lock,
    read_report,
)
from vop.index.manifest import Manifest, check_same_model, mark_mixed
from vop.index.shards import (
    EMBEDDINGS_DIR,
    PART_ROWS,
    PART_SECONDS,
    PartWriter,
    compact,
    read_manifest_beside,
    scan,
    write_manifest_beside,
)
from vop.index.store import DB_NAME, IndexStore, VideoRow
from vop.index.vectors import EXACT_MAX

log = logging.getLogger("vop.index")
BAD_NAME = "file name is not valid UTF-8 (shown with \\xNN escapes); rename the file to index it"
DECODE_AHEAD = 2  # videos decoded ahead of the model per decode worker (bounded: F x 3 x S x S floats each)
DECODE_WORKERS = 1  # decode threads of the local engine (benchmarks/index_throughput.py measures the overlap)

__all__ = [
    "BAD_NAME",
    "LOCK_NAME",
    "REPORT_NAME",
    "IndexLockedError",
    "IndexReport",
    "build_index",
    "embeddings_dir",
    "index_lock",
    "read_report",
    "video_row",
]


def embeddings_dir(out: str | Path) -> Path:
    return Path(out) / EMBEDDINGS_DIR


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
    engine: str = "local",
    ray_options: dict | None = None,
    memory_budget: int | None = None,
    part_rows: int = PART_ROWS,
    part_seconds: float = PART_SECONDS,
    decode_workers: int = DECODE_WORKERS,
) -> IndexReport:
    """Bring the shards at ``out/embeddings`` (and, unless ``shard``, the index at ``out``) up to
    date with ``video_dir`` (a folder or an fsspec URI).

    ``vector_index``: "auto" | "exact" | "pq" | "ivf" (None keeps the last choice; see ``vectors.py``).
    ``after_each(n)`` is called after the n-th video is handed to the shard writer (tests inject
    a kill there); ``ray_options``: see :func:`vop.index.ray_engine.encode_with_ray`;
    ``decode_workers``: decode threads of the local engine.
    """
    from vop import __version__

    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be local or ray, got {engine!r}")
    if decode_workers < 1:
        raise ValueError(f"decode_workers must be at least 1, got {decode_workers}")
    start = time.perf_counter()
    collection = open_collection(video_dir)
    files = collection.files
    owned = None
    if shard is not None:
        i, n = shard
        owned = lambda path: shard_of(path, n) == i
        files = [f for f in files if owned(f.relpath)]
    out = Path(out)
    emb = embeddings_dir(out)
    manifest = Manifest(root=collection.root, shard=None, vop_version=__version__, **encoder.identity())
    if engine == "ray" and (ray_options or {}).get("gpus_per_worker"):
        manifest.precision = "bf16"  # GPU actors encode under bf16 autocast (vop.index.ray_engine)
    report = IndexReport(root=collection.root, discovered=len(files),
                         shard=None if shard is None else list(shard),
                         engine=engine)
    lock = index_lock(out) if shard is None else index_lock(emb, f".lock-{shard[0]}-of-{shard[1]}")
    with lock:
        before = _check_manifests(out, emb, manifest, shard)
        if shard is None:
            _migrate(out, emb, manifest.dim)
        found = scan(str(emb), owned=owned)
        present = {f.relpath for f in files}
        todo = [f for f in files if _stale(found.signature.get(f.relpath), f, retry_failed)]
        report.removed = sum(1 for p in found.winner if p not in present)
        report.unchanged = len(files) - len(todo)
        if report.unchanged and before is not None:
            mark_mixed(manifest, [before])  # kept rows were encoded at another runtime or precision
        write_manifest_beside(str(emb), manifest)
        writer_name = "local" if shard is None else f"s{shard[0]}of{shard[1]}"
        with PartWriter(str(emb), manifest.dim, writer=f"{engine}-{writer_name}", part_rows=part_rows,
                        part_seconds=part_seconds) as writer:
            if engine == "ray":
                from vop.index.ray_engine import encode_with_ray

                encode_with_ray(collection, todo, encoder, writer, report, progress, after_each,
                                ray_options or {})
            else:
                _encode_all(collection, todo, encoder, writer, report, progress, after_each, decode_workers)
        compact(str(emb), scan(str(emb), owned=owned), keep=present, owned=owned)
        if shard is not None:
            return _finish_shard(emb, shard, owned, report, start)
        build_from_shards(str(emb), out, manifest, vector_index=vector_index, exact_max=exact_max,
                          memory_budget=memory_budget, report=report, locked=True, start=start)
        _follow_inodes(out, collection, todo)
        _clear_done_marks(emb)
    return report


def _stale(signature: tuple | None, f, retry_failed: bool) -> bool:
    """Encode ``f`` unless its newest shard row has the same size and mtime (and did not fail, when
    failures are retried)."""
    if signature is None or signature[:2] != (f.size, f.mtime_ns):
        return True
    return retry_failed and signature[2] == "error"


def _check_manifests(out: Path, emb: Path, manifest: Manifest, shard) -> Manifest | None:
    """Refuse shards or an index at ``out`` of another root or model; the previous manifest."""
    before = check_index_dir(out, manifest) if shard is None else None
    beside = read_manifest_beside(str(emb)) if emb.is_dir() else None
    if beside is not None:
        if beside.root != manifest.root:
            raise ValueError(
                f"{emb} holds shards of {beside.root}, not {manifest.root}; choose another --out")
        check_same_model(beside, manifest, "the backbone/adapter given now")
    return before or beside


def _migrate(out: Path, emb: Path, dim: int) -> None:
    """An index written before shards existed: its rows become the first part (nothing re-encoded)."""
    if (out / DB_NAME).is_file() and not any(emb.glob("part-*.parquet")):
        from vop.index.export import export_rows

        with IndexStore(out / DB_NAME) as store:
            if store.count():
                export_rows(store, str(emb), dim, writer="migrated")


def _encode_all(collection: Collection, todo, encoder, writer: PartWriter, report: IndexReport,
                progress: bool, after_each, decode_workers: int = DECODE_WORKERS) -> None:
    from tqdm.auto import tqdm

    from vop.data.decode import DecodeError

    bar = tqdm(total=len(todo), desc="indexing", unit="video", disable=not progress or not todo)
    for n, (f, pending) in enumerate(_decode_ahead(collection, todo, encoder, decode_workers), 1):
        try:
            if f.bad_name:
                raise DecodeError(f.relpath, BAD_NAME)
            enc = encoder.encode_prepared(pending.result())
        except DecodeError as err:
            row = video_row(f, error=err.reason)
        else:
            row = video_row(f, enc)
        count(report, row, enc if row.status == "ok" else None)
        writer.add(row)
        bar.update()
        if after_each is not None:
            after_each(n)
    bar.close()


def video_row(f, enc=None, error: str | None = None) -> VideoRow:
    """The row of one video: encoded (``enc``, an ``EncodedVideo``) or undecodable (``error``)."""
    row = VideoRow(path=f.relpath, size=f.size, mtime_ns=f.mtime_ns, status="ok", file_id=f.file_id)
    if error is None and not np.isfinite(enc.vector).all():
        error = "the model gave a non-finite vector (NaN/Inf); not stored"
    if error is not None:
        log.warning("skipping %s: %s", f.relpath, error)
        row.status, row.error = "error", error
        return row
    row.vector, row.thumbnail = enc.vector, enc.thumbnail
    row.error = getattr(enc, "warning", None)  # an ok row's error column holds its warning
    row.duration, row.num_frames, row.width, row.height = enc.duration, enc.num_frames, enc.width, enc.height
    return row


def count(report: IndexReport, row: VideoRow, enc=None) -> None:
    if row.status == "error":
        report.failed.append({"path": row.path, "error": row.error})
    else:
        report.encoded += 1
        report.from_cache += bool(getattr(enc, "from_cache", False))


def _decode(collection: Collection, f, decoder):
    with collection.source(f.relpath) as path:
        return decoder.prepare(decoder.decode(path))


def _decode_ahead(collection: Collection, todo, encoder, workers: int = DECODE_WORKERS):
    """Yield ``(file, future of its prepared video)`` in order, decoding and preparing up to
    ``DECODE_AHEAD`` videos per worker in ``workers`` threads while the caller runs the model."""
    decoder, ahead = encoder.decoder(), DECODE_AHEAD * workers
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vop-decode")
    queue: deque = deque()
    try:
        for f in todo:
            queue.append((f, None if f.bad_name else pool.submit(_decode, collection, f, decoder)))
            if len(queue) > ahead:
                yield queue.popleft()
        while queue:
            yield queue.popleft()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a stopped run leaves no thread behind


def _follow_inodes(out: Path, collection: Collection, todo) -> None:
    """Unchanged files whose device:inode moved (rsync, restore): the index follows them."""
    pending = {f.relpath for f in todo}
    with IndexStore(out / DB_NAME) as store:
        known = store.file_ids()
        store.set_file_ids({f.relpath: f.file_id for f in collection.files
                            if f.relpath not in pending and f.file_id and f.relpath in known
                            and known[f.relpath] != f.file_id})


def _finish_shard(emb: Path, shard, owned, report: IndexReport, start: float) -> IndexReport:
    """A shard run builds nothing: it records that it is done and what its rows hold."""
    import json

    found = scan(str(emb), owned=owned)
    report.indexed = sum(1 for s in found.signature.values() if s[2] == "ok")
    report.errors = list(report.failed)  # this run's; the builder lists every error row of the index
    report.seconds = time.perf_counter() - start
    mark = emb / f"{DONE_PREFIX}{shard[0]}-of-{shard[1]}.json"
    tmp = mark.with_suffix(".tmp")
    tmp.write_text(json.dumps({"videos": len(found.signature), "indexed": report.indexed}) + "\n")
    tmp.replace(mark)
    return report


def _clear_done_marks(emb: Path) -> None:
    """A full run covered every shard: earlier --shard marks no longer describe the shards."""
    for mark in emb.glob(f"{DONE_PREFIX}*.json"):
        mark.unlink(missing_ok=True)
