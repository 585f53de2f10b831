"""vop index: real videos (the corrupt one reported), incremental, resumable after a kill, --shard i/n."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import color_video, write_video

from vop.backbone.clip import build_clip
from vop.index.build import build_index, read_report
from vop.index.discover import discover_videos, parse_shard, shard_of
from vop.index.encoder import VideoEncoder
from vop.index.from_shards import build_from_shards, check_complete
from vop.index.manifest import IndexMismatchError, read_manifest
from vop.index.search import Searcher
from vop.index.store import DB_NAME, IndexStore
from vop.index.vectors import VectorIndex

FRAMES = 4


def _encoder(seed: int = 0) -> VideoEncoder:
    return VideoEncoder.from_clip(build_clip("tiny", seed=seed), frames=FRAMES, backbone_source="tiny")


def _collection(root: Path, n: int = 6) -> Path:
    for i in range(n):
        write_video(root / f"sub{i % 2}" / f"clip{i}.mp4", color_video(num_frames=6 + i, size=32, seed=i))
    return root


def _shard_paths(index_dir: Path) -> list[str]:
    """Every row in the Parquet shards of an index (duplicates included)."""
    import pyarrow.parquet as pq

    parts = sorted((index_dir / "embeddings").glob("part-*.parquet"))
    return sorted(p for part in parts for p in pq.read_table(part, columns=["path"]).column("path").to_pylist())


def _rows(index_dir: Path) -> dict[str, tuple]:
    with IndexStore(index_dir / DB_NAME) as store:
        return {r.path: (r.status, None if r.vector is None else r.vector.tobytes()) for r in store.rows()}


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory, real_data):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("idx") / "index"
    report = build_index(real_data / "videos", out, _encoder(), progress=False)
    return out, report


def test_real_videos_indexed_and_corrupt_one_reported(shared_index, real_data):
    out, report = shared_index
    videos = discover_videos(real_data / "videos")
    assert len(videos) == 9 and all(not v.relpath.endswith(".json") for v in videos)
    assert report.discovered == 9 and report.indexed == 8
    assert [e["path"] for e in report.errors] == ["decord/corrupted.mp4"]
    assert "28 frames" in report.errors[0]["error"]
    assert read_report(out)["errors"] == report.errors  # listed in report.json on disk
    manifest = read_manifest(out)
    assert manifest.backbone_sha256 == build_clip("tiny", seed=0).weights_sha256
    assert (manifest.method, manifest.frames, manifest.dim, manifest.adapter_sha256) == (
        "zeroshot",
        FRAMES,
        32,
        None,
    )
    with IndexStore(out / DB_NAME) as store:
        ids, vecs = store.vectors()
        assert vecs.dtype == np.float16 and vecs.shape == (8, 32)
        np.testing.assert_allclose(np.linalg.norm(vecs.astype(np.float32), axis=1), 1.0, atol=2e-3)
        thumb = store.thumbnail(int(ids[0]))
        assert thumb[:2] == b"\xff\xd8"  # JPEG
        rotated = store.info(store.id_of("decord/video_90.mov"))
        assert (rotated["width"], rotated["height"]) == (320, 568)  # display orientation


def test_search_returns_ranked_paths(shared_index, real_data):
    out, _ = shared_index
    enc = _encoder()
    searcher = Searcher(out, enc)
    hits = searcher.search_text("a person is cleaning a swimming pool", k=5)
    assert len(hits) == 5
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all((real_data / "videos" / h.path).is_file() for h in hits)
    # the same ranking as brute force over the stored vectors
    ids, vecs = searcher.store.vectors()
    q = enc.encode_texts(["a person is cleaning a swimming pool"])[0]
    expected = ids[np.argsort(-(vecs.astype(np.float32) @ q))][:5]
    assert [h.id for h in hits] == expected.tolist()
    like = searcher.search_like(real_data / "videos" / "mmaction2" / "test.mp4", k=3)
    assert len(like) == 3 and all(h.path != "mmaction2/test.mp4" for h in like)
    assert searcher.search_like(searcher.store.id_of("mmaction2/test.mp4"), k=3) == like
    everything = searcher.search_like(real_data / "videos" / "mmaction2" / "test.mp4", k=20)
    assert len(everything) == 7  # every other indexed video, the query itself left out


def test_like_a_video_outside_the_collection_is_encoded(shared_index, tmp_path):
    out, _ = shared_index
    query = write_video(tmp_path / "query.mp4", color_video(num_frames=8, size=32, seed=5))
    searcher = Searcher(out)
    with pytest.raises(RuntimeError, match="no query encoder"):
        searcher.search_like(query, k=3)
    searcher.set_encoder(_encoder())
    hits = searcher.search_like(query, k=8)
    assert len(hits) == 8
    expected = searcher.search_vectors(_encoder().encode_file(query).vector[None], k=8)[0]
    assert hits == expected


def test_query_encoder_must_match_the_index(shared_index):
    out, _ = shared_index
    with pytest.raises(IndexMismatchError, match="backbone_sha256"):
        Searcher(out, _encoder(seed=1))


def test_reindex_adds_nothing(shared_index, real_data):
    out, _ = shared_index
    with IndexStore(out / DB_NAME) as store:
        generation = store.generation()
    before = _rows(out)
    report = build_index(real_data / "videos", out, _encoder(), progress=False)
    assert (report.encoded, report.unchanged, report.removed, report.failed) == (0, 9, 0, [])
    assert _rows(out) == before
    with IndexStore(out / DB_NAME) as store:
        assert store.generation() == generation


def test_other_backbone_into_same_index_refused(shared_index, real_data):
    out, _ = shared_index
    with pytest.raises(IndexMismatchError, match="backbone_sha256"):
        build_index(real_data / "videos", out, _encoder(seed=3), progress=False)


def test_incremental_new_changed_removed(tmp_path):
    root = _collection(tmp_path / "videos", n=4)
    out = tmp_path / "index"
    assert build_index(root, out, _encoder(), progress=False).encoded == 4
    write_video(root / "new.mkv", color_video(num_frames=5, size=32, seed=10))
    write_video(root / "sub0" / "clip0.mp4", color_video(num_frames=9, size=32, seed=11))  # changed
    (root / "sub1" / "clip1.mp4").unlink()
    report = build_index(root, out, _encoder(), progress=False)
    assert (report.encoded, report.unchanged, report.removed, report.indexed) == (2, 2, 1, 4)
    assert sorted(_rows(out)) == ["new.mkv", "sub0/clip0.mp4", "sub0/clip2.mp4", "sub1/clip3.mp4"]
    assert _shard_paths(out) == sorted(_rows(out))  # compacted: the replaced and the deleted rows are gone
    hits = Searcher(out).search_vectors(np.ones((1, 32), np.float32) / np.sqrt(32), k=10)[0]
    assert sorted(h.path for h in hits) == sorted(_rows(out))  # the FAISS file followed the store


def test_decode_workers_give_the_same_rows_in_the_same_order(tmp_path, real_data):
    """More decode threads change only the speed: the same vectors, thumbnails and error rows, and
    the rows reach the shard writer in the collection's order; a bad count is refused."""
    root = _collection(tmp_path / "videos", n=5)
    shutil.copy(real_data / "videos" / "decord" / "corrupted.mp4", root / "sub0" / "corrupted.mp4")
    import pyarrow.parquet as pq

    seen, order = {}, {}
    for workers in (1, 3):
        out = tmp_path / f"index-{workers}"
        report = build_index(root, out, _encoder(), progress=False, decode_workers=workers)
        assert report.encoded == 5 and [f["path"] for f in report.failed] == ["sub0/corrupted.mp4"]
        with IndexStore(out / DB_NAME) as store:
            seen[workers] = {r.path: (r.status, r.error, None if r.vector is None else r.vector.tobytes(), r.thumbnail)
                             for r in store.rows()}
        order[workers] = [p for part in sorted((out / "embeddings").glob("part-*.parquet"))
                          for p in pq.read_table(part, columns=["path"]).column("path").to_pylist()]
    assert seen[1] == seen[3]
    assert order[3] == order[1] and sorted(order[1]) == sorted(seen[1])
    with pytest.raises(ValueError, match="decode_workers"):
        build_index(root, tmp_path / "index-0", _encoder(), progress=False, decode_workers=0)


