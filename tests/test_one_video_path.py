"""One video-to-tensor path: ``vop eval`` and ``vop index`` give the same vector for the same video,
``vop index --cache`` reads a ``vop prepare`` cache, and training and evaluation share one loader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_video

from vop.backbone.clip import build_clip
from vop.backbone.loading import save_clip
from vop.cli import main
from vop.data.annotations import VideoRecord
from vop.data.cache import FrameCache, build_cache
from vop.eval.retrieval import encode_videos
from vop.index.build import build_index
from vop.index.encoder import THUMB_SIZE, VideoEncoder
from vop.index.store import DB_NAME, IndexStore

FRAMES = 4


def textured(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """Frames with detail at every scale, so any change of decode size or resize shows up."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(num_frames, height // 8, width // 8, 3), dtype=np.uint8)
    frames = np.repeat(np.repeat(small, 8, axis=1), 8, axis=2)  # blocks survive the codec
    return frames


@pytest.fixture()
def videos(tmp_path) -> Path:
    """Three videos well above the tiny backbone's 32 px (the case where index and eval used to differ)."""
    root = tmp_path / "videos"
    for i in range(3):
        write_video(root / f"v{i}.mp4", textured(10 + i, 240, 320, seed=i))
    return root


def _records(root: Path) -> list[VideoRecord]:
    return [VideoRecord(p.stem, p, [f"video {p.stem}"], "test") for p in sorted(root.glob("*.mp4"))]


def _stored(index: Path) -> dict[str, np.ndarray]:
    with IndexStore(index / DB_NAME) as store:
        return {Path(r.path).stem: r.vector for r in store.rows() if r.vector is not None}


def test_eval_and_index_give_the_same_vector_bitwise(videos, tmp_path):
    torch.set_num_threads(1)
    encoder = VideoEncoder.from_clip(build_clip("tiny", seed=0), frames=FRAMES)
    records = _records(videos)
    for record in records:  # batch size 1: the model sees exactly what the index's encoder feeds it
        evaluated, kept = encode_videos(encoder.model, [record], 32, 1, torch.device("cpu"), progress=False)
        assert kept == [0]
        indexed = encoder.encode_file(record.path).vector
        assert evaluated.dtype == torch.float32 and indexed.dtype == np.float32
        assert np.array_equal(evaluated[0].numpy(), indexed), record.video_id
    # and through the whole `vop index` build: the stored (fp16) vectors are the eval vectors, rounded
    build_index(videos, tmp_path / "index", encoder, progress=False)
    stored = _stored(tmp_path / "index")
    evaluated, kept = encode_videos(encoder.model, records, 32, 1, torch.device("cpu"), progress=False)
    for i, record in enumerate(records):
        assert np.array_equal(stored[record.video_id], evaluated[i].numpy().astype(np.float16))


def test_small_backbone_thumbnails_stay_thumbnail_sized(videos):
    from io import BytesIO

    from PIL import Image

    encoder = VideoEncoder.from_clip(build_clip("tiny", seed=0), frames=FRAMES)
    encoded = encoder.encode_file(videos / "v0.mp4")
    assert max(Image.open(BytesIO(encoded.thumbnail)).size) == THUMB_SIZE  # not the 32 px model frame


