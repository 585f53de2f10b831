"""The FAISS side of an index: exact search for small collections, approximate beyond.

Vectors are L2-normalised, so inner product = cosine similarity. Kinds (``kind=``):

* ``exact`` (below ``EXACT_MAX`` vectors): ``IndexFlatIP``, perfect recall.
* ``pq`` (default at or above ``EXACT_MAX``): every vector as a 4-bit product-quantisation code
  (dim/4 sub-vectors, SIMD "fast scan"), scanned exhaustively, then the best ``k * k_factor``
  candidates re-ranked with the exact fp16 vectors. The scan touches a 4-bit code per 4 numbers
  (1/32 of the fp32 bytes) and does not depend on the data having cluster structure.
* ``ivf``: an inverted file (``nlist`` k-means cells, fp16 codes) scanning ``nprobe`` cells. Much
  faster on clustered embeddings, but on structureless data (the benchmark's random unit vectors)
  it needs most cells for good recall.

Approximate kinds fall back to exact below ``MIN_TRAIN`` vectors (too few to train on).

Parallel search: one query's ``pq`` search is a single-threaded FAISS loop, so in memory a ``pq``
index is cut into ``threads`` contiguous shards (byte copies of the packed fast-scan blocks and of
the fp16 rows; default: the machine's cores, at most ``MAX_SEARCH_THREADS``), each scanned and
re-ranked by its own thread (``faiss.IndexShards``) with ``k * k_factor / shards`` candidates, so
the total number of candidates, and hence recall, stays that of one index. On disk it is one FAISS
file either way (shards are joined back on save).

Huge pages (``huge_pages=True``, what ``vop serve`` asks for): the re-rank reads k * k_factor
random fp16 rows (2 * dim bytes each) per query, and with 4 KiB pages almost every one is a TLB miss. The rows
are backed by 2 MiB transparent huge pages (Linux ``madvise``, best effort), at the cost of one
copy when the index is opened.

Why ``pq`` and not ``ivf`` by default above the threshold: ``pq`` needs no cluster structure in
the data and its cost is one pass over small codes plus a re-rank whose size ``k_factor`` sets;
``ivf`` needs most of its cells for good recall on structureless data. The measurements
(``benchmarks/search.py`` and its probes) are in ``docs/search.md`` and
``benchmarks/results/search*.json``.

The saved file is untrusted input: :mod:`vop.index.faiss_bytes` checks it before FAISS reads
it, and owns the byte-level work on pq tables (cutting into shards, joining them back).
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vop.index.faiss_bytes import (
    FaissFileError,
    check_faiss_file,
    check_ids_file,
    fp16_rows,
    join_pq,
    split_pq,
)
from vop.limits import MAX_SEARCH_PARAM, check_int

log = logging.getLogger("vop.index")

FAISS_NAME = "vectors.faiss"
FAISS_META = "vectors.json"  # written last: its generation says the other two files are complete
IDS_NAME = "vectors.ids.npy"  # position -> store id, for the kinds that do not hold ids themselves
KINDS = ("exact", "pq", "ivf")
EXACT_MAX = 50_000  # below this, exact search is fast enough (a chosen size, not tuned)
DEFAULT_NPROBE = 64
DEFAULT_K_FACTOR = 600  # re-rank k * 600 candidates (its recall and latency: docs/search.md)
# FAISS fast-scan kernel for the pq scan: 15 = one query at a time, candidates kept in a
# reservoir. FAISS's automatic choice for 128 sub-quantisers (a query-blocked kernel) was slower
# per query (docs/search.md); same candidates and scores (up to the order of ties between equal
# quantised scores).
PQ_SCAN_IMPLEM = 15
IVF_TRAIN_PER_CELL = 40  # k-means training points per cell (FAISS warns below 39)
IVF_KMEANS_ITERS = 10
PQ_TRAIN = 65_536  # 16 centroids per sub-quantiser need few training points
MAX_SEARCH_THREADS = 4  # cap on one query's threads (a chosen cap; what was measured: docs/search.md)
MIN_SHARD = 4096  # vectors per pq search shard at least (a chosen floor for small collections, not tuned)


def default_search_threads() -> int:
    """Threads for one query's pq search: ``VOP_SEARCH_THREADS`` or the cores (at most 4)."""
    env = os.environ.get("VOP_SEARCH_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"VOP_SEARCH_THREADS must be a positive integer, got {env!r}") from None
    return max(1, min(MAX_SEARCH_THREADS, os.cpu_count() or 1))


@dataclass
class VectorIndexInfo:
    kind: str  # "exact" | "pq" | "ivf"
    count: int
    dim: int
    generation: int = -1  # the store generation the file was built from
    requested: str = "auto"  # the kind asked for ("auto": by size), kept across rebuilds
    nlist: int = 0
    nprobe: int = 0
    k_factor: int = 0


MIN_TRAIN = 256  # fewer vectors than this cannot train an approximate index: exact search instead


def default_nlist(n: int) -> int:
    """About 4 sqrt(N) cells (FAISS guidance for 1e5..1e7 vectors), with enough training points each."""
    return max(1, min(int(4 * math.sqrt(n)), n // IVF_TRAIN_PER_CELL))


def choose_kind(n: int, dim: int, requested: str = "auto", exact_max: int = EXACT_MAX) -> str:
    if requested not in ("auto", *KINDS):
        raise ValueError(f"vector index kind must be one of auto, {', '.join(KINDS)}; got {requested!r}")
    if requested == "exact" or n < MIN_TRAIN:
        return "exact"
    if requested != "auto":
        return requested
    if n < exact_max:
        return "exact"
    return "pq" if dim % 4 == 0 else "ivf"


class VectorIndex:
    """A FAISS index over (id, vector) pairs with the ids of the SQLite store.

    Exact and pq indexes keep positions and we map them to ids with ``ids`` ourselves: FAISS's
    ``IndexIDMap`` opens an OpenMP region per search, which on a busy shared CPU waits for a
    scheduler slice (docs/search.md).
    """

    def __init__(self, index, info: VectorIndexInfo, ids: np.ndarray | None = None, threads: int | None = None,
                 huge_pages: bool = False):
        self.info = info
        self.ids = ids  # [count] int64, or None when the FAISS index stores the ids (ivf)
        self.index = index  # what ``search`` calls: the FAISS index, or IndexShards over its pq parts
        self._parts: list = []  # pq only: (IndexRefine, fast-scan, fp16) per shard, kept alive here
        if info.kind == "pq":
            threads = default_search_threads() if threads is None else max(1, int(threads))
            shards = max(1, min(threads, info.count // MIN_SHARD))
            self._parts = split_pq(index, shards)
            if shards > 1:
                self.index = faiss_shards(info.dim, [r for r, _, _ in self._parts])
            if huge_pages:
                for _, _, flat in self._parts:
                    ask_huge_pages(fp16_rows(flat))

    @property
    def shards(self) -> int:
        """How many threads one pq query uses (1 for the other kinds)."""
        return max(1, len(self._parts))

    def scans(self) -> list:
        """The fast-scan index of every pq shard (empty for the other kinds)."""
        return [f for _, f, _ in self._parts]

    def _whole(self):
        """The FAISS index as one piece (what is saved): pq shards joined back together."""
        if len(self._parts) > 1:
            return join_pq(self._parts, self.info.k_factor)
        return self.index

    @classmethod
    def build(
        cls,
        ids: np.ndarray,
        vectors: np.ndarray,
        kind: str = "auto",
        exact_max: int = EXACT_MAX,
        nlist: int | None = None,
        nprobe: int = DEFAULT_NPROBE,
        k_factor: int = DEFAULT_K_FACTOR,
        seed: int = 0,
        threads: int | None = None,
        huge_pages: bool = False,
    ) -> VectorIndex:
        """Build the index kind for ``len(vectors)`` (``kind="auto"``) or the one asked for."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        _n, dim = vectors.shape
        return cls.build_streaming(
            ids, dim, lambda picked: vectors[picked], lambda chunk: [(ids, vectors)], kind=kind,
            exact_max=exact_max, nlist=nlist, nprobe=nprobe, k_factor=k_factor, seed=seed, threads=threads,
            huge_pages=huge_pages,
        )

    @classmethod
    def build_streaming(
        cls,
        ids: np.ndarray,
        dim: int,
        sample_of,
        chunks,
        kind: str = "auto",
        exact_max: int = EXACT_MAX,
        nlist: int | None = None,
        nprobe: int = DEFAULT_NPROBE,
        k_factor: int = DEFAULT_K_FACTOR,
        seed: int = 0,
        threads: int | None = None,
        huge_pages: bool = False,
        chunk: int = 65_536,
    ) -> VectorIndex:
        """Build without holding every vector: trained on a random sample, filled chunk by chunk.

        ``ids``: int64 ``[N]`` of the vectors, in the order ``chunks`` yields them;
        ``sample_of(positions)``: the vectors at those positions (sorted), for training;
        ``chunks(chunk)``: yields ``(ids [n], vectors [n, dim])`` in order, ``chunk`` rows at a time.
        """
        import faiss

        ids = np.ascontiguousarray(ids, dtype=np.int64)
        n = len(ids)
        info = VectorIndexInfo(choose_kind(n, dim, kind, exact_max), n, dim, requested=kind)
        rng = np.random.default_rng(seed)
        own_ids = info.kind != "ivf"
        train = 0
        if info.kind == "exact":
            index = faiss.IndexFlatIP(dim)
        elif info.kind == "pq":
            if dim % 4:
                raise ValueError(f"the pq index needs a dimension divisible by 4, got {dim}")
            # [dim] -> dim/4 sub-vectors of 4 numbers, 4 bits each; fp16 copies for the re-rank
            index = faiss.index_factory(dim, f"PQ{dim // 4}x4fs,Refine(SQfp16)", faiss.METRIC_INNER_PRODUCT)
            train = PQ_TRAIN
            info.k_factor = k_factor
        else:
            info.nlist = nlist or default_nlist(n)
            index = faiss.IndexIVFScalarQuantizer(
                faiss.IndexFlatIP(dim),
                dim,
                info.nlist,
                faiss.ScalarQuantizer.QT_fp16,
                faiss.METRIC_INNER_PRODUCT,
            )
            index.cp.seed, index.cp.niter = seed, IVF_KMEANS_ITERS
            train = info.nlist * IVF_TRAIN_PER_CELL
            info.nprobe = nprobe
        if train:
            picked = np.arange(n) if train >= n else np.sort(rng.choice(n, size=train, replace=False))
            index.train(np.ascontiguousarray(sample_of(picked), dtype=np.float32))
        added = 0
        for part_ids, part in chunks(chunk):
            part = np.ascontiguousarray(part, dtype=np.float32)
            if not np.array_equal(part_ids, ids[added : added + len(part_ids)]):
                raise ValueError("the vectors changed while the index was being built; run it again")
            if own_ids:
                index.add(part)
            else:
                index.add_with_ids(part, np.ascontiguousarray(part_ids, dtype=np.int64))
            added += len(part_ids)
        if added != n:
            raise ValueError("the vectors changed while the index was being built; run it again")
        vi = cls(index, info, ids.copy() if own_ids else None, threads=threads, huge_pages=huge_pages)
        vi.set_params(nprobe=info.nprobe, k_factor=info.k_factor)
        return vi

    def set_params(self, nprobe: int | None = None, k_factor: int | None = None) -> None:
        """Query-time knobs: IVF cells scanned; PQ candidates re-ranked per result."""
        if self.info.kind == "ivf" and nprobe:
            self.index.nprobe = self.info.nprobe = max(1, min(int(nprobe), self.info.nlist))
        if self.info.kind == "pq":
            if k_factor:
                self.info.k_factor = max(1, int(k_factor))
            for refine, scan, _ in self._parts:
                scan.implem = PQ_SCAN_IMPLEM  # not stored in the file: set on every build and load
                # each shard re-ranks its share of the k * k_factor candidates
                refine.k_factor = max(1.0, self.info.k_factor / len(self._parts))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``[Q, dim]`` -> scores ``[Q, k']`` and ids ``[Q, k']`` (k' = min(k, count); best first).

        An approximate index may return id -1 (with score -inf or 0) when it found fewer than k.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(int(k), self.info.count)
        if k <= 0:
            empty = np.zeros((queries.shape[0], 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        scores, found = self.index.search(queries, k)
        if self.ids is not None:
            found = np.where(found >= 0, self.ids[np.maximum(found, 0)], -1)  # positions -> store ids
        return scores, found

    def save(self, index_dir: str | Path) -> None:
        """Write ``vectors.faiss`` + ``vectors.json`` atomically (temp files, then rename)."""
        import faiss

        index_dir = Path(index_dir)
        tmp = index_dir / (FAISS_NAME + ".tmp")
        faiss.write_index(self._whole(), str(tmp))
        os.replace(tmp, index_dir / FAISS_NAME)
        if self.ids is not None:
            tmp = index_dir / "vectors.ids.tmp.npy"
            np.save(tmp, self.ids)
            os.replace(tmp, index_dir / IDS_NAME)
        tmp = index_dir / (FAISS_META + ".tmp")
        tmp.write_text(json.dumps(asdict(self.info), indent=2) + "\n")
        os.replace(tmp, index_dir / FAISS_META)

    @classmethod
    def load(cls, index_dir: str | Path, threads: int | None = None, huge_pages: bool = False,
             dim: int | None = None, count: int | None = None) -> VectorIndex | None:
        """The saved index, or None when there is none.

        An index folder is untrusted input: before FAISS reads ``vectors.faiss`` (and NumPy the id
        map) their headers are checked against ``dim`` (the manifest's) and ``count`` (the store's
        vector rows; both default to what ``vectors.json`` says) and against the file's own size
        (:mod:`vop.index.faiss_bytes`), so nothing is allocated beyond what the file holds. A file
        that disagrees or that FAISS cannot read raises :class:`FaissFileError`."""
        import faiss

        index_dir = Path(index_dir)
        try:
            info = VectorIndexInfo(**json.loads((index_dir / FAISS_META).read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as e:
            raise FaissFileError(f"{index_dir / FAISS_META}: unreadable ({e})") from None
        dim = info.dim if dim is None else dim
        count = info.count if count is None else count
        try:  # query-time knobs: a hostile k_factor would make every query allocate k * k_factor rows
            for name in ("count", "dim", "nlist", "nprobe", "k_factor", "generation"):
                check_int(getattr(info, name), -1 if name == "generation" else 0,
                          MAX_SEARCH_PARAM if name in ("nprobe", "k_factor") else 1 << 62, name)
        except ValueError as e:
            raise FaissFileError(f"{index_dir / FAISS_META}: {e}") from None
        if (info.dim, info.count) != (dim, count):
            raise FaissFileError(f"{index_dir / FAISS_META}: describes {info.count:,} vectors of dim {info.dim}, "
                                 f"the index has {count:,} of dim {dim}")
        try:
            check_faiss_file(index_dir / FAISS_NAME, info.kind, dim, count)
            ids = None
            if info.kind != "ivf":
                check_ids_file(index_dir / IDS_NAME, count)
                ids = np.load(index_dir / IDS_NAME)
            index = faiss.read_index(str(index_dir / FAISS_NAME))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RuntimeError) as e:
            if isinstance(e, FaissFileError):
                raise
            raise FaissFileError(f"{index_dir / FAISS_NAME}: unreadable ({e})") from None
        if info.kind == "ivf" and info.nlist != index.nlist:
            raise FaissFileError(f"{index_dir / FAISS_META}: says {info.nlist:,} ivf cells, the index has {index.nlist:,}")
        vi = cls(index, info, ids, threads=threads, huge_pages=huge_pages)
        vi.set_params(nprobe=info.nprobe, k_factor=info.k_factor)
        return vi


MADV_HUGEPAGE, MADV_COLLAPSE = 14, 25  # <sys/mman.h> on Linux
HUGE_PAGE = 2 << 20


def ask_huge_pages(buffer: np.ndarray) -> bool:
    """Best effort: back the 2 MiB-aligned interior of ``buffer`` by transparent huge pages now
    (``madvise`` HUGEPAGE, then COLLAPSE, Linux 6.1+). False where the system does not support it;
    the numbers are the same either way, only memory access gets faster."""
    if not sys.platform.startswith("linux") or buffer.nbytes < 2 * HUGE_PAGE:
        return False
    start = -(-buffer.ctypes.data // HUGE_PAGE) * HUGE_PAGE
    end = (buffer.ctypes.data + buffer.nbytes) // HUGE_PAGE * HUGE_PAGE
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return False
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return (madvise(start, end - start, MADV_HUGEPAGE) == 0
            and madvise(start, end - start, MADV_COLLAPSE) == 0)


def faiss_shards(dim: int, parts: list):
    """A threaded ``IndexShards`` over ``parts`` (labels offset by the sizes before them)."""
    import faiss

    shards = faiss.IndexShards(dim, True, True)  # threaded, successive ids
    for part in parts:
        shards.add_shard(part)
    return shards


def _sample(vectors: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    n = len(vectors)
    return vectors if size >= n else vectors[np.sort(rng.choice(n, size=size, replace=False))]


def saved_info(index_dir: str | Path) -> VectorIndexInfo | None:
    """What ``vectors.json`` says about the saved index (None when it is missing or unreadable)."""
    try:
        return VectorIndexInfo(**json.loads((Path(index_dir) / FAISS_META).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def saved_kind(index_dir: str | Path) -> str:
    """The kind requested when the saved index was built ("auto" when there is none)."""
    try:
        requested = json.loads((Path(index_dir) / FAISS_META).read_text()).get("requested", "auto")
    except (OSError, ValueError, AttributeError):
        return "auto"
    return requested if requested in ("auto", *KINDS) else "auto"


def load_or_build(
    index_dir: str | Path,
    store,
    dim: int,
    kind: str | None = None,
    exact_max: int = EXACT_MAX,
    save: bool = True,
    threads: int | None = 1,
    huge_pages: bool = False,
    memory_budget: int | None = None,
) -> VectorIndex:
    """The FAISS index matching the store's current generation; rebuilt from the rows when stale
    (or when another ``kind`` is asked for; ``None`` keeps the kind asked for last time), and
    rebuilt with one warning line (logger ``vop.index``) when the saved files fail the checks of
    :meth:`VectorIndex.load` against ``dim`` and the store's ok rows: they are derived from the
    rows, so a crafted or damaged ``vectors.faiss`` costs a rebuild, never an allocation.

    ``threads``: search threads of the returned index (``None``: the default). 1 by default: the
    indexer only builds and saves, where splitting a pq index would copy it for nothing; and
    ``huge_pages`` (see the module doc) pays off only for an index that answers many queries."""
    generation = store.generation()
    saved = saved_info(index_dir)
    if saved is not None and saved.generation == generation and saved.dim == dim and kind in (None, saved.requested):
        try:
            vi = VectorIndex.load(index_dir, threads=threads, huge_pages=huge_pages, dim=dim,
                                  count=store.count("ok"))
        except FaissFileError as e:  # the files are derived from the rows: build them again
            log.warning("%s; rebuilding the vector index from the index's rows", e)
            vi = None
        if vi is not None:
            return vi
    vi = build_from_store(store, dim, kind=kind or saved_kind(index_dir), exact_max=exact_max,
                          memory_budget=memory_budget, threads=threads, huge_pages=huge_pages)
    vi.info.generation = generation
    if save:
        vi.save(index_dir)
    return vi


DEFAULT_MEMORY_BUDGET = 4 << 30  # bytes: a laptop's share for building (`vop index --memory-budget`)
BASE_BYTES = 400 << 20  # the process itself (Python, NumPy, FAISS, SQLite), roughly
MIN_CHUNK, MAX_CHUNK = 1024, 65_536


class MemoryBudgetError(ValueError):
    """The index to build does not fit the memory budget (one line with the size it needs)."""


def index_bytes(n: int, dim: int, kind: str) -> int:
    """What the built index holds in memory: codes + re-rank rows + our id map, per kind."""
    per = {"exact": 4 * dim + 8, "pq": dim // 8 + 2 * dim + 8, "ivf": 2 * dim + 8}[kind]
    return n * per


def plan_chunks(n: int, dim: int, kind: str, memory_budget: int | None) -> int:
    """Vectors added per chunk so that index + training sample + chunk fit ``memory_budget``;
    raises :class:`MemoryBudgetError` naming the size needed when even the index alone does not fit."""
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    train = {"exact": 0, "pq": PQ_TRAIN, "ivf": default_nlist(n) * IVF_TRAIN_PER_CELL}[kind]
    fixed = BASE_BYTES + index_bytes(n, dim, kind) + 8 * min(train, n) * dim
    per_row = 12 * dim  # fp16 rows read + their fp32 copy + FAISS's staging
    if fixed + MIN_CHUNK * per_row > budget:
        need = (fixed + MIN_CHUNK * per_row) / 2**30
        raise MemoryBudgetError(
            f"building a {kind} index of {n:,} vectors of dim {dim} needs about {need:.1f} GiB; "
            f"the memory budget is {budget / 2**30:.1f} GiB (raise --memory-budget)"
        )
    return int(min(MAX_CHUNK, (budget - fixed) // per_row))


def build_from_store(store, dim: int, kind: str = "auto", exact_max: int = EXACT_MAX,
                     memory_budget: int | None = None, threads: int | None = 1,
                     huge_pages: bool = False) -> VectorIndex:
    """The FAISS index of the store's ok rows, read in chunks under ``memory_budget``."""
    ids = store.ok_ids()
    chosen = choose_kind(len(ids), dim, kind, exact_max)
    chunk = plan_chunks(len(ids), dim, chosen, memory_budget)
    return VectorIndex.build_streaming(
        ids, dim, lambda picked: store.vectors_of(ids[picked]), store.vector_chunks, kind=kind,
        exact_max=exact_max, threads=threads, huge_pages=huge_pages, chunk=chunk,
    )


def parse_bytes(text: str) -> int:
    """"4G", "512M", "2.5GiB", "1000000" -> bytes."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1] if t and t[-1] in units else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise ValueError(f"--memory-budget must look like 4G, 512M or a number of bytes, got {text!r}") from None
    if not 0 < value * units[unit] <= 1 << 60:  # also refuses nan and inf
        raise ValueError(f"--memory-budget must be a positive size of at most 2^60 bytes, got {text!r}")
    return int(value * units[unit])
