"""Datasets, loader and frame cache: skipping bad videos, worker-independent randomness, cache reads."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch

from vop.data.annotations import VideoRecord
from vop.data.cache import FrameCache, build_cache
from vop.data.dataset import VideoDataset, VideoTextDataset, make_loader
from vop.data.decode import DecodeError, read_frames
from vop.data.sampling import sample_indices


@pytest.fixture()
def records(make_video, real_data, tmp_path):
    """Three short written videos of different lengths around the real corrupted file."""
    corrupt = tmp_path / "corrupted.mp4"
    shutil.copy(real_data / "videos" / "decord" / "corrupted.mp4", corrupt)
    good = [make_video(f"v{i}.mp4", num_frames=n, size=48, seed=i) for i, n in enumerate((5, 16, 30))]
    recs = [VideoRecord(p.stem, p, [f"caption a {p.stem}", f"caption b {p.stem}"], "train") for p in good]
    return recs[:2] + [VideoRecord("corrupted", corrupt, ["broken"], "train")] + recs[2:]


def _all_batches(loader):
    return [{k: v for k, v in b.items() if k != "skipped"} for b in loader]


def test_skips_corrupt_video_and_yields_the_rest(records):
    ds = VideoTextDataset(records, frames=4, image_size=32, train=True, seed=0)
    log = io.StringIO()
    loader = make_loader(ds, batch_size=2, shuffle=False)
    loader.stream = log
    batches = list(loader)
    indices = torch.cat([b["video_index"] for b in batches]).tolist()
    assert indices == [0, 1, 3]
    assert batches[0]["video"].shape == (2, 4, 3, 32, 32) and batches[0]["tokens"].shape == (2, 77)
    assert all(torch.isfinite(b["video"]).all() for b in batches)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "corrupted" in lines[0] and "decoding failed after 28 frames" in lines[0]
    assert lines[1].startswith("skipped 1 of 4 videos")
    assert list(loader.skipped) == ["corrupted"]


def test_on_error_raise_stops(records):
    ds = VideoDataset(records, frames=4, image_size=32, on_error="raise")
    with pytest.raises(DecodeError, match="corrupted"):
        list(make_loader(ds, batch_size=4))


def test_missing_video_file_is_skipped_not_zero_filled(records):
    recs = [VideoRecord("gone", None, ["x"], "test"), records[0]]
    item = VideoDataset(recs, frames=4, image_size=32)[0]
    assert item["error"].endswith("video file not found") and "video" not in item


def test_items_are_reproducible_and_worker_independent(records):
    good = [r for r in records if r.video_id != "corrupted"]
    ds = VideoTextDataset(good, frames=4, image_size=32, train=True, seed=3)
    serial = _all_batches(make_loader(ds, batch_size=2, shuffle=True, seed=1))
    parallel = _all_batches(make_loader(ds, batch_size=2, shuffle=True, seed=1, num_workers=2))
    assert len(serial) == len(parallel) == 2
    for a, b in zip(serial, parallel):
        assert torch.equal(a["video"], b["video"]) and a["text"] == b["text"]
        assert torch.equal(a["video_index"], b["video_index"])
    first = ds[1]["video"]
    ds.set_epoch(1)
    assert not torch.equal(first, ds[1]["video"])  # a new epoch draws new frames/crops


def test_eval_items_are_deterministic(records):
    ds = VideoTextDataset(records[:2], frames=4, image_size=32, train=False)
    a, b = ds[1], ds[1]
    assert torch.equal(a["video"], b["video"]) and a["text"] == "caption a v1"


def test_cache_build_resume_and_read(records, tmp_path):
    cache_dir = tmp_path / "cache"
    summary = build_cache(records, cache_dir, frames=8, short_side=32, progress=False)
    assert (summary["decoded"], summary["failed"]) == (3, 1)
    cache = FrameCache(cache_dir)
    assert "corrupted" in cache.failed and not cache.has("corrupted")
    # cached frames are the segment middles of the video, resized like decode does
    v2 = records[3]
    expected = read_frames(v2.path, sample_indices(30, 8), short_side=32)
    assert np.array_equal(cache.load("v2"), expected)
    assert cache.load("v0").shape[0] == 5  # a 5-frame video keeps its 5 frames, no padding
    assert not list(cache_dir.rglob(".*tmp*"))  # atomic writes leave nothing behind
    stale = cache_dir / "videos" / ".v9.npy.tmp-999"  # what a killed run leaves
    stale.write_bytes(b"half")
    again = build_cache(records, cache_dir, frames=8, short_side=32, progress=False)
    assert (again["decoded"], again["skipped_done"]) == (0, 3) and not stale.exists()
    with pytest.raises(ValueError, match="frames=8, short_side=32"):
        build_cache(records, cache_dir, frames=16, short_side=32, progress=False)


def test_cache_with_worker_processes_matches_serial(records, tmp_path):
    serial = build_cache(records, tmp_path / "a", frames=6, short_side=32, progress=False)
    parallel = build_cache(records, tmp_path / "b", frames=6, short_side=32, progress=False, workers=2)
    assert {k: v for k, v in serial.items() if k != "cache"} == {k: v for k, v in parallel.items() if k != "cache"}
    a, b = FrameCache(tmp_path / "a"), FrameCache(tmp_path / "b")
    assert a.failed == b.failed
    for r in records[:2] + records[3:]:
        assert np.array_equal(a.load(r.video_id), b.load(r.video_id))
    with pytest.raises(DecodeError, match="corrupted"):
        build_cache(records, tmp_path / "c", frames=6, short_side=32, progress=False, on_error="raise")


def test_dataset_reads_cache_without_the_videos(records, tmp_path):
    cache_dir = tmp_path / "cache"
    build_cache(records, cache_dir, frames=8, short_side=32, progress=False)
    for r in records:
        r.path.unlink()  # from here on only the cache can supply pixels
    ds = VideoTextDataset(records, frames=4, image_size=32, train=True, seed=0, cache=cache_dir)
    loader = make_loader(ds, batch_size=4)
    loader.stream = io.StringIO()
    (batch,) = list(loader)
    assert batch["video"].shape == (3, 4, 3, 32, 32)
    assert batch["video_index"].tolist() == [0, 1, 3]
    assert "failed when cached" in loader.stream.getvalue()


def test_augment_off_keeps_random_frames_but_no_crop_or_flip(real_data):
    from vop.data.dataset import load_video
    from vop.data.decode import count_frames
    from vop.data.transforms import clip_preprocess

    path = real_data / "videos" / "mmaction2" / "test.avi"  # textured, so a crop or flip shows
    record = VideoRecord("test.avi", path, ["x"], "train")
    idx = sample_indices(count_frames(path), 4, train=True, rng=np.random.default_rng(7))
    plain = clip_preprocess(read_frames(path, idx, short_side=32), size=32, train=False)
    off = load_video(record, 4, 32, True, np.random.default_rng(7), augment=False)
    on = load_video(record, 4, 32, True, np.random.default_rng(7), augment=True)
    assert torch.equal(off, plain)
    assert not torch.allclose(on, plain, atol=1e-2)


def test_annotation_readers_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, vop.data.annotations as a; a.load_records; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
