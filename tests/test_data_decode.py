"""Decoding on every real video in tests/data/videos, plus edge cases on written videos."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from vop.data.decode import DecodeError, count_frames, probe, read_all_frames, read_frames

# file -> (decodable frames, display (H, W)); from tests/data/README.md
VIDEOS = {
    "decord/flipping_a_pancake.mkv": (310, (240, 426)),
    "decord/video_0.mov": (3, (320, 568)),
    "decord/video_90.mov": (3, (568, 320)),
    "decord/unordered.mov": (4, (50, 50)),
    "mmaction2/test.mp4": (300, (256, 340)),
    "mmaction2/test.avi": (164, (240, 320)),
    "moviepy/big_buck_bunny_432_433.webm": (24, (720, 1280)),
    "moviepy/no_duration.webm": (74, (720, 1280)),
}


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_real_video_count_and_size(real_data, name):
    path = real_data / "videos" / name
    frames, (height, width) = VIDEOS[name]
    info = probe(path)
    assert (info.num_frames, info.height, info.width) == (frames, height, width)
    assert count_frames(path) == frames
    assert read_all_frames(path, short_side=48).shape[0] == frames  # the count is what really decodes
    last = read_frames(path, [0, frames - 1])
    assert last.shape == (2, height, width, 3) and last.dtype == np.uint8
    with pytest.raises(DecodeError, match=f"asked for frame {frames} but only {frames} frames decode"):
        read_frames(path, [frames])


def test_no_duration_webm_has_no_duration(real_data):
    info = probe(real_data / "videos" / "moviepy" / "no_duration.webm")
    assert info.duration is None and info.num_frames == 74


def test_rotation_is_applied(real_data):
    import av

    path = real_data / "videos" / "decord" / "video_90.mov"
    assert probe(path).rotation == -90
    with av.open(str(path)) as container:
        raw = next(container.decode(video=0)).to_ndarray(format="rgb24")  # coded [320, 568, 3]
    ours = read_frames(path, [0])[0]
    assert ours.shape == (568, 320, 3)
    # -90 (counter-clockwise) in the display matrix = a clockwise quarter turn for display;
    # checked by eye: the keyboard lettering reads upright
    assert np.array_equal(ours, np.rot90(raw, k=-1))


def test_unordered_timestamps_come_out_in_presentation_order(real_data):
    import av

    with av.open(str(real_data / "videos" / "decord" / "unordered.mov")) as container:
        stream = container.streams.video[0]
        packet_pts = [p.pts for p in container.demux(stream) if p.size]
        container.seek(0)
        times = [float(f.pts * f.time_base) for f in container.decode(stream)]
    assert packet_pts != sorted(packet_pts)  # the file really is out of order
    assert times == [0.0, 0.03125, 0.0625, 0.09375]
    assert read_frames(real_data / "videos" / "decord" / "unordered.mov", [0, 1, 2, 3]).shape[0] == 4


def test_decoder_order_beats_pts_order_on_packed_b_frame_avi(real_data):
    """Why frames are not re-sorted by PTS: on this XviD AVI the PTS are in packet order."""
    import av

    path = real_data / "videos" / "mmaction2" / "test.avi"
    with av.open(str(path)) as container:
        pts = [f.pts for f in container.decode(video=0)]
    assert pts != sorted(pts)
    frames = read_all_frames(path, short_side=60).astype(np.float32)
    by_pts = frames[np.argsort(pts, kind="stable")]

    def jitter(seq):  # total change between consecutive frames; a wrong order jumps back and forth
        return float(np.abs(np.diff(seq, axis=0)).mean())

    assert jitter(frames) < jitter(by_pts)


def test_corrupted_file_raises_typed_error(real_data):
    path = real_data / "videos" / "decord" / "corrupted.mp4"
    assert read_frames(path, range(10)).shape == (10, 720, 1280, 3)  # the good prefix decodes
    with pytest.raises(DecodeError) as info:
        read_frames(path, range(40))
    assert info.value.path == str(path) and "decoding failed after 28 frames" in info.value.reason
    again = pickle.loads(pickle.dumps(info.value))  # survives a DataLoader worker
    assert (again.path, again.reason) == (info.value.path, info.value.reason)


def test_missing_and_non_video_files(tmp_path):
    with pytest.raises(DecodeError, match="file not found"):
        read_frames(tmp_path / "nope.mp4", [0])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(DecodeError, match="cannot open container"):
        probe(junk)


def test_indices_any_order_with_repeats(make_video):
    path = make_video("c.mp4", num_frames=12, size=32)
    every = read_all_frames(path)
    assert every.shape == (12, 32, 32, 3)
    picked = read_frames(path, [7, 2, 7, 11])
    assert np.array_equal(picked, every[[7, 2, 7, 11]])
    assert len({int(f.mean()) for f in every}) > 6  # frames really differ, so the check means something


def test_short_side_resize_during_decode(real_data):
    path = real_data / "videos" / "moviepy" / "big_buck_bunny_432_433.webm"  # 1280x720
    small = read_frames(path, [0, 20], short_side=224)
    assert small.shape == (2, 224, 398, 3)
    tiny = real_data / "videos" / "mmaction2" / "test.avi"  # 320x240
    assert read_frames(tiny, [0], short_side=256).shape == (1, 240, 320, 3)  # never upscaled
    rotated = read_frames(real_data / "videos" / "decord" / "video_90.mov", [0], short_side=160)
    assert rotated.shape == (1, 284, 160, 3)
