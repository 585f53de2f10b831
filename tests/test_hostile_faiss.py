"""A crafted ``vectors.faiss`` (issue 28): its headers are checked against the index and the file's
size before FAISS reads it, so it allocates nothing beyond what the file holds; ``load_or_build``
then rebuilds the file from the rows with one warning line."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vop.index.faiss_bytes import FaissFileError, check_faiss_file, check_ids_file
from vop.index.vectors import FAISS_META, FAISS_NAME, IDS_NAME, VectorIndex, load_or_build

DIM = 16


def _rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Rows:
    """What load_or_build reads from an IndexStore: ``n`` ok rows at generation 1."""

    def __init__(self, x):
        self.x = x

    def generation(self):
        return 1

    def count(self, status=None):
        return len(self.x)

    def ok_ids(self):
        return np.arange(len(self.x))

    def vectors_of(self, ids):
        return self.x[ids]

    def vector_chunks(self, chunk):
        for i in range(0, len(self.x), chunk):
            yield np.arange(i, min(i + chunk, len(self.x))), self.x[i : i + chunk]


def _saved(folder: Path, kind: str, n: int = 600) -> Path:
    folder.mkdir()
    vi = VectorIndex.build(np.arange(n), _rows(n), kind=kind)
    vi.info.generation = 1
    vi.save(folder)
    return folder


def _header(dim: int, ntotal: int) -> bytes:
    """``write_index_header``: d, ntotal, two unused int64, is_trained, metric (inner product)."""
    return struct.pack("<iqqq?i", dim, ntotal, 1 << 20, 1 << 20, True, 0)


def huge_flat(dim: int = DIM, ntotal: int = 600) -> bytes:
    """The issue's case: an ``IndexFlatIP`` header announcing 2^28 floats, in 109 bytes (1 GiB to
    FAISS's reader before it notices the file is short)."""
    data = b"IxFI" + _header(dim, ntotal) + struct.pack("<Q", 1 << 28)
    return data + bytes(109 - len(data))


@pytest.mark.parametrize("kind", ["exact", "pq", "ivf"])
def test_what_vop_writes_passes_the_check(tmp_path, kind):
    folder = _saved(tmp_path / kind, kind)
    check_faiss_file(folder / FAISS_NAME, kind, DIM, 600)
    if kind != "ivf":
        check_ids_file(folder / IDS_NAME, 600)
    split = VectorIndex.build(np.arange(10_000), _rows(10_000), kind=kind, threads=2)  # saved joined
    (tmp_path / "split").mkdir(exist_ok=True)
    split.save(tmp_path / "split")
    check_faiss_file(tmp_path / "split" / FAISS_NAME, kind, DIM, 10_000)


@pytest.mark.parametrize("kind", ["exact", "pq", "ivf"])
def test_wrong_dim_wrong_count_truncated_and_trailing_bytes_are_refused(tmp_path, kind):
    path = _saved(tmp_path / kind, kind) / FAISS_NAME
    with pytest.raises(FaissFileError, match="dimension is 16, expected 32"):
        check_faiss_file(path, kind, 32, 600)
    with pytest.raises(FaissFileError, match="vector count is 600, expected 601"):
        check_faiss_file(path, kind, DIM, 601)
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(FaissFileError, match="truncated"):
            check_faiss_file(path, kind, DIM, 600)
    path.write_bytes(data + b"\0")
    with pytest.raises(FaissFileError, match="1 bytes after the end"):
        check_faiss_file(path, kind, DIM, 600)
    other = {"exact": "pq", "pq": "ivf", "ivf": "exact"}[kind]  # a file of another kind
    path.write_bytes(data)
    with pytest.raises(FaissFileError, match="not a vector index vop writes"):
        check_faiss_file(path, other, DIM, 600)


