"""Query an index: text -> videos, video -> videos.

Queries must be encoded in the index's embedding space, so :func:`encoder_for_index` rebuilds
the encoder from the manifest and every :class:`Searcher` checks the encoder's hashes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vop.index.manifest import MANIFEST_NAME, IndexMismatchError, Manifest, check_same_model, read_manifest
from vop.index.served import serve_root, served_file
from vop.index.store import DB_NAME, IndexStore
from vop.index.vectors import load_or_build


@dataclass
class Hit:
    id: int
    path: str  # relative to the collection root
    score: float  # cosine similarity
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    warning: str | None = None  # e.g. "truncated: 85 of 310 frames decode"

    def to_dict(self) -> dict:
        return asdict(self)


def encoder_for_index(
    manifest: Manifest, backbone: str | None = None, adapter: str | Path | None = None, clip=None,
    precision: str = "fp32", index_dir: str | Path | None = None, runtime: str = "torch",
):
    """The encoder recorded in ``manifest`` (optionally from moved files), hash-checked.

    The backbone is ``resolve_backbone(manifest.backbone, backbone)``, or ``clip`` when the caller
    already resolved it (a server shares one). ``runtime`` / ``precision`` are the query encoder's
    own (``vop.runtime``); they need not be the index's."""
    from vop.backbone.reference import resolve_backbone
    from vop.index.encoder import VideoEncoder

    if adapter is None and manifest.adapter_path is not None:
        adapter = manifest.adapter_path
    if adapter is not None and manifest.adapter_sha256 is None:
        raise IndexMismatchError(f"the index was built without an adapter; adapter {adapter} cannot query it")
    where = Path(index_dir) / MANIFEST_NAME if index_dir is not None else f"the index of {manifest.root}"
    clip = resolve_backbone(manifest.backbone, backbone, recorded_in=where, clip=clip)
    encoder = VideoEncoder.from_clip(clip, adapter, frames=manifest.frames, precision=precision, runtime=runtime)
    check_encoder(manifest, encoder)
    return encoder


def check_encoder(manifest: Manifest, encoder) -> None:
    check_same_model(manifest, Manifest(root=manifest.root, **encoder.identity()), "the query encoder")


class Searcher:
    """An opened index (manifest + SQLite + FAISS) and, optionally, the encoder for its queries.

    ``search_threads``: threads one query's pq search may use (``None``: ``VOP_SEARCH_THREADS`` or
    the cores); ``huge_pages``: back the re-rank rows by huge pages (``vop.index.vectors``). Both
    cost a copy of the index in memory when it is opened, which pays off for a service, not for
    one query: ``vop search`` passes 1 and False.
    """

    def __init__(self, index_dir: str | Path, encoder=None, search_threads: int | None = None,
                 huge_pages: bool = True, root: str | Path | None = None):
        self.index_dir = Path(index_dir)
        self.manifest = read_manifest(self.index_dir)
        if self.manifest.shard is not None:
            raise ValueError(f"{self.index_dir} is one shard of an old-layout index; build the index with "
                             f"vop index --from-shards (docs/scaling.md)")
        self.set_root(root)
        self.store = IndexStore(self.index_dir / DB_NAME)
        self.vectors = load_or_build(self.index_dir, self.store, self.manifest.dim, threads=search_threads,
                                     huge_pages=huge_pages)
        self.encoder = None
        if encoder is not None:
            self.set_encoder(encoder)

    def set_root(self, root: str | Path | None) -> None:
        """Serve files from ``root`` (``--root``), or, when None, from the recorded root while it is
        still a folder (``vop.index.served.serve_root``); ``no_files_because`` says why none are."""
        self.served_root, self.no_files_because = serve_root(self.manifest.root, root)
        self.root = self.served_root or Path(self.manifest.root)

    def set_encoder(self, encoder) -> None:
        check_encoder(self.manifest, encoder)
        self.encoder = encoder

    def close(self) -> None:
        self.store.close()

    def __len__(self) -> int:
        return self.vectors.info.count

    def search_vectors(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """``[Q, dim]`` unit vectors -> ``Q`` ranked hit lists (at most ``k`` each)."""
        scores, ids = self.vectors.search(queries, k)
        infos = self.store.infos(sorted({int(i) for i in ids.ravel() if i >= 0}))
        out = []
        for row_scores, row_ids in zip(scores, ids):
            hits = [
                Hit(
                    int(i),
                    infos[int(i)]["path"],
                    float(s),
                    infos[int(i)]["duration"],
                    infos[int(i)]["width"],
                    infos[int(i)]["height"],
                    infos[int(i)]["error"],  # an ok row's error column holds its warning
                )
                for s, i in zip(row_scores, row_ids)
                if i >= 0 and int(i) in infos
            ]
            out.append(hits)
        return out

    def _need_encoder(self):
        if self.encoder is None:
            raise RuntimeError("this searcher has no query encoder (pass encoder=...)")
        return self.encoder

    def search_text(self, text: str, k: int = 10) -> list[Hit]:
        return self.search_vectors(self._need_encoder().encode_texts([text]), k)[0]

    def search_like(self, video: str | Path | int, k: int = 10) -> list[Hit]:
        """Videos most similar to ``video``: an id or a path inside the index (stored vector
        reused), or any other video file (encoded now). The query video itself is left out."""
        vid = self.indexed_id(video)
        if vid is not None:
            query = self.store.vector(vid)[None].astype(np.float32)  # [1, dim]
        else:
            query = self._need_encoder().encode_file(video).vector[None]
        hits = self.search_vectors(query, k + (vid is not None))[0]
        return [h for h in hits if h.id != vid][:k]

    def indexed_id(self, video: str | Path | int) -> int | None:
        """The id of ``video`` (an id or a path) when the index holds a vector for it, else None."""
        if isinstance(video, int):
            if self.store.vector(video) is None:
                raise KeyError(f"no indexed video with id {video} in {self.index_dir}")
            return video
        path = Path(video).resolve()
        try:
            rel = path.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return None
        vid = self.store.id_of(rel)
        return vid if vid is not None and self.store.vector(vid) is not None else None

    def file_of(self, video_id: int) -> Path | None:
        """The file behind an indexed id, or None: only an ok row whose path is a video inside the
        served root and whose file still has the recorded device and inode (``vop.index.served``)."""
        found = self.served_file(video_id)
        return None if found is None else found[0]

    def served_file(self, video_id: int) -> tuple[Path, tuple[int, int]] | None:
        """``(path, (device, inode))`` the server may send for ``video_id``, or None."""
        return served_file(self.served_root, self.store.info(video_id))

    def thumbnail(self, video_id: int) -> bytes | None:
        return self.store.thumbnail(video_id)
