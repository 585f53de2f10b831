"""The saved vector index as bytes: checked before FAISS reads it, and pq tables cut and joined.

An index folder is untrusted input, and ``faiss.read_index`` allocates every array a file's
header announces before it reads it (a 109-byte file announcing 2^28 floats costs 1 GiB before
FAISS notices the file is short). So :func:`check_faiss_file` parses the headers itself, for the
three layouts :mod:`vop.index.vectors` writes and nothing else:

* ``exact``: ``IxFI`` (``IndexFlatIP``): header, then ``ntotal * d`` floats;
* ``pq``: ``IxRF`` (``IndexRefine``) over ``IPfs`` (``IndexPQFastScan``, ``d/4`` sub-quantisers
  of 4 bits, blocks of ``bbs`` vectors) and ``IxSQ`` (``IndexScalarQuantizer``, fp16 rows);
* ``ivf``: ``IwSq`` (``IndexIVFScalarQuantizer``, fp16) with an ``IxFI`` coarse quantiser and
  ``ilar`` array inverted lists.

Every dimension must be the index's (the manifest's ``dim``), every ``ntotal`` the number of
vector rows in the SQLite store, every array size what those imply, and every array must fit in
the bytes left in the file, which must end where the index ends. A file that disagrees raises
:class:`FaissFileError`; ``vectors.faiss`` is derived from the rows, so
:func:`vop.index.vectors.load_or_build` then rebuilds it with a one-line warning. The id map
``vectors.ids.npy`` gets the same treatment (:func:`check_ids_file`).

The other half is byte surgery on a loaded pq index: fast-scan codes are packed ``bbs`` vectors
per block, so a range of whole blocks is a plain byte range of the packed table (and of the
fp16 rows): :func:`split_pq` cuts one index into search shards, :func:`join_pq` puts them back.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

METRIC_INNER_PRODUCT = 0  # faiss.METRIC_INNER_PRODUCT
QT_FP16 = 4  # faiss.ScalarQuantizer.QT_fp16
PQ_NBITS = 4  # bits per pq sub-quantiser (vectors.py builds "PQ{d/4}x4fs")
PQ_BBS = 32  # vectors per fast-scan block (FAISS's default, the only value vop writes)


class FaissFileError(ValueError):
    """A saved vector-index file that is not what vop writes for this index (one line, naming it)."""


class _Cursor:
    """Reads a FAISS file field by field, never more than the bytes left in it."""

    def __init__(self, f, size: int, path: Path):
        self.f, self.size, self.path, self.at = f, size, path, 0

    def fail(self, why: str) -> FaissFileError:
        return FaissFileError(f"{self.path}: {why}")

    def take(self, n: int, what: str) -> bytes:
        if n > self.size - self.at:
            raise self.fail(f"truncated: {what} needs {n:,} bytes, {self.size - self.at:,} are left")
        self.at += n
        return self.f.read(n)

    def skip(self, n: int, what: str) -> None:
        if n > self.size - self.at:
            raise self.fail(f"truncated: {what} needs {n:,} bytes, {self.size - self.at:,} are left")
        self.at += n
        self.f.seek(self.at)

    def scalar(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def fourcc(self, expected: str, what: str) -> None:
        got = self.take(4, what)
        if got != expected.encode():
            raise self.fail(f"{what} is {got!r}, not {expected!r} (not a vector index vop writes)")

    def array(self, itemsize: int, expected: int | None, what: str) -> int:
        """A FAISS vector (uint64 count, then the items), skipped: its count, checked against
        ``expected`` (when given) and against the bytes left before anything is read."""
        count = self.scalar("Q", what)
        if expected is not None and count != expected:
            raise self.fail(f"{what} holds {count:,} items where this index has {expected:,}")
        self.skip(count * itemsize, what)
        return count

    def equal(self, got, expected, what: str) -> None:
        if got != expected:
            raise self.fail(f"{what} is {got}, expected {expected}")


def _header(c: _Cursor, dim: int, count: int, what: str) -> None:
    """``write_index_header``: d (int32), ntotal (int64), two unused int64, is_trained, metric."""
    c.equal(c.scalar("i", f"{what} dimension"), dim, f"{what} dimension")
    c.equal(c.scalar("q", f"{what} ntotal"), count, f"{what} vector count")
    c.take(17, f"{what} header")  # two unused int64 and is_trained (one byte)
    c.equal(c.scalar("i", f"{what} metric"), METRIC_INNER_PRODUCT, f"{what} metric")


def _flat_ip(c: _Cursor, dim: int, count: int, what: str) -> None:
    c.fourcc("IxFI", what)
    _header(c, dim, count, what)
    c.array(4, count * dim, f"{what} vectors")


def _fp16_quantizer(c: _Cursor, dim: int, what: str) -> None:
    """``write_ScalarQuantizer`` of an fp16 quantiser: qtype, rangestat, its arg, d, code size, trained."""
    c.equal(c.scalar("i", f"{what} type"), QT_FP16, f"{what} scalar-quantiser type")
    c.take(8, f"{what} range statistic")
    c.equal(c.scalar("Q", f"{what} dimension"), dim, f"{what} dimension")
    c.equal(c.scalar("Q", f"{what} code size"), 2 * dim, f"{what} code size")
    c.array(4, 0, f"{what} trained values")  # fp16 needs none


def _pq(c: _Cursor, dim: int, count: int) -> None:
    c.fourcc("IxRF", "index type")
    _header(c, dim, count, "refine index")
    c.fourcc("IPfs", "pq base index type")
    _header(c, dim, count, "pq index")
    if dim % 4:
        raise c.fail(f"a pq index needs a dimension divisible by 4, the index has {dim}")
    m = dim // 4
    c.equal(c.scalar("Q", "pq dimension"), dim, "pq dimension")
    c.equal(c.scalar("Q", "pq sub-quantisers"), m, "pq sub-quantiser count")
    c.equal(c.scalar("Q", "pq bits"), PQ_NBITS, "pq bits per code")
    c.array(4, dim << PQ_NBITS, "pq centroids")  # M sub-quantisers x 16 centroids x dim/M
    c.take(4, "pq scan kernel")  # implem: set again after every load
    c.equal(c.scalar("i", "pq block size"), PQ_BBS, "pq block size")
    c.take(4, "pq query block size")
    blocks = -(-count // PQ_BBS)
    c.equal(c.scalar("Q", "pq padded count"), blocks * PQ_BBS, "pq padded vector count")
    m2 = m + (m & 1)
    c.equal(c.scalar("Q", "pq padded sub-quantisers"), m2, "pq padded sub-quantiser count")
    c.array(1, blocks * PQ_BBS * m2 // 2, "pq packed codes")  # 4 bits per code
    c.fourcc("IxSQ", "re-rank index type")
    _header(c, dim, count, "re-rank index")
    _fp16_quantizer(c, dim, "re-rank quantiser")
    c.array(1, count * 2 * dim, "re-rank fp16 rows")
    c.take(4, "re-rank k_factor")


def _ivf(c: _Cursor, dim: int, count: int) -> None:
    c.fourcc("IwSq", "index type")
    _header(c, dim, count, "ivf index")
    nlist = c.scalar("Q", "ivf cell count")
    if not 1 <= nlist <= max(1, count):
        raise c.fail(f"ivf cell count is {nlist:,} for {count:,} vectors")
    c.take(8, "ivf nprobe")
    _flat_ip(c, dim, nlist, "ivf coarse quantiser")
    c.equal(c.scalar("b", "ivf direct map"), 0, "ivf direct-map type")
    c.array(8, 0, "ivf direct map")
    _fp16_quantizer(c, dim, "ivf quantiser")
    c.equal(c.scalar("Q", "ivf code size"), 2 * dim, "ivf code size")
    c.take(1, "ivf by_residual")
    c.fourcc("ilar", "ivf inverted-lists type")
    c.equal(c.scalar("Q", "ivf list count"), nlist, "ivf list count")
    code = c.scalar("Q", "ivf list code size")
    c.equal(code, 2 * dim, "ivf list code size")
    layout = c.take(4, "ivf list layout")
    pairs = c.scalar("Q", "ivf list sizes")
    if layout not in (b"full", b"sprs") or pairs > nlist * (1 if layout == b"full" else 2):
        raise c.fail(f"ivf list layout {layout!r} with {pairs:,} sizes for {nlist:,} lists")
    sizes = np.frombuffer(c.take(8 * pairs, "ivf list sizes"), dtype="<u8")  # at most 2 nlist numbers
    if layout == b"full":
        c.equal(len(sizes), nlist, "ivf list sizes")
    else:
        cells, sizes = sizes[0::2], sizes[1::2]
        if len(cells) and (cells >= nlist).any():
            raise c.fail("ivf sparse list sizes name a cell beyond the cell count")
    if sizes.size and sizes.max() > count:
        raise c.fail("an ivf list is longer than the index")
    c.equal(int(sizes.sum(dtype=np.uint64)), count, "ivf vectors in the lists")
    c.skip(count * (code + 8), "ivf lists (codes and ids)")


LAYOUTS = {"exact": lambda c, dim, count: _flat_ip(c, dim, count, "exact index"), "pq": _pq, "ivf": _ivf}


def check_faiss_file(path: str | Path, kind: str, dim: int, count: int) -> None:
    """Raise :class:`FaissFileError` unless ``path`` holds exactly the ``kind`` index vop writes for
    ``count`` vectors of dimension ``dim``; reads headers only (a few hundred bytes plus, for
    ``ivf``, the list sizes), never an array."""
    path = Path(path)
    if kind not in LAYOUTS:
        raise FaissFileError(f"{path}: unknown vector index kind {kind!r}")
    if not (isinstance(dim, int) and 0 < dim <= 1 << 16 and isinstance(count, int) and count >= 0):
        raise FaissFileError(f"{path}: dimension {dim!r} and count {count!r} are not an index's")
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        c = _Cursor(f, size, path)
        LAYOUTS[kind](c, dim, count)
        if c.at != size:
            raise c.fail(f"{size - c.at:,} bytes after the end of the {kind} index")


def check_ids_file(path: str | Path, count: int) -> None:
    """Raise :class:`FaissFileError` unless ``path`` is a ``.npy`` of ``count`` int64 ids, exactly
    as long as that (checked from its header, before NumPy allocates anything)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise ValueError(f"npy format version {version}")
            shape, _, dtype = read[version](f)
            offset, size = f.tell(), f.seek(0, 2)
    except (ValueError, SyntaxError, struct.error) as e:
        raise FaissFileError(f"{path}: not an id map ({e})") from None
    if shape != (count,) or dtype != np.dtype("<i8") or size != offset + 8 * count:
        raise FaissFileError(f"{path}: an id map of shape {shape} {dtype} in {size:,} bytes, "
                             f"where the index has {count:,} int64 ids")


