"""Parquet embedding shards: written by every `vop index`, built from by one builder (also for
shards a plain pyarrow script wrote), malformed ones refused in one line, `vop export` round trip,
fsspec URIs, and a LanceDB table made from the export answering like `vop search`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import color_video, write_video

from vop.backbone.clip import build_clip
from vop.backbone.loading import save_clip
from vop.cli import main
from vop.index.manifest import read_manifest
from vop.index.store import DB_NAME, IndexStore

FRAMES = 4
DIM = 32  # the tiny CLIP's embedding size


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A saved tiny backbone, 5 videos (one undecodable) and their index built by `vop index`."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("shards")
    backbone = save_clip(build_clip("tiny", seed=0), tmp / "tiny.safetensors")
    videos = tmp / "videos"
    for i in range(4):
        write_video(videos / f"d{i % 2}" / f"v{i}.mp4", color_video(num_frames=6 + i, size=32, seed=i))
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    index = tmp / "index"
    assert main(["index", str(videos), "--backbone", str(backbone), "--frames", str(FRAMES), "--out", str(index),
                 "--quiet", "--threads", "1"]) == 0
    return backbone, videos, index


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _stored(index: Path) -> dict:
    with IndexStore(index / DB_NAME) as store:
        return {r.path: (r.status, r.error, r.size, r.mtime_ns, r.num_frames, r.thumbnail,
                         None if r.vector is None else r.vector.tobytes()) for r in store.rows()}


def test_vop_index_writes_the_documented_schema(indexed):
    _, _, index = indexed
    parts = sorted((index / "embeddings").glob("part-*.parquet"))
    table = pa.concat_tables(pq.read_table(p) for p in parts)
    assert table.schema.field("vector").type == pa.list_(pa.float32(), DIM)
    assert {"path", "size", "mtime_ns", "status", "error", "warning", "num_frames", "duration", "width",
            "height", "file_id", "thumbnail"} <= set(table.schema.names)
    rows = {r["path"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["broken.mp4", "d0/v0.mp4", "d0/v2.mp4", "d1/v1.mp4", "d1/v3.mp4"]
    assert rows["broken.mp4"]["status"] == "error" and rows["broken.mp4"]["vector"] is None
    assert rows["broken.mp4"]["error"]
    ok = rows["d0/v0.mp4"]
    assert ok["status"] == "ok" and ok["thumbnail"][:2] == b"\xff\xd8" and ok["num_frames"] == 6
    assert abs(np.linalg.norm(ok["vector"]) - 1) < 1e-5
    from vop.index.shards import read_manifest_beside

    assert read_manifest_beside(str(index / "embeddings")).model_key == read_manifest(index).model_key
    # the SQLite rows are the shard rows (vectors rounded to fp16, as the index stores them)
    stored = _stored(index)
    for path, row in rows.items():
        vec = None if row["vector"] is None else np.asarray(row["vector"], np.float32).astype(np.float16).tobytes()
        assert stored[path][0] == row["status"] and stored[path][6] == vec and stored[path][2] == row["size"]


def _foreign_shards(folder: Path, vectors: np.ndarray, paths: list[str], **changes) -> Path:
    """Shards as a user's own job would write them: plain pyarrow, float32 lists, no manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = {
        "path": paths,
        "size": [100 + i for i in range(len(paths))],
        "mtime_ns": [10**18 + i for i in range(len(paths))],
        "status": ["ok"] * len(paths),
        "vector": [v.tolist() for v in vectors],
    }
    columns.update(changes)
    columns = {k: v for k, v in columns.items() if v is not None}
    pq.write_table(pa.table(columns), folder / "part-00000.parquet")
    return folder