def test_a_header_with_consistent_lies_is_held_to_the_file_size(tmp_path):
    """Dimension and count as the index says, but an array size the file cannot hold."""
    path = tmp_path / FAISS_NAME
    path.write_bytes(huge_flat())
    assert path.stat().st_size == 109
    with pytest.raises(FaissFileError, match="holds 268,435,456 items where this index has 9,600"):
        check_faiss_file(path, "exact", DIM, 600)
    path.write_bytes(huge_flat(ntotal=(1 << 28) // DIM))  # the count agrees too: the size is what is left
    with pytest.raises(FaissFileError, match="truncated: exact index vectors needs 1,073,741,824 bytes, 64 are left"):
        check_faiss_file(path, "exact", DIM, (1 << 28) // DIM)


def test_id_map_is_checked_before_numpy_allocates(tmp_path):
    path = tmp_path / IDS_NAME
    np.save(path, np.arange(600))
    check_ids_file(path, 600)
    with pytest.raises(FaissFileError, match="where the index has 601 int64 ids"):
        check_ids_file(path, 601)
    with open(path, "wb") as f:  # a valid header announcing 10^9 ids, then 16 bytes
        np.lib.format.write_array_header_1_0(f, {"descr": "<i8", "fortran_order": False, "shape": (10**9,)})
        f.write(bytes(16))
    with pytest.raises(FaissFileError, match=r"shape \(1000000000,\)"):
        check_ids_file(path, 10**9)
    path.write_bytes(b"not an npy")
    with pytest.raises(FaissFileError, match="not an id map"):
        check_ids_file(path, 600)


@pytest.mark.parametrize("case", ["huge", "dim", "count", "truncated", "k_factor"])
def test_load_or_build_rebuilds_a_bad_file_with_one_warning(tmp_path, caplog, case):
    folder = _saved(tmp_path / "idx", "exact" if case != "k_factor" else "pq", n=600)
    store = Rows(_rows(600))
    if case == "huge":
        (folder / FAISS_NAME).write_bytes(huge_flat())
    elif case == "dim":
        wrong = VectorIndex.build(np.arange(600), np.hstack([_rows(600)] * 2), kind="exact")
        wrong.info.generation, wrong.info.dim = 1, DIM  # vectors.json says 16, the file holds 32
        wrong.save(folder)
    elif case == "count":
        VectorIndex.build(np.arange(599), _rows(599), kind="exact").save(folder)
        meta = json.loads((folder / FAISS_META).read_text())
        (folder / FAISS_META).write_text(json.dumps({**meta, "generation": 1, "count": 600}))
    elif case == "truncated":
        data = (folder / FAISS_NAME).read_bytes()
        (folder / FAISS_NAME).write_bytes(data[: len(data) // 3])
    else:
        meta = json.loads((folder / FAISS_META).read_text())
        (folder / FAISS_META).write_text(json.dumps({**meta, "k_factor": 10**12}))
    with caplog.at_level("WARNING", logger="vop.index"):
        vi = load_or_build(folder, store, DIM)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "rebuilding the vector index from the index's rows" in warnings[0], warnings
    assert vi.info.count == 600
    _, ids = vi.search(store.x[:5], 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    caplog.clear()
    with caplog.at_level("WARNING", logger="vop.index"):
        again = load_or_build(folder, store, DIM)  # the rebuilt files were saved and now pass
    assert not caplog.records and again.info.count == 600


RSS_SCRIPT = textwrap.dedent("""
    import resource, sys
    import faiss  # its own start-up is not the case's cost
    from vop.index.vectors import VectorIndex
    from vop.index.faiss_bytes import FaissFileError
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    for folder in sys.argv[1:]:
        before = peak()
        try:
            VectorIndex.load(folder, threads=1, dim=16, count=600)
            print("LOADED", folder)
        except FaissFileError as e:
            print("REFUSED", round(peak() - before, 1), str(e))
""")


def test_refusal_happens_before_faiss_allocates(tmp_path):
    """Each crafted file is refused while the loading process's peak resident size grows by less
    than 20 MiB (FAISS's own reader takes 1 GiB for the 109-byte file)."""
    good = _saved(tmp_path / "good", "exact")
    folders = []
    for name, data in [("huge", huge_flat()),
                       ("huge_dim", huge_flat(1 << 16)),
                       ("truncated", (good / FAISS_NAME).read_bytes()[:5000])]:
        folder = tmp_path / name
        folder.mkdir()
        for f in (FAISS_META, IDS_NAME):
            (folder / f).write_bytes((good / f).read_bytes())
        (folder / FAISS_NAME).write_bytes(data)
        folders.append(folder)
    # a pq file whose packed-code array claims 2^32 bytes
    pq = _saved(tmp_path / "pq", "pq")
    data = bytearray((pq / FAISS_NAME).read_bytes())
    # IxRF + header, IPfs + header, d/M/nbits, 256 centroids with their size, implem/bbs/qbs, ntotal2/M2
    size_at = 4 + 33 + 4 + 33 + 24 + 8 + 256 * 4 + 12 + 16
    assert struct.unpack_from("<Q", data, size_at)[0] == 608 * 4 // 2  # 19 blocks of 32 codes of 4 x 4 bits
    struct.pack_into("<Q", data, size_at, 1 << 32)
    (pq / FAISS_NAME).write_bytes(bytes(data))
    folders.append(pq)
    proc = subprocess.run([sys.executable, "-c", RSS_SCRIPT, *map(str, folders)], capture_output=True, text=True,
                          timeout=300, check=False)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == 4, proc.stderr[-2000:]
    for line, why in zip(lines, ("holds 268,435,456 items", "dimension is 65536, expected 16", "truncated",
                                 "pq packed codes holds 4,294,967,296 items")):
        verdict, growth, message = line.split(" ", 2)
        assert verdict == "REFUSED" and why in message, line
        assert float(growth) < 20, line


def test_vop_search_on_an_index_with_a_crafted_vectors_faiss(tmp_path):
    """The real command on a real index: the 109-byte file costs one warning line, the answer is
    the one the intact index gives, and the rebuilt file is saved (the next search is silent)."""
    import torch
    from conftest import color_video, write_video

    from vop.backbone.clip import build_clip
    from vop.backbone.loading import save_clip
    from vop.cli import main
    from vop.index.manifest import read_manifest

    torch.set_num_threads(1)
    backbone = save_clip(build_clip("tiny", seed=0), tmp_path / "tiny.safetensors")
    for i in range(3):
        write_video(tmp_path / "videos" / f"v{i}.mp4", color_video(num_frames=6, size=32, seed=i))
    index = tmp_path / "index"
    assert main(["index", str(tmp_path / "videos"), "--backbone", str(backbone), "--frames", "2",
                 "--out", str(index), "--quiet"]) == 0

    def search():
        return subprocess.run([sys.executable, "-m", "vop", "search", str(index), "a red square", "--json"],
                              capture_output=True, text=True, timeout=300, check=False)

    intact = search()
    assert intact.returncode == 0 and not intact.stderr.strip(), intact.stderr[-2000:]
    (index / FAISS_NAME).write_bytes(huge_flat(read_manifest(index).dim, 3))
    crafted = search()
    assert crafted.returncode == 0, crafted.stderr[-2000:]
    lines = crafted.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds 268,435,456 items" in lines[0] and "rebuilding" in lines[0], lines
    assert json.loads(crafted.stdout)["results"] == json.loads(intact.stdout)["results"]
    again = search()
    assert again.returncode == 0 and not again.stderr.strip(), again.stderr[-2000:]
