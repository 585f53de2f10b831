"""SQLite store: one row per video (metadata, thumbnail, status, fp16 vector).

Why the vectors live in SQLite and not only in FAISS: a video's row and its vector must be
committed together so that a killed run leaves no row without a vector (or the reverse).
The FAISS file is derived from these rows and rebuilt whenever ``generation`` moved on.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DB_NAME = "index.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: ids are handed to clients
    path        TEXT NOT NULL UNIQUE,               -- POSIX, relative to the collection root
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error       TEXT,
    duration    REAL,
    num_frames  INTEGER,
    width       INTEGER,
    height      INTEGER,
    thumbnail   BLOB,                               -- small JPEG
    vector      BLOB,                               -- float16 [dim], L2-normalised
    file_id     TEXT                                -- "device:inode" of the file that was indexed
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('generation', '0');
"""

_INFO_COLUMNS = (
    "id",
    "path",
    "size",
    "mtime_ns",
    "status",
    "error",
    "duration",
    "num_frames",
    "width",
    "height",
    "file_id",
)


@dataclass
class VideoRow:
    """What the indexer writes for one video (vector is None when status is 'error')."""

    path: str
    size: int
    mtime_ns: int
    status: str
    error: str | None = None
    duration: float | None = None
    num_frames: int | None = None
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None
    vector: np.ndarray | None = None  # [dim] float
    file_id: str | None = None  # "device:inode" (the server serves only that very file)


class IndexDatabaseError(ValueError):
    """index.sqlite cannot be read (not a database, corrupt): one line naming the file."""


class IndexFullError(OSError):
    """The disk filled up while writing; everything committed before is kept."""


def _is_full(err: sqlite3.Error) -> bool:
    return "full" in str(err).lower()  # SQLITE_FULL: "database or disk is full"