def _unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_from_shards_written_by_a_plain_pyarrow_script(indexed, tmp_path, capsys):
    backbone, videos, _ = indexed
    vectors = _unit(40, 0)
    paths = [f"clip{i:02d}.mp4" for i in range(40)]
    shards = _foreign_shards(tmp_path / "theirs", vectors * 2, paths)  # not unit length: normalised
    out = tmp_path / "built"
    code = main(["index", str(videos), "--from-shards", str(shards), "--backbone", str(backbone),
                 "--frames", str(FRAMES), "--out", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["indexed"] == 40 and report["vector_index"]["kind"] == "exact"
    assert read_manifest(out).root == str(videos.resolve())
    code = main(["search", str(out), "a red square", "-k", "5", "--json"])
    hits = json.loads(capsys.readouterr().out)["results"]
    assert code == 0 and len(hits) == 5
    from vop.index.encoder import VideoEncoder

    q = VideoEncoder.from_clip(build_clip("tiny", seed=0), frames=FRAMES).encode_texts(["a red square"])[0]
    expected = [paths[i] for i in np.argsort(-(vectors.astype(np.float16).astype(np.float32) @ q))[:5]]
    assert [h["path"] for h in hits] == expected


@pytest.mark.parametrize(
    "change,message",
    [
        ({"vector": [[0.1] * DIM, [0.1] * (DIM - 1), [0.1] * DIM]}, r"row 'c1.mp4' has a vector of length 31, expected 32"),
        ({"vector": [[0.5] * DIM, [float("nan")] * DIM, [0.5] * DIM]}, r"row 'c1.mp4' has a non-finite vector"),
        ({"status": None}, r"missing column status"),
        ({"status": ["ok", "fine", "ok"]}, r"status must be 'ok' or 'error', found 'fine'"),
    ],
)
def test_malformed_shard_is_one_line_and_nothing_is_built(indexed, tmp_path, capsys, change, message):
    backbone, videos, _ = indexed
    paths = ["c0.mp4", "c1.mp4", "c2.mp4"]
    good = _foreign_shards(tmp_path / "theirs", _unit(3, 1), ["a.mp4", "b.mp4", "z.mp4"])
    pq.write_table(pq.read_table(good / "part-00000.parquet"), good / "part-00001.parquet")  # a good part first
    (good / "part-00000.parquet").unlink()
    bad = dict(zip(["vector"], [None]))
    bad = {"vector": [v.tolist() for v in _unit(3, 2)], **change}
    table = {"path": paths, "size": [1, 2, 3], "mtime_ns": [1, 2, 3], "status": ["ok"] * 3, **bad}
    pq.write_table(pa.table({k: v for k, v in table.items() if v is not None}), good / "part-00002.parquet")
    out = tmp_path / "built"
    code = main(["index", str(videos), "--from-shards", str(good), "--backbone", str(backbone),
                 "--frames", str(FRAMES), "--out", str(out)])
    err = _one_line(capsys)
    assert code == 2 and "part-00002.parquet" in err
    import re

    assert re.search(message, err), err
    assert not (out / DB_NAME).exists()  # nothing half-built


def test_export_round_trip_through_file_uris(indexed, tmp_path, capsys):
    _, _, index = indexed
    dest = tmp_path / "export"
    assert main(["export", str(index), f"file://{dest}", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 5 and summary["indexed"] == 4
    table = pq.read_table(dest)
    assert table.schema.field("vector").type == pa.list_(pa.float16(), DIM)
    assert main(["export", str(index), str(dest)]) == 2  # never into a folder that holds Parquet already
    assert "already holds Parquet files" in _one_line(capsys)
    copy = tmp_path / "copy"
    assert main(["index", "--from-shards", f"file://{dest}", "--out", str(copy), "--quiet"]) == 0
    capsys.readouterr()
    assert _stored(copy) == _stored(index)  # every row, error rows and thumbnails included
    assert read_manifest(copy).model_key == read_manifest(index).model_key


def test_videos_by_uri_and_from_an_fsspec_filesystem(indexed, tmp_path, capsys):
    """file:// is the local fast path; memory:// goes through fsspec (listing, fetching to decode),
    the path an s3:// or gs:// collection takes."""
    import fsspec

    backbone, videos, index = indexed
    by_uri = tmp_path / "by-uri"
    assert main(["index", f"file://{videos}", "--backbone", str(backbone), "--frames", str(FRAMES),
                 "--out", str(by_uri), "--quiet", "--threads", "1"]) == 0
    assert _stored(by_uri) == _stored(index)
    mem = fsspec.filesystem("memory")
    for f in sorted(videos.rglob("*.mp4")):
        mem.pipe(f"/collection/{f.relative_to(videos).as_posix()}", f.read_bytes())
    remote = tmp_path / "remote"
    assert main(["index", "memory://collection", "--backbone", str(backbone), "--frames", str(FRAMES),
                 "--out", str(remote), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    here, there = _stored(index), _stored(remote)
    assert sorted(here) == sorted(there)
    for path in here:  # same status and vector; size/mtime/file_id are the remote file system's
        assert here[path][0] == there[path][0] and here[path][6] == there[path][6], path
    assert read_manifest(remote).root == "memory://collection"
    assert main(["index", "nosuchscheme://x", "--backbone", str(backbone), "--out", str(tmp_path / "n"),
                 "--quiet"]) == 2
    assert "install the fsspec backend" in _one_line(capsys)


def test_lancedb_table_from_the_export_gives_the_same_top10(indexed, tmp_path, capsys):
    import lancedb

    backbone, videos, _index = indexed
    vectors = _unit(300, 3)  # enough rows that a top-10 means something
    shards = _foreign_shards(tmp_path / "theirs", vectors, [f"c{i:03d}.mp4" for i in range(300)])
    exact = tmp_path / "exact"
    assert main(["index", str(videos), "--from-shards", str(shards), "--backbone", str(backbone), "--frames",
                 str(FRAMES), "--out", str(exact), "--vector-index", "exact", "--quiet"]) == 0
    assert main(["export", str(exact), str(tmp_path / "export"), "--json"]) == 0
    capsys.readouterr()
    table = pq.read_table(tmp_path / "export", columns=["path", "status", "vector"])
    table = table.filter(pa.compute.equal(table["status"], "ok"))
    table = table.set_column(2, "vector", table["vector"].cast(pa.list_(pa.float32(), DIM)))
    db = lancedb.connect(tmp_path / "lance")
    lance = db.create_table("videos", data=table)
    for query in ("a dog catches a frisbee", "a red square moves left"):
        assert main(["search", str(exact), query, "-k", "10", "--json"]) == 0
        ours = [h["path"] for h in json.loads(capsys.readouterr().out)["results"]]
        from vop.index.encoder import VideoEncoder

        q = VideoEncoder.from_clip(build_clip("tiny", seed=0), frames=FRAMES).encode_texts([query])[0]
        theirs = lance.search(q.tolist()).metric("dot").limit(10).to_list()
        assert [r["path"] for r in theirs] == ours


def test_chunked_build_under_a_memory_budget(tmp_path, indexed, capsys):
    """The builder's FAISS index, trained on a sample and filled in small chunks, is the index built
    from all vectors at once; a budget the index cannot fit in is one line naming the size."""
    from vop.index.vectors import VectorIndex, build_from_store, plan_chunks

    backbone, videos, _ = indexed
    vectors = _unit(3000, 4)
    shards = _foreign_shards(tmp_path / "theirs", vectors, [f"c{i:04d}.mp4" for i in range(3000)])
    out = tmp_path / "built"
    assert main(["index", str(videos), "--from-shards", str(shards), "--backbone", str(backbone), "--frames",
                 str(FRAMES), "--out", str(out), "--vector-index", "pq", "--quiet"]) == 0
    with IndexStore(out / DB_NAME) as store:
        ids, stored = store.vectors()
        chunked = VectorIndex.build_streaming(ids, DIM, lambda at: stored[at], store.vector_chunks, kind="pq",
                                              chunk=128)
        whole = VectorIndex.build(ids, stored, kind="pq")
        from_store = build_from_store(store, DIM, kind="pq")
    queries = _unit(20, 5)
    for other in (chunked, from_store):
        for a, b in zip(whole.search(queries, 10), other.search(queries, 10)):
            np.testing.assert_array_equal(a, b)
    assert plan_chunks(10**6, 512, "pq", 4 << 30) >= 1024
    code = main(["index", str(videos), "--from-shards", str(shards), "--backbone", str(backbone), "--frames",
                 str(FRAMES), "--out", str(tmp_path / "small"), "--memory-budget", "64M"])
    assert code == 2 and "raise --memory-budget" in _one_line(capsys)
    assert not (tmp_path / "small" / DB_NAME).exists()  # refused before anything was written
    assert main(["index", "--from-shards", str(shards), "--out", str(tmp_path / "x"), "--memory-budget", "lots"]) == 2
    assert "--memory-budget must look like 4G" in _one_line(capsys)


def test_export_and_from_shards_through_an_fsspec_file_system(indexed, tmp_path, capsys):
    """A non-local URI (fsspec's in-memory file system, the code path of s3:// and gs://): parts
    written and renamed through fsspec, then read back into an index."""
    import fsspec

    _, _, index = indexed
    assert main(["export", str(index), "memory://exports/videos"]) == 0
    capsys.readouterr()
    names = sorted(p.rsplit("/", 1)[-1] for p in fsspec.filesystem("memory").ls("/exports/videos", detail=False))
    assert names[0] == "_manifest.json" and names[1].startswith("part-") and len(names) == 2
    copy = tmp_path / "copy"
    assert main(["index", "--from-shards", "memory://exports/videos", "--out", str(copy), "--quiet"]) == 0
    assert _stored(copy) == _stored(index)


def test_from_shards_of_nothing_is_one_line_and_of_an_empty_collection_an_empty_index(tmp_path, indexed, capsys):
    backbone, _, _ = indexed
    assert main(["index", "--from-shards", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a"), "--quiet"]) == 2
    assert "no Parquet shards (*.parquet) and no _manifest.json" in _one_line(capsys)
    (tmp_path / "empty").mkdir()
    assert main(["index", str(tmp_path / "empty"), "--backbone", str(backbone), "--frames", str(FRAMES),
                 "--out", str(tmp_path / "e"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["index", "--from-shards", str(tmp_path / "e" / "embeddings"), "--out", str(tmp_path / "e2"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["indexed"] == 0
