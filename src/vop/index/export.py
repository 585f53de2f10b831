"""``vop export``: an index's rows as Parquet embedding shards (the schema of :mod:`vop.index.shards`).

The export is what LanceDB, Milvus, Spark or autofaiss read, and what ``vop index --from-shards``
builds an index from again. Vectors are the index's own fp16 values (float16 in the file);
rows are read from SQLite a chunk at a time, so memory stays bounded on millions of videos.
"""

from __future__ import annotations

from pathlib import Path

from vop.index.shards import PART_ROWS, PartWriter, write_manifest_beside

EXPORT_CHUNK = 1000


def export_rows(store, dest: str, dim: int, writer: str = "export", part_rows: int = PART_ROWS) -> int:
    """Write every row of ``store`` into parts under ``dest`` (a path or URI); returns the rows written."""
    written = 0
    with PartWriter(dest, dim, writer=writer, part_rows=part_rows, part_seconds=float("inf"),
                    vector_type="float16") as parts:
        for chunk in store.row_chunks(EXPORT_CHUNK):
            for row in chunk:
                parts.add(row)
            written += len(chunk)
    return written


def export_index(index_dir: str | Path, dest: str, part_rows: int = PART_ROWS) -> dict:
    """``index_dir`` (a vop index) -> ``dest/part-*.parquet`` + ``dest/_manifest.json``."""
    from vop.index.manifest import read_manifest
    from vop.index.shards import part_files
    from vop.index.store import DB_NAME, IndexStore

    manifest = read_manifest(index_dir)
    if part_files(dest):
        raise FileExistsError(f"{dest} already holds Parquet files; export into an empty folder")
    with IndexStore(Path(index_dir) / DB_NAME, readonly=True) as store:
        rows = export_rows(store, dest, manifest.dim, part_rows=part_rows)
        ok = store.count("ok")
    write_manifest_beside(dest, manifest)
    return {"rows": rows, "indexed": ok, "parts": len(part_files(dest)), "dim": manifest.dim,
            "out": str(dest)}
