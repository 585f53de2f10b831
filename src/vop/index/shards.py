"""Parquet embedding shards: the one output of every encoding path and the input of the one builder.

``vop index`` (plain, ``--shard i/n`` and ``--engine ray``) writes ``IDX/embeddings/part-*.parquet``
plus ``IDX/embeddings/_manifest.json`` (the embedding space, a vop manifest); SQLite + FAISS are then
built from the shards (:mod:`vop.index.from_shards`), which is also ``vop index --from-shards DIR`` for
shards written by any engine (Spark, Ray, a user's own pyarrow job). The same files are what
LanceDB, Milvus, Spark or autofaiss read.

One row per video (schema version 1):

============  ==========================================  ========  =====================================
column        Arrow type                                  required  meaning
============  ==========================================  ========  =====================================
path          string                                      yes       POSIX path relative to the collection
                                                                    root (the row's key)
size          int64                                       yes       file size in bytes
mtime_ns      int64                                       yes       modification time, ns since the epoch
status        string                                      yes       "ok" (has a vector) or "error"
vector        fixed_size_list<float32 or float16>[dim]    yes       L2-normalised embedding; null for an
                                                                    error row (a list<float> of length
                                                                    dim, or float64, is accepted too)
error         string                                      no        why an error row has no vector
warning       string                                      no        an ok row indexed with a warning
                                                                    (e.g. "truncated: 85 of 310 frames")
num_frames    int32                                       no        frames the video has (decoded)
duration      float64                                     no        seconds
width         int32                                       no        display width, pixels
height        int32                                       no        display height, pixels
thumbnail     binary                                      no        JPEG, longest side 192 px
file_id       string                                      no        "device:inode" of the indexed file
============  ==========================================  ========  =====================================

Rows are an append-only log: when several parts hold the same path, the row in the part whose
file name sorts last wins (vop names its parts ``part-<time ns>-<writer>-<seq>.parquet``), and
within one part the last row. A part is written to a temporary name and renamed when complete,
so a killed writer loses only the part it had not finished.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from vop.index.store import VideoRow
from vop.index.uri import filesystem, join

SCHEMA_VERSION = 1
EMBEDDINGS_DIR = "embeddings"
SHARDS_MANIFEST = "_manifest.json"  # the embedding space of the shards beside it
PART_ROWS = 1000  # videos per part: ~10 MB with thumbnails
PART_SECONDS = 60.0  # ... or this long since the part's first row: a killed run loses at most this much
READ_ROWS = 8192  # rows per batch when reading a part
REQUIRED = ("path", "size", "mtime_ns", "status", "vector")
STATUSES = ("ok", "error")
UNIT_TOLERANCE = 1e-2  # a norm further than this from 1 is normalised (fp16 rounding is ~1e-4)


class ShardError(ValueError):
    """A shard that does not follow the schema: the message names the file and the problem."""


def arrow_schema(dim: int, vector_type: str = "float32"):
    """The schema vop writes (``vector_type``: "float32" or "float16")."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("path", pa.string(), nullable=False),
            pa.field("size", pa.int64()),
            pa.field("mtime_ns", pa.int64()),
            pa.field("status", pa.string()),
            pa.field("error", pa.string()),
            pa.field("warning", pa.string()),
            pa.field("num_frames", pa.int32()),
            pa.field("duration", pa.float64()),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("file_id", pa.string()),
            pa.field("thumbnail", pa.binary()),
            pa.field("vector", pa.list_(getattr(pa, vector_type)(), dim)),
        ],
        metadata={"vop.embeddings": json.dumps({"schema": SCHEMA_VERSION, "dim": dim})},
    )


def record(row: VideoRow) -> dict:
    """A stored row as a shard record (the store's one error column split into error/warning)."""
    ok = row.status == "ok"
    return {
        "path": row.path,
        "size": row.size,
        "mtime_ns": row.mtime_ns,
        "status": row.status,
        "error": None if ok else row.error,
        "warning": row.error if ok else None,
        "num_frames": row.num_frames,
        "duration": row.duration,
        "width": row.width,
        "height": row.height,
        "file_id": row.file_id,
        "thumbnail": row.thumbnail,
        "vector": None if row.vector is None else np.asarray(row.vector),
    }


