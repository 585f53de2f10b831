"""The demo's world: exact reverse partners stored losslessly, captions that the pretraining
vocabulary covers (G1), twins that name the reversed event, and determinism."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vop_demo.world import (
    COLORS,
    STILL_TEMPLATES,
    VIDEO_TEMPLATES,
    SplitPairs,
    WorldSpec,
    generate_world,
    load_metadata,
    make_split,
    random_scene,
    render_clip,
    reverse_scene,
    still_batch,
    still_words,
)

SPEC = WorldSpec()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(tmp_path_factory.mktemp("world"), seed=3, sizes=SplitPairs(4, 2, 3), progress=False)


def test_reverse_scene_renders_the_same_frames_in_reverse_order():
    for i in range(40):  # every event kind appears among 40 scenes
        scene = random_scene(np.random.default_rng(i), SPEC, video=True)
        np.testing.assert_array_equal(render_clip(reverse_scene(scene), SPEC), render_clip(scene, SPEC)[::-1])
        assert reverse_scene(reverse_scene(scene)) == scene


def test_stored_partner_is_the_clip_reversed_bit_for_bit(world):
    from vop.data.decode import read_frames

    meta = load_metadata(world)
    for clip in meta["clips"]:
        if clip["id"].endswith("a"):
            frames = read_frames(world / "videos" / f"{clip['id']}.mkv", list(range(SPEC.frames)))
            partner = read_frames(world / "videos" / f"{clip['partner']}.mkv", list(range(SPEC.frames)))
            np.testing.assert_array_equal(partner, frames[::-1])
            np.testing.assert_array_equal(frames, render_clip(clip["scene"], SPEC))  # lossless storage


def test_every_video_caption_word_occurs_in_still_captions():
    """G1 at the word level: CLIP's BPE tokenizes word by word, so known words mean known tokens."""
    known = still_words()
    for split, n in (("train", 60), ("val", 30), ("test", 30)):
        for clip in make_split(11, split, n, SPEC, 3):
            for text in clip["captions"] + clip["twins"]:
                assert set(text.split()) <= known, text
    assert not set(VIDEO_TEMPLATES) & set(STILL_TEMPLATES)  # the video wording is new


def test_still_twins_name_the_reversed_event_and_differ_in_pixels():
    images, captions, groups = still_batch(40, seed=5, start=0, spec=SPEC)
    assert images.shape == (80, SPEC.size, SPEC.size, 3) and images.dtype == np.uint8
    cued = plain = 0
    for i in range(0, 80, 2):
        if groups[i] != groups[i + 1]:  # drawn with the cue: an event caption and its twin
            cued += 1
            assert captions[i] != captions[i + 1] and not np.array_equal(images[i], images[i + 1])
            assert re.sub(r"\w+", "w", captions[i]) == re.sub(r"\w+", "w", captions[i + 1])  # same template
        else:  # a plain photo: one moment that looks the same played either way, both captions right
            plain += 1
            np.testing.assert_array_equal(images[i], images[i + 1])
    assert cued > 15 and plain > 8
    again = still_batch(5, seed=5, start=10, spec=SPEC)
    np.testing.assert_array_equal(again[0], images[20:30])  # still i depends on (seed, i) only


def test_captions_have_twins_with_the_opposite_direction(world):
    meta = load_metadata(world)
    pairs = [("left", "right"), ("up", "down"), ("grows", "shrinks"), ("growing", "shrinking"),
             ("appears", "disappears"), ("appearing", "disappearing")]
    opposite = {**dict(pairs), **{b: a for a, b in pairs}}
    for clip in meta["clips"]:
        partner = meta["by_id"][clip["partner"]]
        assert clip["twins"] == partner["captions"]  # the partner's captions are this clip's twins
        for text, twin in zip(clip["captions"], clip["twins"]):
            assert text != twin
            words, twin_words = text.split(), twin.split()
            changed = [(a, b) for a, b in zip(words, twin_words) if a != b]
            assert changed and all(opposite.get(a) == b or (a in COLORS and b in COLORS) for a, b in changed), text


