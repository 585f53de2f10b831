"""Hostile or unlucky collections (issue 12): odd names, cut files, NaN, two runs, a full disk,
a corrupt database or manifest: every case is recorded or refused in one line, nothing is lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import color_video, write_video

from vop.backbone.clip import build_clip
from vop.backbone.loading import save_clip
from vop.cli import main
from vop.data.decode import probe
from vop.index.build import BAD_NAME, build_index, index_lock, read_report
from vop.index.encoder import VideoEncoder
from vop.index.manifest import read_manifest
from vop.index.search import Searcher
from vop.index.store import DB_NAME, IndexDatabaseError, IndexStore, VideoRow

FRAMES = 2


@pytest.fixture()
def backbone(tmp_path):
    torch.set_num_threads(1)
    return save_clip(build_clip("tiny", seed=0), tmp_path / "tiny.safetensors")


def _encoder(backbone) -> VideoEncoder:
    return VideoEncoder.from_clip(build_clip("tiny", seed=0), frames=FRAMES, backbone_source=str(backbone))


def _collection(root: Path, n: int = 3) -> Path:
    for i in range(n):
        write_video(root / f"v{i}.mp4", color_video(num_frames=6, size=32, seed=i))
    return root


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_non_utf8_name_is_an_error_row_and_the_run_goes_on(tmp_path, backbone):
    root = _collection(tmp_path / "videos", n=1)
    bad = os.fsencode(root) + b"/b\xff\xfe.mp4"  # not UTF-8; sorts before z.mp4
    with open(bad, "wb") as f:
        f.write((root / "v0.mp4").read_bytes())
    write_video(root / "z.mp4", color_video(num_frames=6, size=32, seed=5))
    out = tmp_path / "idx"
    for _ in range(2):  # the second run must not stumble on it either
        report = build_index(root, out, _encoder(backbone), progress=False)
        assert report.indexed == 2  # v0.mp4 and z.mp4: files after the odd name are indexed
        assert report.errors == [{"path": "b\\xff\\xfe.mp4", "error": BAD_NAME}]
    assert report.unchanged == 3


def _truncated_webm(path: Path) -> Path:
    full = write_video(path.with_name("full.webm"), color_video(num_frames=100, size=64, seed=1), codec="libvpx-vp9")
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.3)])
    return path


def _truncated_faststart_mp4(path: Path) -> Path:
    """An mp4 whose header (moov, written first) promises 100 frames; the file is cut inside mdat."""
    full = path.with_name("full-faststart.mp4")
    with av.open(str(full), mode="w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=10)
        s.height = s.width = 64
        s.pix_fmt = "yuv420p"
        for img in color_video(num_frames=100, size=64, seed=2):
            for pk in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    data = full.read_bytes()
    mdat = data.find(b"mdat")
    assert 0 < data.find(b"moov") < mdat
    path.write_bytes(data[: mdat + (len(data) - mdat) * 3 // 10])
    full.unlink()
    return path


def test_truncated_videos_are_recorded_and_never_sampled_past_the_end(tmp_path, backbone):
    root = _collection(tmp_path / "videos", n=1)
    _truncated_webm(root / "cut.webm")
    _truncated_faststart_mp4(root / "cut.mp4")
    (root / "full.webm").unlink()
    info = probe(root / "cut.webm")
    assert info.duration == pytest.approx(10.0) and info.warning == f"truncated: {info.num_frames} of ~100 frames"
    out = tmp_path / "idx"
    report = build_index(root, out, _encoder(backbone), progress=False)
    warnings = {w["path"]: w["warning"] for w in report.warnings}
    assert set(warnings) == {"cut.webm", "cut.mp4"} and report.indexed == 3
    assert warnings["cut.webm"] == info.warning  # frame count from the header's duration x fps
    assert read_report(out)["warnings"] == report.warnings  # visible in report.json
    with IndexStore(out / DB_NAME) as store:
        found = store.info(store.id_of("cut.mp4"))["num_frames"]
    assert 0 < found < 100 and warnings["cut.mp4"] == f"truncated: {found} of 100 frames"
    hits = Searcher(out).search_vectors(np.ones((1, 32), np.float32) / np.sqrt(32), k=3)[0]
    assert {h.path: h.warning for h in hits}["cut.webm"] == warnings["cut.webm"]  # and in the API


def test_non_finite_vectors_are_never_stored(tmp_path, backbone, monkeypatch):
    root = _collection(tmp_path / "videos", n=2)
    enc = _encoder(backbone)
    real = enc.model.encode_video
    calls = []

    def sometimes_nan(video):
        calls.append(1)
        out = real(video)
        return out * float("nan") if len(calls) == 1 else out

    monkeypatch.setattr(enc.model, "encode_video", sometimes_nan)
    report = build_index(root, tmp_path / "idx", enc, progress=False)
    assert report.indexed == 1
    assert report.errors == [{"path": "v0.mp4", "error": "the model gave a non-finite vector (NaN/Inf); not stored"}]
    with IndexStore(tmp_path / "idx" / DB_NAME) as store:
        with pytest.raises(ValueError, match="non-finite"):
            store.put(VideoRow("x.mp4", 1, 1, "ok", vector=np.full(32, np.inf, np.float32)))
        assert store.id_of("x.mp4") is None


def test_second_concurrent_run_exits_2(tmp_path, backbone, capsys):
    root = _collection(tmp_path / "videos", n=1)
    out = tmp_path / "idx"
    with index_lock(out):  # a first run holds the folder
        code = main(["index", str(root), "--backbone", str(backbone), "--frames", str(FRAMES),
                     "--out", str(out), "--quiet"])
        assert code == 2
        assert f"another vop index run (pid {os.getpid()})" in _one_line_error(capsys)
        assert not (out / DB_NAME).exists()
    assert main(["index", str(root), "--backbone", str(backbone), "--frames", str(FRAMES),
                 "--out", str(out), "--quiet"]) == 0


def test_disk_full_keeps_what_was_committed(tmp_path, backbone, monkeypatch, capsys):
    import pyarrow.parquet as pq

    root = _collection(tmp_path / "videos", n=6)
    out = tmp_path / "idx"
    real_init = IndexStore.__init__

    def full_disk(self, *a, **kw):  # SQLite's own "database or disk is full": the file may not grow
        real_init(self, *a, **kw)
        pages = self._con.execute("PRAGMA page_count").fetchone()[0]
        self._con.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(IndexStore, "__init__", full_disk)
    with pytest.raises(OSError, match=r"disk full while writing .*index.sqlite: every video committed"):
        build_index(root, out, _encoder(backbone), progress=False)
    monkeypatch.undo()
    shards = sorted((out / "embeddings").glob("part-*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in shards) == 6  # every encoded video is kept
    report = build_index(root, out, _encoder(backbone), progress=False)  # space freed: it completes
    assert report.indexed == 6 and report.unchanged == 6 and report.encoded == 0


def test_corrupt_database_is_one_line(tmp_path, backbone, capsys):
    root = _collection(tmp_path / "videos", n=1)
    out = tmp_path / "idx"
    build_index(root, out, _encoder(backbone), progress=False)
    for suffix in ("-wal", "-shm"):
        (out / (DB_NAME + suffix)).unlink(missing_ok=True)
    (out / DB_NAME).write_bytes(b"this is not SQLite" * 500)
    with pytest.raises(IndexDatabaseError, match=r"index.sqlite: not a readable index database"):
        IndexStore(out / DB_NAME)
    assert main(["search", str(out), "a dog"]) == 2
    assert "index.sqlite" in _one_line_error(capsys)
    assert main(["index", str(root), "--backbone", str(backbone), "--frames", str(FRAMES),
                 "--out", str(out), "--quiet"]) == 2
    assert "not a readable index database" in _one_line_error(capsys)


@pytest.mark.parametrize(
    "field,value,pattern",
    [
        ("frames", 1_000_000_000, r"frames is '1000000000'; expected an integer from 1 to 1024"),
        ("dim", -3, r"dim is '-3'"),
        ("root", 5, r"root must be a string"),
        ("shard", [3, 2], r"shard i is '3'"),
    ],
)
def test_manifest_fields_are_bounded(tmp_path, backbone, field, value, pattern, capsys):
    root = _collection(tmp_path / "videos", n=1)
    out = tmp_path / "idx"
    build_index(root, out, _encoder(backbone), progress=False)
    data = json.loads((out / "manifest.json").read_text())
    data[field] = value
    (out / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=pattern):
        read_manifest(out)
    assert main(["search", str(out), "a dog"]) == 2
    assert "manifest.json" in _one_line_error(capsys)
