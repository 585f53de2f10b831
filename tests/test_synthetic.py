"""The synthetic temporal benchmark: reverse pairs, captions that match events, disjoint splits,
determinism, and files that the generic csv/jsonl readers and the video decoder accept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vop.data.synthetic import (
    SplitSizes,
    SyntheticSpec,
    actor_state,
    generate_dataset,
    load_metadata,
    make_pairs,
    random_scene,
    render_clip,
    reverse_scene,
    static_frames,
)

SPEC = SyntheticSpec(frames=8)  # 64 px: the geometry of the real benchmark, few frames

EVENT_WORDS = {
    "move left": ["left"], "move right": ["right"], "move up": ["up", "rises", "bottom to top"],
    "move down": ["down", "falls", "top to bottom"],
    "size grow": ["grow", "bigger", "larger", "expands"], "size shrink": ["shrink", "smaller", "contracts"],
    "visibility appear": ["appear", "shows up", "into view"],
    "visibility disappear": ["disappear", "vanishes", "out of view"],
}
# words that would make a caption describe the reversed event instead
OPPOSITE_WORDS = {
    "move left": ["moves right", "slides right", "goes right", "to the right", "left to right"],
    "move right": ["moves left", "slides left", "goes left", "to the left", "right to left"],
    "move up": ["down", "falls"], "move down": ["up", "rises"],
    "size grow": ["shrink", "smaller"], "size shrink": ["grow", "bigger", "larger"],
    "visibility appear": ["disappear", "vanish", "out of view"],
    "visibility disappear": ["shows up", "pops into", "comes into"],
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return generate_dataset(out, seed=3, sizes=SplitSizes(train=4, val=2, test=3), spec=SPEC, progress=False)


def test_reverse_scene_renders_the_same_frames_in_reverse_order():
    for i in range(40):  # all event kinds appear among 40 random scenes
        scene = random_scene(np.random.default_rng(i), SPEC)
        clip, rev = render_clip(scene, SPEC), render_clip(reverse_scene(scene), SPEC)
        np.testing.assert_array_equal(rev, clip[::-1])
        assert reverse_scene(reverse_scene(scene)) == scene


def test_events_change_the_frames_over_time():
    for i in range(20):
        scene = random_scene(np.random.default_rng(i), SPEC)
        clip = render_clip(scene, SPEC)
        assert not np.array_equal(clip[0], clip[-1]), scene["event"]
        first, last = actor_state(scene, 0, SPEC.frames), actor_state(scene, SPEC.frames - 1, SPEC.frames)
        ev = scene["event"]
        if ev["kind"] == "move":
            dx, dy = last["x"] - first["x"], last["y"] - first["y"]
            expect = {"left": dx < 0, "right": dx > 0, "up": dy < 0, "down": dy > 0}[ev["direction"]]
            assert expect, (ev, dx, dy)
        elif ev["kind"] == "size":
            assert (last["r"] > first["r"]) == (ev["direction"] == "grow")
        elif ev["kind"] == "visibility":
            assert (first["visible"], last["visible"]) == ((False, True) if ev["direction"] == "appear" else (True, False))
        else:
            assert (first["color"], last["color"]) == (ev["start"], ev["end"])


def test_captions_match_events_and_pairs_differ_only_in_time():
    clips = make_pairs(seed=0, split="train", n_pairs=60, spec=SPEC)
    kinds = set()
    for a, b in zip(clips[0::2], clips[1::2]):
        assert a["partner"] == b["id"] and b["partner"] == a["id"] and a["pair"] == b["pair"]
        assert b["scene"] == reverse_scene(a["scene"])
        for clip in (a, b):
            kinds.add(clip["event"].split()[0])
            temporal = [c["text"] for c in clip["captions"] if c["kind"] == "temporal"]
            static = [c["text"] for c in clip["captions"] if c["kind"] == "static"]
            assert len(temporal) >= 2 and len(static) == 1
            assert len(set(temporal + static)) == len(temporal + static)
            for text in temporal:
                ev = clip["scene"]["event"]
                if ev["kind"] == "color":  # "from red to blue" / "a red circle turns blue"
                    assert text.index(ev["start"]) < text.rindex(ev["end"]), (text, ev)
                else:
                    assert any(w in text for w in EVENT_WORDS[clip["event"]]), (text, clip["event"])
                    assert not any(w in text for w in OPPOSITE_WORDS[clip["event"]]), (text, clip["event"])
            for text in static:  # static captions name no event
                assert not any(w in text for words in EVENT_WORDS.values() for w in words), text
                assert " turns " not in text and " becomes " not in text
    assert kinds == {"move", "size", "visibility", "color"}


def test_generation_is_deterministic_given_the_seed():
    a = make_pairs(seed=5, split="test", n_pairs=6, spec=SPEC)
    b = make_pairs(seed=5, split="test", n_pairs=6, spec=SPEC)
    c = make_pairs(seed=6, split="test", n_pairs=6, spec=SPEC)
    assert a == b and a != c
    np.testing.assert_array_equal(render_clip(a[0]["scene"], SPEC), render_clip(b[0]["scene"], SPEC))
    img1, cap1 = static_frames(5, seed=1, spec=SPEC)
    img2, cap2 = static_frames(5, seed=1, spec=SPEC)
    np.testing.assert_array_equal(img1, img2)
    assert cap1 == cap2


def test_static_pretraining_captions_have_no_motion_words():
    _, captions = static_frames(50, seed=0, spec=SPEC)
    motion = ["move", "slide", "grow", "shrink", "appear", "vanish", "turn", "become", "rise", "fall"]
    for text in captions:
        assert not any(w in text for w in motion), text
        assert any(c in text for c in ("red", "green", "blue", "yellow", "purple"))


def test_dataset_files_splits_disjoint_and_readable(dataset):
    from vop.data.annotations import load_records
    from vop.data.decode import probe, read_frames

    meta = load_metadata(dataset)
    by_split = {}
    for c in meta["clips"]:
        by_split.setdefault(c["split"], []).append(c)
    assert {k: len(v) for k, v in by_split.items()} == {"train": 8, "val": 4, "test": 6}
    ids = [{c["id"] for c in v} for v in by_split.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    scenes = [{json.dumps(c["scene"], sort_keys=True) for c in v} for v in by_split.values()]
    assert not (scenes[0] & scenes[1] or scenes[0] & scenes[2] or scenes[1] & scenes[2])

    for split, clips in by_split.items():
        for kind in ("csv", "jsonl"):
            records = load_records(kind, dataset, split=split, videos_dir=dataset)
            assert sorted(r.video_id for r in records) == sorted(f"videos/{c['id']}.mp4" for c in clips)
            for r in records:
                clip = meta["by_id"][r.path.stem]
                assert r.captions == [c["text"] for c in clip["captions"] if c["kind"] == "temporal"] or \
                    r.captions == [c["text"] for c in clip["captions"]]
    train = load_records("csv", dataset, split="train", videos_dir=dataset)
    assert any(len(r.captions) == 4 for r in train)  # train keeps the static captions too
    rec = load_records("csv", dataset, split="test", videos_dir=dataset)[0]
    info = probe(rec.path)
    assert (info.num_frames, info.width, info.height) == (SPEC.frames, SPEC.size, SPEC.size)
    frames = read_frames(rec.path, list(range(SPEC.frames)))
    expected = render_clip(meta["by_id"][rec.path.stem]["scene"], SPEC)
    assert np.abs(frames.astype(int) - expected.astype(int)).mean() < 6  # lossy H.264, same picture


def test_generate_dataset_reuses_a_complete_folder(dataset):
    meta = dataset / "metadata.json"
    before = meta.stat().st_mtime_ns
    again = generate_dataset(dataset, seed=3, sizes=SplitSizes(train=4, val=2, test=3), spec=SPEC, progress=False)
    assert again == dataset and meta.stat().st_mtime_ns == before


def test_spec_rejects_odd_frame_counts_and_cramped_frames():
    with pytest.raises(ValueError, match="even"):
        SyntheticSpec(frames=7)
    with pytest.raises(ValueError, match="too small"):
        SyntheticSpec(size=32)


def test_regenerated_videos_decode_to_the_same_pictures(tmp_path, dataset):
    """Scenes and rendered frames are exact; H.264 bytes may differ in rare rounding (x264 is run
    single-threaded, but pixel-format conversion is not guaranteed bit-stable), so compare pixels."""
    from vop.data.decode import read_frames

    again = generate_dataset(tmp_path / "again", seed=3, sizes=SplitSizes(train=4, val=2, test=3), spec=SPEC,
                             progress=False)
    assert load_metadata(again)["clips"] == load_metadata(dataset)["clips"]
    for path in sorted((dataset / "videos").glob("*.mp4")):
        a = read_frames(path, list(range(SPEC.frames))).astype(int)
        b = read_frames(again / "videos" / path.name, list(range(SPEC.frames))).astype(int)
        assert np.abs(a - b).mean() < 0.5 and np.abs(a - b).max() <= 8, path.name