def test_prepare_then_encode_is_encode_decoded(real_data):
    """The decode worker's half (resize, normalise, thumbnail) and the model's half give what one call gives."""
    enc = _encoder()
    decoded = enc.decode(real_data / "videos" / "mmaction2" / "test.mp4")
    prepared = enc.prepare(decoded)
    assert prepared.video.shape == (FRAMES, 3, enc.image_size, enc.image_size) and prepared.video.dtype == torch.float32
    a, b = enc.encode_prepared(prepared), enc.encode_decoded(decoded)
    assert np.array_equal(a.vector, b.vector) and a.thumbnail == b.thumbnail and a.thumbnail[:2] == b"\xff\xd8"


class _Killed(Exception):
    pass


def test_resume_after_exception_yields_exactly_the_full_index(tmp_path):
    root = _collection(tmp_path / "videos")
    full = tmp_path / "full"
    build_index(root, full, _encoder(), progress=False)

    def die_after_3(n):
        if n == 3:
            raise _Killed

    out = tmp_path / "resumed"
    with pytest.raises(_Killed):  # one video per part: every finished video is on disk
        build_index(root, out, _encoder(), progress=False, after_each=die_after_3, part_rows=1)
    assert len(_shard_paths(out)) == 3 and not (out / DB_NAME).exists()
    report = build_index(root, out, _encoder(), progress=False)
    assert (report.encoded, report.unchanged) == (3, 3)
    assert _rows(out) == _rows(full)
    assert _shard_paths(out) == sorted(_rows(full))  # each video once in the shards
    assert len(Searcher(out)) == 6