def part_files(where: str) -> list[str]:
    """The ``*.parquet`` files directly in ``where`` (path or URI), in the order rows are applied."""
    fs, path = filesystem(where)
    if not fs.isdir(path):
        return []
    names = [p for p in fs.ls(path, detail=False) if p.endswith(".parquet")]
    names = [p for p in names if not p.rsplit("/", 1)[-1].startswith((".", "_"))]
    return sorted(names, key=lambda p: p.rsplit("/", 1)[-1])


class PartWriter:
    """Buffers rows and writes them as complete parts (temporary name, then rename)."""

    def __init__(self, where: str, dim: int, writer: str = "local", part_rows: int = PART_ROWS,
                 part_seconds: float = PART_SECONDS, vector_type: str = "float32"):
        self.where, self.dim, self.part_rows, self.part_seconds = str(where), dim, part_rows, part_seconds
        self.schema = arrow_schema(dim, vector_type)
        self.fs, self.path = filesystem(where)
        self.fs.makedirs(self.path, exist_ok=True)
        # part names sort by creation: a later run's rows win over an earlier run's
        self.prefix = f"part-{time.time_ns():020d}-{writer}-{uuid.uuid4().hex[:8]}"
        self.written: list[str] = []
        self._rows: list[dict] = []
        self._since = 0.0

    def add(self, row: VideoRow | dict) -> bool:
        """Buffer one row; returns True when this completed a part on disk."""
        if not self._rows:
            self._since = time.monotonic()
        self._rows.append(record(row) if isinstance(row, VideoRow) else row)
        if len(self._rows) >= self.part_rows or time.monotonic() - self._since >= self.part_seconds:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        if not self._rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {f.name: [r.get(f.name) for r in self._rows] for f in self.schema}
        vectors = columns.pop("vector")
        table = pa.table({**columns, "vector": _vector_array(vectors, self.schema.field("vector").type)},
                         schema=self.schema)
        name = f"{self.prefix}-{len(self.written):06d}.parquet"
        final = self.path.rstrip("/") + "/" + name
        tmp = self.path.rstrip("/") + "/." + name + ".tmp"
        with self.fs.open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd")
        _rename(self.fs, tmp, final)
        self.written.append(final)
        self._rows = []

    def close(self) -> None:
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, kind, *exc):
        if kind is None:  # a failed run keeps its complete parts, not the half-filled buffer
            self.close()


def _vector_array(vectors: list, vector_type):
    """``[dim] arrays or None`` -> a fixed-size-list array of ``vector_type`` (null for None)."""
    import pyarrow as pa

    dim, value_type = vector_type.list_size, vector_type.value_type
    mask = np.array([v is None for v in vectors], dtype=bool)
    flat = np.zeros((len(vectors), dim), dtype=value_type.to_pandas_dtype())
    for i, v in enumerate(vectors):
        if v is not None:
            flat[i] = v
    values = pa.array(flat.reshape(-1), type=value_type)  # [N, dim] -> [N * dim]
    return pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(mask))


def _rename(fs, tmp: str, final: str) -> None:
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        os.replace(tmp, final)  # atomic on one file system
    else:
        fs.mv(tmp, final)


# ----------------------------------------------------------------------------- reading

@dataclass
class ShardScan:
    """What a pass over the shards found: the winning row of every path and its signature."""

    parts: list[str] = field(default_factory=list)
    winner: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (part index, row index)
    signature: dict[str, tuple] = field(default_factory=dict)  # path -> (size, mtime_ns, status)
    dim: int | None = None
    rows: int = 0  # rows read, duplicates included


def _open(fs, part: str):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(fs.open(part, "rb"))
    except Exception as err:  # noqa: BLE001 - pyarrow raises its own ArrowInvalid / OSError kinds
        raise ShardError(f"{part}: not a readable Parquet file ({err})") from None


def _check_columns(part: str, schema) -> None:
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise ShardError(
            f"{part}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(an embedding shard needs {', '.join(REQUIRED)}; see docs/scaling.md)"
        )