def _bytes(table, size: int) -> np.ndarray:
    """A writable NumPy view of a FAISS byte table's first ``size`` bytes."""
    import faiss

    ptr = table.get() if hasattr(table, "get") else table.data()
    return faiss.rev_swig_ptr(ptr, size)


def pq_pieces(index) -> tuple:
    """``IndexRefine(PQ fast-scan, fp16)`` -> (refine, fast-scan, fp16) as their own types."""
    import faiss

    refine = faiss.downcast_index(index)
    return refine, faiss.downcast_index(refine.base_index), faiss.downcast_index(refine.refine_index)


def _empty_pq_like(scan, flat):
    """An empty fast-scan and fp16 index with the trained quantisers of ``scan`` / ``flat``."""
    import faiss

    part_scan = faiss.IndexPQFastScan(scan.d, scan.M, scan.nbits, scan.metric_type, scan.bbs)
    part_scan.pq = scan.pq
    part_scan.implem = scan.implem
    part_scan.is_trained = True
    part_flat = faiss.IndexScalarQuantizer(flat.d, flat.sq.qtype, flat.metric_type)
    part_flat.sq = flat.sq
    part_flat.is_trained = True
    return part_scan, part_flat


def fp16_rows(flat) -> np.ndarray:
    """The fp16 re-rank rows of an ``IndexScalarQuantizer`` as a writable byte view (no copy)."""
    return _bytes(flat.codes, flat.ntotal * flat.code_size)


