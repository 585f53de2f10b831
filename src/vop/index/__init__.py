"""Search over a user's own videos: discover -> encode -> store -> search.

An index is a folder::

    INDEX/
      embeddings/     Parquet embedding shards (part-*.parquet) + _manifest.json: what every encoding
                      path writes (plain, --shard i/n, --engine ray); see vop.index.shards
      manifest.json   what encoded the vectors (backbone + adapter sha256, method, frames, dim)
      index.sqlite    one row per video: path relative to the collection root, size, mtime,
                      duration, frames, thumbnail (JPEG), status/error, the fp16 vector
      vectors.faiss   derived from the stored vectors (exact, IVF or IVF-PQ by size; see
                      vop.index.vectors); rebuilt when stale
      report.json     the last run's summary, undecodable videos listed with their reasons

The shards are the source of truth: SQLite and FAISS are built from them by one builder
(vop.index.from_shards, also ``vop index --from-shards`` for shards any engine wrote). Parts are
renamed into place when complete, so a killed run loses at most the part it was filling and
never duplicates a video (the newest row of a path wins).
"""
