"""The one builder: SQLite + FAISS from Parquet embedding shards (``vop index`` and ``--from-shards``).

Every encoding path (plain, ``--shard i/n``, ``--engine ray``) ends here, and so do shards a
user's own Spark/Ray/pyarrow job wrote in the schema of :mod:`vop.index.shards`.

* Nothing half-built: every part is read and checked (columns, vector length, finite and nonzero
  values, statuses) before the first write; a malformed shard is one :class:`ShardError` naming
  the file and the row.
* Incremental: a row whose (size, mtime, status) the index already holds is not written again;
  rows of paths no shard holds any more are removed. Row ids of kept videos never change.
* Bounded memory: rows go into SQLite a batch at a time, and the FAISS index is trained on a
  sample and filled in chunks sized by ``memory_budget`` (:func:`vop.index.vectors.build_from_store`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vop.index.manifest import (
    MANIFEST_NAME,
    IndexMismatchError,
    Manifest,
    check_same_model,
    read_manifest,
    write_manifest,
)
from vop.index.shards import ShardError, ShardScan, iter_batches, rows_of, scan
from vop.index.store import DB_NAME, IndexStore
from vop.index.uri import filesystem
from vop.index.vectors import EXACT_MAX, choose_kind, load_or_build, plan_chunks, saved_kind

REPORT_NAME = "report.json"
LOCK_NAME = ".lock"
PUT_BATCH = 1000  # rows per SQLite transaction
DONE_PREFIX = "_done-"  # OUT/embeddings/_done-i-of-n.json: shard i of n finished (vop index --shard)


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
    shards: dict = field(default_factory=dict)  # parts and rows read by the builder
    engine: str = "local"

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


class index_lock:
    """Hold an exclusive lock on ``folder/name`` for one run (released when the process ends, even killed)."""

    def __init__(self, folder: str | Path, name: str = LOCK_NAME):
        self.folder, self.name = Path(folder), name

    def __enter__(self):
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.folder / self.name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(self.fd)
            raise IndexLockedError(
                f"{self.folder} is being written by another vop index run (pid {holder}); wait for it to "
                f"finish or choose another --out"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the lock


def check_index_dir(out: Path, manifest: Manifest) -> Manifest | None:
    """Refuse an ``out`` that indexes another root or model; returns its manifest (None if new)."""
    if (out / MANIFEST_NAME).is_file():
        old = read_manifest(out)
        if old.root != manifest.root:
            raise IndexMismatchError(f"{out} indexes {old.root}, not {manifest.root}; choose another --out")
        check_same_model(old, manifest, "the backbone/adapter given now")
        return old
    if (out / DB_NAME).exists():
        raise FileExistsError(
            f"{out} holds {DB_NAME} but no {MANIFEST_NAME}; remove it or choose another --out")
    return None


def open_index_dir(out: Path, manifest: Manifest) -> IndexStore:
    """Create ``out`` or check that the existing index there was made from the same root and model."""
    out.mkdir(parents=True, exist_ok=True)
    check_index_dir(out, manifest)
    write_manifest(out, manifest)  # written first, so even a run killed at once leaves a readable index
    return IndexStore(out / DB_NAME)


def check_complete(shards: str) -> None:
    """When ``vop index --shard i/n`` runs wrote these shards, all n must have finished."""
    fs, path = filesystem(shards)
    if not fs.isdir(path):
        return
    done = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    done = [n[len(DONE_PREFIX) : -len(".json")] for n in done
            if n.startswith(DONE_PREFIX) and n.endswith(".json")]
    by_n: dict[int, set[int]] = {}
    for name in done:
        i, n = (int(x) for x in name.split("-of-"))
        by_n.setdefault(n, set()).add(i)
    for n, have in by_n.items():
        if have != set(range(n)):
            missing = sorted(set(range(n)) - have)
            raise ValueError(
                f"shards under {shards} are incomplete: --shard runs "
                f"{', '.join(f'{i}/{n}' for i in missing)} "
                f"have not finished (found {', '.join(f'{i}/{n}' for i in sorted(have))})"
            )


def build_from_shards(
    shards: str | Path,
    out: str | Path,
    manifest: Manifest,
    vector_index: str | None = None,
    exact_max: int = EXACT_MAX,
    memory_budget: int | None = None,
    report: IndexReport | None = None,
    locked: bool = False,
    start: float | None = None,
) -> IndexReport:
    """Bring the index at ``out`` to exactly the newest row of every path in ``shards``.

    ``manifest`` names the embedding space (checked against an existing index at ``out``);
    ``locked``: the caller already holds ``out``'s lock (the encoding paths).
    """
    start = time.perf_counter() if start is None else start
    out = Path(out)
    report = report or IndexReport(root=manifest.root)
    found = scan(str(shards), dim=manifest.dim, check_vectors=True)  # refuse before writing anything
    ok = sum(1 for s in found.signature.values() if s[2] == "ok")
    plan_chunks(ok, manifest.dim, choose_kind(ok, manifest.dim, vector_index or saved_kind(out), exact_max),
                memory_budget)  # ... also an index that would not fit the memory budget
    args = (str(shards), out, manifest, found, vector_index, exact_max, memory_budget, report, start)
    if locked:
        return _build(*args)
    with index_lock(out):
        return _build(*args)


def _build(shards: str, out: Path, manifest: Manifest, found: ShardScan, vector_index, exact_max,
           memory_budget, report: IndexReport, start: float) -> IndexReport:
    import pyarrow as pa

    report.shards = {"parts": len(found.parts), "rows": found.rows, "videos": len(found.winner)}
    with open_index_dir(out, manifest) as store:
        stored = store.signatures()
        failed = {e["path"] for e in store.errors()}
        fs = filesystem(shards)[0]
        pending = []
        for p, part in enumerate(found.parts):
            row0 = 0
            for batch in iter_batches(part, fs=fs):
                paths = batch.column("path").to_pylist()
                take = [
                    found.winner[path] == (p, row0 + r)
                    and (stored.get(path), path in failed) != (found.signature[path][:2],
                                                               found.signature[path][2] == "error")
                    for r, path in enumerate(paths)
                ]
                row0 += len(paths)
                if any(take):
                    pending.extend(rows_of(part, batch.filter(pa.array(take)), manifest.dim))
                while len(pending) >= PUT_BATCH:
                    store.put_many(pending[:PUT_BATCH])
                    pending = pending[PUT_BATCH:]
        store.put_many(pending)
        gone = sorted(set(stored) - set(found.winner))
        store.remove(gone)
        report.removed = max(report.removed, len(gone))
        finish(out, store, manifest.dim, report, vector_index, exact_max, memory_budget, start)
    return report


def finish(out: Path, store: IndexStore, dim: int, report: IndexReport, kind: str | None, exact_max: int,
           memory_budget: int | None, start: float) -> None:
    """Rebuild the derived FAISS file when stale and write ``report.json``."""
    vi = load_or_build(out, store, dim, kind=kind, exact_max=exact_max, memory_budget=memory_budget)
    report.indexed = store.count("ok")
    report.errors = store.errors()
    report.warnings = store.warnings()
    report.vector_index = asdict(vi.info)
    report.seconds = time.perf_counter() - start
    write_report(out, report)


def write_report(folder: Path, report: IndexReport) -> None:
    tmp = folder / (REPORT_NAME + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(report), indent=2) + "\n")
    os.replace(tmp, folder / REPORT_NAME)


def read_report(index_dir: str | Path) -> dict | None:
    path = Path(index_dir) / REPORT_NAME
    return json.loads(path.read_text()) if path.is_file() else None


__all__ = ["IndexReport", "ShardError", "build_from_shards", "check_complete", "index_lock", "read_report"]
