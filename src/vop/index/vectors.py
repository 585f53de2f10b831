"""The FAISS side of an index: exact inner product for small collections, IVF beyond.

Vectors are L2-normalised, so inner product = cosine similarity. Below ``EXACT_MAX`` vectors
exact search costs a few milliseconds and has perfect recall, so no approximation is worth it.
Above, an inverted file (k-means cells, fp16 codes like the on-disk vectors) scans only
``nprobe`` of ``nlist`` cells. ``benchmarks/search.py`` measures the recall/speed trade-off.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FAISS_NAME = "vectors.faiss"
FAISS_META = "vectors.json"
EXACT_MAX = 50_000  # at dim 512 exact search over 50k vectors is ~5 ms on 2 cores
DEFAULT_NPROBE = 64
TRAIN_PER_CELL = 64  # k-means training points per cell (FAISS warns below 39)


@dataclass
class VectorIndexInfo:
    kind: str  # "exact" | "ivf"
    count: int
    dim: int
    generation: int = -1  # the store generation the file was built from
    nlist: int = 0
    nprobe: int = 0


def default_nlist(n: int) -> int:
    """About 4 sqrt(N) cells, the usual FAISS guidance for 1e5..1e7 vectors."""
    return max(1, int(4 * math.sqrt(n)))


class VectorIndex:
    """A FAISS index over (id, vector) pairs with the ids of the SQLite store."""

    def __init__(self, index, info: VectorIndexInfo):
        self.index = index
        self.info = info

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, exact_max: int = EXACT_MAX, nlist: int | None = None,
              nprobe: int = DEFAULT_NPROBE, seed: int = 0, verbose: bool = False) -> "VectorIndex":
        """Exact below ``exact_max`` vectors, IVF (fp16 codes) at or above it."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        n, dim = vectors.shape
        if n < exact_max:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
            if n:
                index.add_with_ids(vectors, ids)
            return cls(index, VectorIndexInfo("exact", n, dim))
        nlist = nlist or default_nlist(n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.verbose = verbose
        rng = np.random.default_rng(seed)
        sample = vectors[np.sort(rng.choice(n, size=min(n, nlist * TRAIN_PER_CELL), replace=False))]
        index.train(sample)
        index.add_with_ids(vectors, ids)
        index.nprobe = min(nprobe, nlist)
        return cls(index, VectorIndexInfo("ivf", n, dim, nlist=nlist, nprobe=index.nprobe))

    def set_nprobe(self, nprobe: int) -> None:
        if self.info.kind == "ivf":
            self.index.nprobe = self.info.nprobe = max(1, min(int(nprobe), self.info.nlist))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``[Q, dim]`` -> scores ``[Q, k']`` and ids ``[Q, k']`` (k' = min(k, count); best first)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(int(k), self.info.count)
        if k <= 0:
            empty = np.zeros((queries.shape[0], 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        scores, ids = self.index.search(queries, k)
        return scores, ids  # an IVF may return -1 ids when the probed cells hold fewer than k

    def save(self, index_dir: str | Path) -> None:
        """Write ``vectors.faiss`` + ``vectors.json`` atomically (temp files, then rename)."""
        import faiss

        index_dir = Path(index_dir)
        tmp = index_dir / (FAISS_NAME + ".tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, index_dir / FAISS_NAME)
        tmp = index_dir / (FAISS_META + ".tmp")
        tmp.write_text(json.dumps(asdict(self.info), indent=2) + "\n")
        os.replace(tmp, index_dir / FAISS_META)

    @classmethod
    def load(cls, index_dir: str | Path) -> "VectorIndex | None":
        """The saved index, or None when there is none (or it is unreadable)."""
        import faiss

        index_dir = Path(index_dir)
        try:
            info = VectorIndexInfo(**json.loads((index_dir / FAISS_META).read_text()))
            index = faiss.read_index(str(index_dir / FAISS_NAME))
        except (OSError, ValueError, TypeError, RuntimeError):
            return None
        vi = cls(index, info)
        vi.set_nprobe(info.nprobe)
        return vi


def load_or_build(index_dir: str | Path, store, dim: int, exact_max: int = EXACT_MAX,
                  save: bool = True) -> VectorIndex:
    """The FAISS index matching the store's current generation; rebuilt from the rows when stale."""
    generation = store.generation()
    vi = VectorIndex.load(index_dir)
    if vi is not None and vi.info.generation == generation and vi.info.dim == dim:
        return vi
    ids, vecs = store.vectors()
    vecs = vecs.reshape(len(ids), dim)  # also gives an empty store its [0, dim] shape
    vi = VectorIndex.build(ids, vecs, exact_max=exact_max)
    vi.info.generation = generation
    if save:
        vi.save(index_dir)
    return vi