def vector_dim(part: str, vector_type) -> int | None:
    """The fixed length of a vector column (None for a variable-length list)."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(vector_type) or pa.types.is_list(vector_type) or pa.types.is_large_list(vector_type):
        value = vector_type.value_type
    else:
        raise ShardError(f"{part}: column vector is {vector_type}, expected a list of float32 or float16")
    if not pa.types.is_floating(value):
        raise ShardError(f"{part}: column vector holds {value}, expected float32 or float16")
    return vector_type.list_size if pa.types.is_fixed_size_list(vector_type) else None


def vectors_of(part: str, column, paths, dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(valid mask [N], float32 [valid, dim])`` of one batch's vector column, checked: length
    ``dim`` and finite values; raises :class:`ShardError` naming the file and the first bad row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    valid = np.asarray(column.is_valid())
    present = column.filter(pa.array(valid)) if not valid.all() else column
    if len(present) == 0:
        return valid, np.zeros((0, dim or 0), np.float32)
    lengths = np.asarray(pc.list_value_length(present))
    want = dim if dim is not None else int(lengths[0])
    bad = np.flatnonzero(lengths != want)
    if len(bad):
        row = np.flatnonzero(valid)[bad[0]]
        raise ShardError(
            f"{part}: row {paths[row]!r} has a vector of length {lengths[bad[0]]}, expected {want}")
    flat = np.asarray(present.flatten(), dtype=np.float32)
    flat = flat.reshape(len(present), want)  # [N * dim] -> [N, dim]
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        row = np.flatnonzero(valid)[np.flatnonzero(~finite)[0]]
        raise ShardError(f"{part}: row {paths[row]!r} has a non-finite vector (NaN or Inf)")
    norms = np.linalg.norm(flat, axis=1)
    if (norms == 0).any():
        row = np.flatnonzero(valid)[np.flatnonzero(norms == 0)[0]]
        raise ShardError(f"{part}: row {paths[row]!r} has an all-zero vector (it has no direction to search)")
    return valid, flat


def iter_batches(part: str, columns: list[str] | None = None, fs=None) -> Iterator:
    """The record batches of one part (all columns that exist, or ``columns``)."""
    fs = fs or filesystem(part)[0]
    pf = _open(fs, part)
    _check_columns(part, pf.schema_arrow)
    names = pf.schema_arrow.names if columns is None else [c for c in columns if c in pf.schema_arrow.names]
    yield from pf.iter_batches(batch_size=READ_ROWS, columns=names)


def scan(where: str, dim: int | None = None, check_vectors: bool = False,
         owned: Callable[[str], bool] | None = None) -> ShardScan:
    """One pass over every part of ``where``: the newest row of each path (owned by this writer).

    ``check_vectors``: also read every vector and check it (length ``dim``, finite, nonzero),
    so that a builder refuses a malformed shard before it writes anything.
    """
    import pyarrow.compute as pc

    result = ShardScan(parts=part_files(where), dim=dim)
    fs = filesystem(where)[0]
    columns = ["path", "size", "mtime_ns", "status"] + (["vector"] if check_vectors else [])
    for p, part in enumerate(result.parts):
        pf = _open(fs, part)
        _check_columns(part, pf.schema_arrow)
        fixed = vector_dim(part, pf.schema_arrow.field("vector").type)
        if fixed is not None and result.dim is not None and fixed != result.dim:
            raise ShardError(
                f"{part}: vectors have {fixed} values, expected {result.dim} (the manifest's dim)")
        row0 = 0
        for batch in pf.iter_batches(batch_size=READ_ROWS, columns=columns):
            paths = batch.column("path").to_pylist()
            status = batch.column("status").to_pylist()
            if batch.column("path").null_count:
                raise ShardError(f"{part}: a row has no path")
            odd = [s for s in status if s not in STATUSES]
            if odd:
                raise ShardError(f"{part}: status must be 'ok' or 'error', found {odd[0]!r}")
            if check_vectors:
                valid, flat = vectors_of(part, batch.column("vector"), paths, result.dim)
                if result.dim is None and len(flat):
                    result.dim = flat.shape[1]
                missing = [paths[i] for i, s in enumerate(status) if s == "ok" and not valid[i]]
                if missing:
                    raise ShardError(f"{part}: row {missing[0]!r} has status 'ok' but no vector")
            sizes = pc.fill_null(batch.column("size"), -1).to_pylist()
            mtimes = pc.fill_null(batch.column("mtime_ns"), -1).to_pylist()
            for r, path in enumerate(paths):
                if owned is None or owned(path):
                    result.winner[path] = (p, row0 + r)
                    result.signature[path] = (sizes[r], mtimes[r], status[r])
            row0 += len(paths)
        result.rows += row0
    return result


def compact(where: str, found: ShardScan, keep: set[str] | None = None,
            owned: Callable[[str], bool] | None = None) -> int:
    """Rewrite the parts that hold rows a newer part replaced (or, with ``keep``, rows of paths no
    longer in the collection) without them; returns the rows dropped. Each rewrite is a
    rename of a complete file, and a dropped row is never the only copy of a current one, so a
    kill at any point leaves consistent shards."""
    import pyarrow as pa

    if owned is None and found.rows == len(found.winner) and (keep is None or keep >= found.winner.keys()):
        return 0  # one row per path, every path current: nothing to rewrite
    fs = filesystem(where)[0]
    dropped = 0
    for p, part in enumerate(found.parts):
        paths = []
        for batch in iter_batches(part, ["path"], fs=fs):
            paths.extend(batch.column("path").to_pylist())
        stale = [
            (owned is None or owned(path))
            and (found.winner.get(path) != (p, r) or (keep is not None and path not in keep))
            for r, path in enumerate(paths)
        ]
        if not any(stale):
            continue
        dropped += sum(stale)
        if all(stale):
            fs.rm(part)
            continue
        import pyarrow.parquet as pq

        table = pq.read_table(fs.open(part, "rb")).filter(pa.array([not s for s in stale]))
        tmp = part.rsplit("/", 1)[0] + "/." + part.rsplit("/", 1)[1] + ".tmp"
        with fs.open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd")
        _rename(fs, tmp, part)
    return dropped


def rows_of(part: str, batch, dim: int) -> list[VideoRow]:
    """One batch of a part as store rows (vectors checked, and normalised when off unit length)."""
    names = batch.schema.names
    cols = {name: batch.column(name).to_pylist() for name in names if name != "vector"}
    valid, flat = vectors_of(part, batch.column("vector"), cols["path"], dim)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    flat = np.where(np.abs(norms - 1) > UNIT_TOLERANCE, flat / norms, flat)
    at = np.cumsum(valid) - 1
    out = []
    for i, path in enumerate(cols["path"]):
        ok = cols["status"][i] == "ok"
        error = _get(cols, "warning", i) if ok else _get(cols, "error", i) or "no reason recorded"
        out.append(
            VideoRow(
                path=path,
                size=cols["size"][i] if cols["size"][i] is not None else -1,
                mtime_ns=cols["mtime_ns"][i] if cols["mtime_ns"][i] is not None else -1,
                status=cols["status"][i],
                error=error,  # the store's one column: an ok row's warning, an error row's reason
                duration=_get(cols, "duration", i),
                num_frames=_get(cols, "num_frames", i),
                width=_get(cols, "width", i),
                height=_get(cols, "height", i),
                thumbnail=_get(cols, "thumbnail", i),
                vector=flat[at[i]] if ok else None,
                file_id=_get(cols, "file_id", i),
            )
        )
    return out


def _get(cols: dict, name: str, i: int):
    return cols[name][i] if name in cols else None


def write_manifest_beside(where: str, manifest) -> None:
    """``where/_manifest.json`` (the embedding space of the shards), written atomically; several
    writers (one per shard) may race here, each with its own temporary name. The leading '_'
    makes Spark, pyarrow datasets and LanceDB skip it when they read the folder."""
    fs, path = filesystem(where)
    fs.makedirs(path, exist_ok=True)
    final = path.rstrip("/") + "/" + SHARDS_MANIFEST
    tmp = path.rstrip("/") + f"/.manifest.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp"
    with fs.open(tmp, "w") as f:
        f.write(json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    _rename(fs, tmp, final)


def read_manifest_beside(where: str):
    """The manifest beside the shards (``_manifest.json``), or None when there is none."""
    import tempfile
    from pathlib import Path

    from vop.index.manifest import MANIFEST_NAME, read_manifest

    fs, path = filesystem(where)
    if not fs.isfile(join(path, SHARDS_MANIFEST)):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        fs.get_file(join(path, SHARDS_MANIFEST), str(Path(tmp) / MANIFEST_NAME))
        try:
            manifest = read_manifest(tmp)
        except ValueError as err:  # name the file the user has, not the temporary copy
            shown = join(str(where), SHARDS_MANIFEST)
            raise ValueError(str(err).replace(str(Path(tmp) / MANIFEST_NAME), shown)) from None
    return manifest