def split_pq(index, shards: int) -> list[tuple]:
    """Cut a pq index into ``shards`` contiguous ranges of whole fast-scan blocks.

    Fast-scan codes are packed ``bbs`` vectors per block, so a range that starts and ends on a
    block boundary is a plain byte range of the packed table (and of the fp16 rows). Returns
    ``[(IndexRefine, fast-scan, fp16)]``; with one shard, the index itself.
    """
    import faiss

    refine, scan, flat = pq_pieces(index)
    if shards <= 1:
        return [(refine, scan, flat)]
    n, bbs, stride, row = scan.ntotal, scan.bbs, scan.get_block_stride(), flat.code_size
    packed, rows = _bytes(scan.codes, scan.codes.size()), _bytes(flat.codes, n * row)
    blocks = -(-n // bbs)
    parts = []
    for s in range(shards):
        b0, b1 = blocks * s // shards, blocks * (s + 1) // shards
        lo, hi = b0 * bbs, min(n, b1 * bbs)
        part_scan, part_flat = _empty_pq_like(scan, flat)
        part_scan.codes.resize((b1 - b0) * stride)
        _bytes(part_scan.codes, (b1 - b0) * stride)[:] = packed[b0 * stride : b1 * stride]
        part_scan.ntotal, part_scan.ntotal2 = hi - lo, (b1 - b0) * bbs
        part_flat.codes.resize((hi - lo) * row)
        _bytes(part_flat.codes, (hi - lo) * row)[:] = rows[lo * row : hi * row]
        part_flat.ntotal = hi - lo
        parts.append((faiss.IndexRefine(part_scan, part_flat), part_scan, part_flat))
    return parts


def join_pq(parts: list[tuple], k_factor: float):
    """The inverse of :func:`split_pq`: one ``IndexRefine`` over all shards, in order (every
    shard but the last holds whole blocks, so the packed tables simply follow each other)."""
    import faiss

    _, first_scan, first_flat = parts[0]
    scan, flat = _empty_pq_like(first_scan, first_flat)
    n = sum(s.ntotal for _, s, _ in parts)
    stride, row = first_scan.get_block_stride(), first_flat.code_size
    scan.codes.resize(sum(s.codes.size() for _, s, _ in parts))
    flat.codes.resize(n * row)
    packed, rows = _bytes(scan.codes, scan.codes.size()), _bytes(flat.codes, n * row)
    at_block = at_row = 0
    for _, s, f in parts:
        size = s.codes.size()
        packed[at_block : at_block + size] = _bytes(s.codes, size)
        rows[at_row : at_row + f.ntotal * row] = _bytes(f.codes, f.ntotal * row)
        at_block, at_row = at_block + size, at_row + f.ntotal * row
    scan.ntotal, scan.ntotal2 = n, at_block // stride * scan.bbs
    flat.ntotal = n
    whole = faiss.IndexRefine(scan, flat)
    whole.k_factor = float(k_factor)
    whole.own_fields = True  # the Python wrappers of scan/flat may go; the refine index owns them
    scan.this.disown()
    flat.this.disown()
    return whole