def test_world_is_deterministic_and_reused(world, tmp_path):
    again = generate_world(tmp_path / "w", seed=3, sizes=SplitPairs(4, 2, 3), progress=False)
    assert load_metadata(again)["clips"] == load_metadata(world)["clips"]
    other = generate_world(tmp_path / "o", seed=4, sizes=SplitPairs(4, 2, 3), progress=False)
    assert load_metadata(other)["clips"] != load_metadata(world)["clips"]
    mtime = (world / "metadata.json").stat().st_mtime
    generate_world(world, seed=3, sizes=SplitPairs(4, 2, 3), progress=False)
    assert (world / "metadata.json").stat().st_mtime == mtime


def test_annotations_load_through_the_generic_reader(world):
    from vop.data.annotations import load_records

    train = load_records("csv", world, split="train", videos_dir=world)
    assert len(train) == 8 and all(r.group for r in train) and all(1 <= len(r.captions) <= 3 for r in train)
    test = load_records("csv", world, split="test", videos_dir=world)
    assert len(test) == 6 and all(r.path.suffix == ".mkv" and r.path.is_file() for r in test)


def test_videos_show_one_actor_and_stills_sometimes_two():
    """Clips have no distractor shape (so the static side is which shape, colour and event; see the
    README for what distractors did to training), pretraining stills keep them."""
    videos = [random_scene(np.random.default_rng(i), SPEC, video=True) for i in range(60)]
    stills = [random_scene(np.random.default_rng(i), SPEC, video=False) for i in range(60)]
    assert all(s["distractor"] is None for s in videos)
    assert 10 < sum(s["distractor"] is not None for s in stills) < 50
    assert all(s["cast"] is not None for s in videos) and all(s["cast"] is None for s in stills)


def test_shapes_of_fixed_size_are_named_small_or_big_and_drawn_at_that_size():
    """Size words make captions tell more clips apart (fewer ties among identical captions)."""
    from vop_demo.world import SIZE_WORDS, caption

    scenes = [random_scene(np.random.default_rng(i), SPEC, video=True) for i in range(80)]
    fixed = [s for s in scenes if s["event"]["kind"] != "size"]
    assert {s["event"]["size"] for s in fixed} == set(SIZE_WORDS)
    for s in fixed:
        low, high = getattr(SPEC, s["event"]["size"])
        assert low <= s["event"]["radius"] <= high
        assert f" {s['event']['size']} " in caption(s, VIDEO_TEMPLATES[0], None)
    assert all("size" not in s["event"] for s in scenes if s["event"]["kind"] == "size")  # "grows" says it
    assert SPEC.small[1] < SPEC.big[0]


def test_moving_and_resizing_shapes_are_blurred_and_colour_or_visibility_changes_are_not():
    """Motion blur shows *that* a shape moves or resizes in one frame, the same either way in time."""
    from vop_demo.world.render import _exposure, render_frame

    kinds = set()
    for i in range(40):
        scene = random_scene(np.random.default_rng(i), SPEC, video=True)
        kind = scene["event"]["kind"]
        kinds.add(kind)
        t = SPEC.frames // 2 - 1
        blurred, sharp = render_frame(scene, t, SPEC), render_frame(scene, t, SPEC, blur=0)
        if kind in ("color", "visibility"):
            np.testing.assert_array_equal(blurred, sharp)
        else:
            assert np.abs(blurred.astype(int) - sharp).sum() > 0, kind
            if kind == "move":  # the smear: more pixels partly covered than the sharp shape's edge
                smear, edge = (_exposure(scene, t, SPEC.frames, SPEC.size, b) for b in (SPEC.blur_steps, 0))
                assert ((smear > 0) & (smear < 1)).sum() > ((edge > 0) & (edge < 1)).sum(), kind
    assert kinds == {"move", "size", "visibility", "color"}
    with pytest.raises(ValueError, match="blur_steps"):
        WorldSpec(blur_steps=4)