def test_index_reads_a_prepare_cache_and_matches_eval_from_it(videos, tmp_path, capsys):
    torch.set_num_threads(1)
    backbone = save_clip(build_clip("tiny", seed=0), tmp_path / "tiny.safetensors")
    records = _records(videos)
    cache_dir = tmp_path / "cache"
    build_cache(records, cache_dir, frames=8, short_side=32, progress=False)
    # one video edited after `vop prepare`: its cached frames are stale, so it is decoded again
    edited = videos / "v2.mp4"
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))

    out = tmp_path / "index"
    code = main(["index", str(videos), "--backbone", str(backbone), "--frames", str(FRAMES), "--out", str(out),
                 "--cache", str(cache_dir), "--quiet", "--threads", "1"])
    assert code == 0
    assert "2 of the encoded from the frame cache" in capsys.readouterr().out

    encoder = VideoEncoder.from_clip(build_clip("tiny", seed=0), frames=FRAMES)
    from_cache, _ = encode_videos(encoder.model, records[:2], 32, 1, torch.device("cpu"),
                                  cache=FrameCache(cache_dir), progress=False)
    from_file, _ = encode_videos(encoder.model, records[2:], 32, 1, torch.device("cpu"), progress=False)
    stored = _stored(out)
    assert np.array_equal(stored["v0"], from_cache[0].numpy().astype(np.float16))
    assert np.array_equal(stored["v1"], from_cache[1].numpy().astype(np.float16))
    assert np.array_equal(stored["v2"], from_file[0].numpy().astype(np.float16))
    # the cached frames are sampled differently from the file's (8 cached of 10, not 10): not the same vector
    direct, _ = encode_videos(encoder.model, records[:1], 32, 1, torch.device("cpu"), progress=False)
    assert not np.array_equal(stored["v0"], direct[0].numpy().astype(np.float16))


def test_old_cache_gains_file_records_by_preparing_again(videos, tmp_path):
    import json

    records = _records(videos)
    cache_dir = tmp_path / "cache"
    build_cache(records, cache_dir, frames=8, short_side=32, progress=False)
    contents = json.loads((cache_dir / "videos.json").read_text())
    for entry in contents["videos"].values():  # as written before caches recorded their files
        del entry["source"]
    (cache_dir / "videos.json").write_text(json.dumps(contents))
    assert FrameCache(cache_dir).id_for_file(videos / "v0.mp4") is None
    summary = build_cache(records, cache_dir, frames=8, short_side=32, progress=False)
    assert summary["decoded"] == 0 and summary["skipped_done"] == 3
    assert FrameCache(cache_dir).id_for_file(videos / "v0.mp4") == "v0"


def test_cache_built_under_the_old_list_name_is_read_and_moved(videos, tmp_path):
    """Caches written before the rename keep their list in manifest.json (the index's file name)."""
    import json

    records = _records(videos)
    cache_dir = tmp_path / "cache"
    build_cache(records[:2], cache_dir, frames=8, short_side=32, progress=False)
    (cache_dir / "videos.json").rename(cache_dir / "manifest.json")  # the layout of an older cache
    old = FrameCache(cache_dir)
    assert old.id_for_file(videos / "v1.mp4") == "v1" and old.failed == {}
    summary = build_cache(records, cache_dir, frames=8, short_side=32, progress=False)
    assert summary["skipped_done"] == 2 and summary["decoded"] == 1 and summary["cached_total"] == 3
    assert not (cache_dir / "manifest.json").exists()
    assert set(json.loads((cache_dir / "videos.json").read_text())["videos"]) == {"v0", "v1", "v2"}
    assert FrameCache(cache_dir).id_for_file(videos / "v2.mp4") == "v2"


def test_training_and_evaluation_share_the_loader_factory(tiny_retrieval_project, monkeypatch):
    """Both build their loader with vop.data.dataset.make_loader; an undecodable video is reported once."""
    from test_train_e2e import write_recipe

    from vop.data import dataset

    made = []
    real = dataset.make_loader

    def counting(ds, *args, **kwargs):
        made.append(type(ds).__name__)
        return real(ds, *args, **kwargs)

    monkeypatch.setattr(dataset, "make_loader", counting)
    root = tiny_retrieval_project
    (root / "videos" / "v0.mp4").write_bytes(b"not a video")  # a training video
    run_dir = root / "run"
    recipe = write_recipe(root)
    assert main(["train", str(recipe), "--out", str(run_dir), "--no-progress", "--set", "optim.epochs=2"]) == 0
    assert made[0] == "VideoTextDataset" and set(made[1:]) == {"VideoDataset"} and len(made) >= 2
    log = (run_dir / "train.log").read_text()
    assert log.count("skipping undecodable video 'v0.mp4'") == 1  # once per run, not once per epoch
