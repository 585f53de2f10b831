"""Search over a user's own videos: discover -> encode -> store -> search.

An index is a folder::

    INDEX/
      manifest.json   what encoded the vectors (backbone + adapter sha256, method, frames, dim)
      index.sqlite    one row per video: path relative to the collection root, size, mtime,
                      duration, frames, thumbnail (JPEG), status/error, the fp16 vector
      vectors.faiss   derived from the stored vectors (exact, IVF or IVF-PQ by size; see
                      vop.index.vectors); rebuilt when stale
      report.json     the last run's summary, undecodable videos listed with their reasons

The SQLite file is the source of truth: each video's row and vector are committed together, so
a killed run loses at most the video it was encoding and never duplicates one.
"""