def test_resume_after_sigkill_of_a_real_process(tmp_path):
    root = _collection(tmp_path / "videos")
    out = tmp_path / "index"
    script = textwrap.dedent(f"""
        import os, signal, torch
        torch.set_num_threads(1)
        from vop.backbone.clip import build_clip
        from vop.index.build import build_index
        from vop.index.encoder import VideoEncoder
        enc = VideoEncoder.from_clip(build_clip("tiny", seed=0), frames={FRAMES}, backbone_source="tiny")
        def kill(n):
            if n == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        build_index({str(root)!r}, {str(out)!r}, enc, progress=False, after_each=kill, part_rows=1)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        check=False,  # the return code is asserted below, with the output
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(_shard_paths(out)) == 2
    report = build_index(root, out, _encoder(), progress=False)
    assert (report.encoded, report.indexed) == (4, 6)
    full = tmp_path / "full"
    build_index(root, full, _encoder(), progress=False)
    assert _rows(out) == _rows(full)


def test_shard_runs_then_one_build_give_the_unsharded_index(tmp_path):
    from vop.index.shards import read_manifest_beside

    root = _collection(tmp_path / "videos")
    build_index(root, tmp_path / "single", _encoder(), progress=False)
    out = tmp_path / "sharded"
    owners = {v.relpath: shard_of(v.relpath, 2) for v in discover_videos(root)}
    assert set(owners.values()) == {0, 1}  # both shards get work with these names
    with pytest.raises(ValueError, match="incomplete"):
        build_index(root, out, _encoder(), shard=(0, 2), progress=False)
        check_complete(str(out / "embeddings"))
    r = build_index(root, out, _encoder(), shard=(1, 2), progress=False)
    assert r.discovered == sum(1 for s in owners.values() if s == 1)
    assert not (out / DB_NAME).exists()  # a shard run builds nothing
    check_complete(str(out / "embeddings"))
    manifest = read_manifest_beside(str(out / "embeddings"))
    report = build_from_shards(out / "embeddings", out, manifest)
    assert report.indexed == 6
    assert _rows(out) == _rows(tmp_path / "single")
    assert read_manifest(out).shard is None
    (root / "sub0" / "clip0.mp4").unlink()  # a file gone: re-run its shard, build again
    build_index(root, out, _encoder(), shard=(owners["sub0/clip0.mp4"], 2), progress=False)
    assert build_from_shards(out / "embeddings", out, manifest).indexed == 5
    assert _shard_paths(out) == sorted(_rows(out))


def test_parse_shard():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def _unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_kind_chosen_by_size_and_exact_is_exact():
    x = _unit_rows(3000, 16, 0)
    ids = np.arange(100, 3100)
    assert VectorIndex.build(ids, x, exact_max=1000).info.kind == "pq"
    exact = VectorIndex.build(ids, x)
    assert exact.info.kind == "exact"
    scores, found = exact.search(x[:20], 5)
    expected = np.argsort(-(x[:20] @ x.T), axis=1)[:, :5] + 100
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="kind must be one of"):
        VectorIndex.build(ids, x, kind="hnsw")


def test_pq_single_query_scan_kernel_matches_faiss_default(tmp_path):
    """The pq scan uses FAISS's single-query fast-scan kernel (PQ_SCAN_IMPLEM, faster than FAISS's
    own pick); it must find what the default kernel finds, also after save + load."""

    from vop.index.vectors import PQ_SCAN_IMPLEM

    x = _unit_rows(20000, 64, 0)
    ids = np.arange(7, 20007)
    (tmp_path / "idx").mkdir()
    VectorIndex.build(ids, x, kind="pq").save(tmp_path / "idx")
    pq = VectorIndex.load(tmp_path / "idx", threads=1)
    (scan,) = pq.scans()
    assert scan.implem == PQ_SCAN_IMPLEM
    for k_factor in (5, 50, 1000):
        pq.set_params(k_factor=k_factor)
        ours = pq.search(x[:50], 10)
        scan.implem = 0  # FAISS chooses
        default = pq.search(x[:50], 10)
        scan.implem = PQ_SCAN_IMPLEM
        np.testing.assert_array_equal(ours[1], default[1])
        np.testing.assert_allclose(ours[0], default[0])
        assert (ours[1][:, 0] == ids[:50]).all()


def test_pq_search_shards_are_exact_cuts_of_one_index(tmp_path):
    """A pq index searched by 3 threads is 3 byte ranges of the one index: saved, it is the same
    file; exhaustive, it finds the same as 1 thread; at the default it keeps the recall."""
    x = _unit_rows(20000, 64, 0)  # 625 fast-scan blocks of 32: shards of 208, 208, 209 blocks
    ids = np.arange(5, 20005)
    one = VectorIndex.build(ids, x, kind="pq", threads=1)
    three = VectorIndex.build(ids, x, kind="pq", threads=3)
    assert (one.shards, three.shards) == (1, 3)
    assert [s.ntotal for s in three.scans()] == [208 * 32, 208 * 32, 20000 - 416 * 32]
    for name, vi in (("one", one), ("three", three)):
        (tmp_path / name).mkdir()
        vi.save(tmp_path / name)
    assert (tmp_path / "one" / "vectors.faiss").read_bytes() == (tmp_path / "three" / "vectors.faiss").read_bytes()
    reloaded = VectorIndex.load(tmp_path / "three", threads=2)
    assert reloaded.shards == 2 and [s.ntotal for s in reloaded.scans()] == [312 * 32, 20000 - 312 * 32]

    queries = _unit_rows(200, 64, 1)
    truth = np.argsort(-(queries @ x.T), axis=1)[:, :10] + 5
    for vi in (one, three, reloaded):
        vi.set_params(k_factor=2000)  # every vector re-ranked: only fp16 rounding remains
        scores, found = vi.search(queries, 10)
        assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]) >= 0.99
        np.testing.assert_allclose(scores, np.sort(-(queries @ x.T), axis=1)[:, :10] * -1, atol=2e-3)

    def recall(vi):
        vi.set_params(k_factor=20)
        found = vi.search(queries, 10)[1]
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])

    assert abs(recall(one) - recall(three)) <= 0.03 and recall(three) > 0.5


def test_huge_pages_change_nothing_but_memory_backing():
    from vop.index.vectors import ask_huge_pages

    x = _unit_rows(20000, 256, 0)  # fp16 rows: 10 MB, several 2 MiB pages
    plain = VectorIndex.build(np.arange(20000), x, kind="pq", threads=2)
    huge = VectorIndex.build(np.arange(20000), x, kind="pq", threads=2, huge_pages=True)
    queries = _unit_rows(20, 256, 1)
    for a, b in zip(plain.search(queries, 10), huge.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    buffer = np.ones(8 << 20, dtype=np.uint8)
    assert isinstance(ask_huge_pages(buffer), bool) and int(buffer.sum()) == 8 << 20
    assert ask_huge_pages(np.ones(1024, dtype=np.uint8)) is False  # smaller than two huge pages


def test_search_threads_setting(monkeypatch):
    from vop.index.vectors import default_search_threads

    monkeypatch.setenv("VOP_SEARCH_THREADS", "3")
    assert default_search_threads() == 3
    monkeypatch.setenv("VOP_SEARCH_THREADS", "many")
    with pytest.raises(ValueError, match="VOP_SEARCH_THREADS"):
        default_search_threads()
    monkeypatch.delenv("VOP_SEARCH_THREADS")
    assert 1 <= default_search_threads() <= 4
    x = _unit_rows(3000, 16, 0)  # too small to be worth a second thread
    assert VectorIndex.build(np.arange(3000), x, kind="pq", threads=4).shards == 1


def test_load_or_build_splits_only_when_asked(tmp_path, monkeypatch):
    """The indexer (default) and `vop search` keep one piece; a service gets the default threads."""
    from vop.index.vectors import load_or_build

    class Rows:  # what load_or_build reads from an IndexStore
        def __init__(self, x):
            self.x = x

        def generation(self):
            return 1

        def ok_ids(self):
            return np.arange(len(self.x))

        def count(self, status=None):
            return len(self.x)

        def vectors_of(self, ids):
            return self.x[ids]

        def vector_chunks(self, chunk):
            for i in range(0, len(self.x), chunk):
                yield np.arange(i, min(i + chunk, len(self.x))), self.x[i : i + chunk]

    monkeypatch.setenv("VOP_SEARCH_THREADS", "2")
    store = Rows(_unit_rows(10000, 16, 0))
    assert load_or_build(tmp_path, store, 16, kind="pq").shards == 1  # builds and saves
    assert load_or_build(tmp_path, store, 16).shards == 1  # loads the saved one
    assert load_or_build(tmp_path, store, 16, threads=None).shards == 2
    assert load_or_build(tmp_path, store, 16, threads=1).shards == 1


@pytest.mark.parametrize("kind,knob", [("ivf", {"nprobe": 10**6}), ("pq", {"k_factor": 3000})])
def test_approximate_kinds_equal_exact_when_exhaustive(kind, knob):
    x = _unit_rows(3000, 16, 0)
    ids = np.arange(100, 3100)
    approx = VectorIndex.build(ids, x, kind=kind)
    approx.set_params(**knob)  # every cell / every candidate: only fp16 rounding remains
    s_ap, i_ap = approx.search(x[:20], 5)
    s_ex, i_ex = VectorIndex.build(ids, x, kind="exact").search(x[:20], 5)
    np.testing.assert_allclose(s_ap, s_ex, atol=2e-3)
    assert (i_ap[:, 0] == ids[:20]).all()
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(i_ap, i_ex)]) >= 0.95


def test_vector_index_kind_is_kept_across_rebuilds(tmp_path, monkeypatch):
    from vop.index import vectors

    monkeypatch.setattr(vectors, "MIN_TRAIN", 1)  # let a 3-video collection train an IVF
    root = _collection(tmp_path / "videos", n=3)
    out = tmp_path / "index"
    assert (
        build_index(root, out, _encoder(), progress=False, vector_index="ivf").vector_index["kind"] == "ivf"
    )
    write_video(root / "more.mp4", color_video(num_frames=5, size=32, seed=20))
    report = build_index(root, out, _encoder(), progress=False)  # no kind given: keep ivf
    assert report.vector_index["kind"] == "ivf" and report.vector_index["count"] == 4
    assert (
        build_index(root, out, _encoder(), progress=False, vector_index="auto").vector_index["kind"]
        == "exact"
    )
    monkeypatch.setattr(vectors, "MIN_TRAIN", 256)
    assert (
        build_index(root, out, _encoder(), progress=False, vector_index="pq").vector_index["kind"] == "exact"
    )


def test_links_out_of_the_root_are_not_indexed_nor_served(tmp_path):
    root = _collection(tmp_path / "videos", n=2)
    secret = tmp_path / "secret.mp4"
    shutil.copy(root / "sub0" / "clip0.mp4", secret)
    (root / "link.mp4").symlink_to(secret)
    (root / "inside.mp4").symlink_to(root / "sub1" / "clip1.mp4")
    assert [v.relpath for v in discover_videos(root)] == ["inside.mp4", "sub0/clip0.mp4", "sub1/clip1.mp4"]
    shutil.copy(secret, root / "swapped.mp4")
    out = tmp_path / "index"
    build_index(root, out, _encoder(), progress=False)
    (root / "swapped.mp4").unlink()
    (root / "swapped.mp4").symlink_to(secret)  # swapped for a link after indexing
    searcher = Searcher(out)
    swapped = searcher.store.id_of("swapped.mp4")
    assert swapped is not None and searcher.file_of(swapped) is None  # resolves outside the root
    assert searcher.file_of(searcher.store.id_of("inside.mp4")) == (root / "sub1" / "clip1.mp4").resolve()
    ok_id = searcher.store.id_of("sub0/clip0.mp4")
    assert searcher.file_of(ok_id) == (root / "sub0" / "clip0.mp4").resolve()
    assert searcher.file_of(10**6) is None


def test_an_index_from_before_shards_is_migrated_not_reencoded(tmp_path):
    root = _collection(tmp_path / "videos", n=3)
    out = tmp_path / "index"
    build_index(root, out, _encoder(), progress=False)
    before = _rows(out)
    shutil.rmtree(out / "embeddings")  # what an index written by an older vop looks like
    report = build_index(root, out, _encoder(), progress=False)
    assert (report.encoded, report.unchanged) == (0, 3)
    assert _rows(out) == before and _shard_paths(out) == sorted(before)


def test_retry_failed_tries_error_rows_again_and_keeps_one_row_each(tmp_path):
    root = _collection(tmp_path / "videos", n=2)
    (root / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "index"
    first = build_index(root, out, _encoder(), progress=False)
    assert [f["path"] for f in first.failed] == ["broken.mp4"]
    assert build_index(root, out, _encoder(), progress=False).failed == []  # not retried by default
    again = build_index(root, out, _encoder(), progress=False, retry_failed=True)
    assert [f["path"] for f in again.failed] == ["broken.mp4"] and again.unchanged == 2
    assert _shard_paths(out) == ["broken.mp4", "sub0/clip0.mp4", "sub1/clip1.mp4"]  # the retried row replaced
    assert _rows(out)["broken.mp4"][0] == "error"