class IndexStore:
    """Thread-safe access to ``index.sqlite`` (one connection, one lock; WAL for concurrent readers)."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise FileNotFoundError(f"index database {self.path} not found")
        uri = f"file:{self.path}{'?mode=ro' if readonly else ''}"
        self._con = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        try:
            # the file is input (an index folder can be handed over): its schema's views and triggers
            # may call no function with side effects, and corrupt pages are detected early
            self._con.execute("PRAGMA trusted_schema=OFF")
            self._con.execute("PRAGMA cell_size_check=ON")
            if not readonly:
                self._con.execute("PRAGMA journal_mode=WAL")
                self._con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable against a killed process
                self._con.executescript(_SCHEMA)
            columns = {r[1] for r in self._con.execute("PRAGMA table_info(videos)")}
            if not readonly and "file_id" not in columns:  # an index written before file_id existed
                self._con.execute("ALTER TABLE videos ADD COLUMN file_id TEXT")
                columns.add("file_id")
            self._con.execute("SELECT COUNT(*) FROM videos").fetchone()
        except sqlite3.OperationalError as err:
            self._con.close()
            if _is_full(err):
                raise IndexFullError(28, f"disk full while opening {self.path}; free space and re-run") from None
            raise IndexDatabaseError(f"{self.path}: cannot read the index database ({err})") from None
        except sqlite3.DatabaseError as err:
            self._con.close()
            raise IndexDatabaseError(
                f"{self.path}: not a readable index database ({err}); move the index folder away and re-run vop index"
            ) from None
        # an old read-only index may lack file_id: read it as NULL
        self._file_id = "file_id" if "file_id" in columns else "NULL AS file_id"

    def close(self) -> None:
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----- writes: each one a single transaction that also bumps the generation
    def _write(self, statements: list[tuple[str, tuple]]) -> None:
        with self._lock:
            try:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in statements:
                        self._con.execute(sql, params)
                    self._con.execute(
                        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
                    )
                    self._con.execute("COMMIT")
                except BaseException:
                    if self._con.in_transaction:  # SQLite may have rolled back already (disk full)
                        self._con.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as err:
                if _is_full(err):
                    raise IndexFullError(
                        28, f"disk full while writing {self.path}: every video committed before is kept; "
                        f"free space and re-run to continue"
                    ) from None
                raise

    def put(self, row: VideoRow) -> None:
        """Insert or replace the row for ``row.path`` (its id is kept when it already exists)."""
        self.put_many([row])

    def put_many(self, rows: list[VideoRow]) -> None:
        """Upsert several rows in one transaction (all or nothing)."""
        sql = """INSERT INTO videos (path, size, mtime_ns, status, error, duration, num_frames, width, height,
                                     thumbnail, vector, file_id)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,
                     status=excluded.status, error=excluded.error, duration=excluded.duration,
                     num_frames=excluded.num_frames, width=excluded.width, height=excluded.height,
                     thumbnail=excluded.thumbnail, vector=excluded.vector, file_id=excluded.file_id"""
        statements = []
        for row in rows:
            if (row.status == "ok") != (row.vector is not None):
                raise ValueError(
                    f"{row.path}: an 'ok' row needs a vector and an 'error' row must not have one"
                )
            vec = None if row.vector is None else np.asarray(row.vector, dtype=np.float16)
            if vec is not None and not np.isfinite(vec).all():
                raise ValueError(f"{row.path}: refusing to store a vector with non-finite values")
            vec = None if vec is None else vec.tobytes()
            statements.append(
                (
                    sql,
                    (
                        row.path,
                        row.size,
                        row.mtime_ns,
                        row.status,
                        row.error,
                        row.duration,
                        row.num_frames,
                        row.width,
                        row.height,
                        row.thumbnail,
                        vec,
                        row.file_id,
                    ),
                )
            )
        if statements:
            self._write(statements)

    def set_file_ids(self, file_ids: dict[str, str]) -> None:
        """Record the device:inode of unchanged files (a copy that kept size and mtime, an old index)."""
        if file_ids:
            self._write([("UPDATE videos SET file_id = ? WHERE path = ?", (f, p)) for p, f in file_ids.items()])

    def file_ids(self) -> dict[str, str | None]:
        return dict(self._query(f"SELECT path, {self._file_id} FROM videos"))

    def remove(self, paths: list[str]) -> None:
        if paths:
            self._write([("DELETE FROM videos WHERE path = ?", (p,)) for p in paths])

    # ----- reads
    def _select(self, columns) -> str:
        return ", ".join(self._file_id if c == "file_id" else c for c in columns)

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._con.execute(sql, params).fetchall()

    def generation(self) -> int:
        return int(self._query("SELECT value FROM meta WHERE key = 'generation'")[0][0])

    def signatures(self) -> dict[str, tuple[int, int]]:
        """``path -> (size, mtime_ns)`` of every stored row, ok or error."""
        return {p: (s, m) for p, s, m in self._query("SELECT path, size, mtime_ns FROM videos")}

    def count(self, status: str | None = None) -> int:
        if status is None:
            return self._query("SELECT COUNT(*) FROM videos")[0][0]
        return self._query("SELECT COUNT(*) FROM videos WHERE status = ?", (status,))[0][0]

    def info(self, video_id: int) -> dict | None:
        """Metadata of one row (no vector, no thumbnail), or None."""
        rows = self._query(f"SELECT {self._select(_INFO_COLUMNS)} FROM videos WHERE id = ?", (int(video_id),))
        return dict(zip(_INFO_COLUMNS, rows[0])) if rows else None

    def infos(self, ids: list[int]) -> dict[int, dict]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._query(
            f"SELECT {self._select(_INFO_COLUMNS)} FROM videos WHERE id IN ({marks})", tuple(int(i) for i in ids)
        )
        return {r[0]: dict(zip(_INFO_COLUMNS, r)) for r in rows}

    def warnings(self) -> list[dict]:
        """Rows that are searchable but carry a warning (e.g. a truncated video), in the error column."""
        rows = self._query(
            "SELECT path, error FROM videos WHERE status = 'ok' AND error IS NOT NULL ORDER BY path"
        )
        return [{"path": p, "warning": e} for p, e in rows]

    def errors(self) -> list[dict]:
        rows = self._query("SELECT path, error FROM videos WHERE status = 'error' ORDER BY path")
        return [{"path": p, "error": e} for p, e in rows]

    def thumbnail(self, video_id: int) -> bytes | None:
        rows = self._query("SELECT thumbnail FROM videos WHERE id = ?", (int(video_id),))
        return rows[0][0] if rows else None

    def vector(self, video_id: int) -> np.ndarray | None:
        rows = self._query("SELECT vector FROM videos WHERE id = ? AND status = 'ok'", (int(video_id),))
        return np.frombuffer(rows[0][0], dtype=np.float16).copy() if rows else None

    def id_of(self, path: str) -> int | None:
        rows = self._query("SELECT id FROM videos WHERE path = ?", (path,))
        return rows[0][0] if rows else None

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All ok vectors: ids ``int64 [N]`` and vectors ``float16 [N, dim]`` (ordered by id)."""
        rows = self._query("SELECT id, vector FROM videos WHERE status = 'ok' ORDER BY id")
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return ids, np.zeros((0, 0), dtype=np.float16)
        flat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16)
        return ids, flat.reshape(len(rows), -1)  # [N * dim] -> [N, dim]

    def rows(self) -> list[VideoRow]:
        """Every row in full (used to merge shards)."""
        cols = (*_INFO_COLUMNS[1:], "thumbnail", "vector")  # every stored column but the id
        out = []
        for r in self._query(f"SELECT {self._select(cols)} FROM videos ORDER BY path"):
            d = dict(zip(cols, r))
            d["vector"] = None if d["vector"] is None else np.frombuffer(d["vector"], dtype=np.float16)
            out.append(VideoRow(**d))
        return out

    # ----- streaming reads (the builder and `vop export`: bounded memory on millions of rows)
    def ok_ids(self) -> np.ndarray:
        """Ids of every ok row, ``int64 [N]`` ascending."""
        rows = self._query("SELECT id FROM videos WHERE status = 'ok' ORDER BY id")
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def vector_chunks(self, chunk: int):
        """Yield ``(ids int64 [n], vectors float16 [n, dim])`` of the ok rows in id order, ``chunk`` at a time."""
        last = -1
        while True:
            rows = self._query(
                "SELECT id, vector FROM videos WHERE status = 'ok' AND id > ? ORDER BY id LIMIT ?", (last, chunk)
            )
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            flat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16)
            yield ids, flat.reshape(len(rows), -1)  # [n * dim] -> [n, dim]
            last = int(ids[-1])

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """float16 ``[len(ids), dim]`` of the given ok rows, in the order given."""
        out = []
        for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            part = [int(x) for x in ids[i : i + 500]]
            found = dict(self._query(
                f"SELECT id, vector FROM videos WHERE id IN ({','.join('?' * len(part))})", tuple(part)))
            out.extend(found[x] for x in part)
        return np.frombuffer(b"".join(out), dtype=np.float16).reshape(len(ids), -1)  # [n * dim] -> [n, dim]

    def row_chunks(self, chunk: int):
        """Yield lists of full rows (vector included) in id order, ``chunk`` at a time."""
        cols = ("id", *_INFO_COLUMNS[1:], "thumbnail", "vector")
        last = -1
        while True:
            found = self._query(
                f"SELECT {self._select(cols)} FROM videos WHERE id > ? ORDER BY id LIMIT ?", (last, chunk)
            )
            if not found:
                return
            out = []
            for r in found:
                d = dict(zip(cols, r))
                d.pop("id")
                d["vector"] = None if d["vector"] is None else np.frombuffer(d["vector"], dtype=np.float16)
                out.append(VideoRow(**d))
            yield out
            last = found[-1][0]
