"""The pretraining stills: twins (an event and its reverse on one scene, worded alike) drawn with
a still cue, and plain photos of one moment."""

from __future__ import annotations

import numpy as np

from vop_demo.world.captions import STILL_TAILS, STILL_TEMPLATES, caption, choose_wording, static_caption
from vop_demo.world.render import render_frame, render_still
from vop_demo.world.scene import actor_state, random_scene, reverse_scene
from vop_demo.world.spec import WorldSpec, stream_rng

PLAIN_EVENT = "plain-event"  # group prefix of plain photos captioned by both event captions


def still_batch(n_twins: int, seed: int, start: int, spec: WorldSpec, plain_share: float = 0.4,
                event_share: float = 0.5):
    """``2 * n_twins`` stills (uint8 ``[N, H, W, 3]``), captions and positive groups.

    Twins ``2i`` / ``2i+1`` are one scene with its event and with the reversed event, worded by the
    same template, each drawn with its still cue. A ``plain_share`` of twins are plain photos
    instead (no cue), so the backbone also knows objects without cues: half of them get a
    static caption, an ``event_share`` of them the two event captions of one moment that looks the same either way
    (frame ``t`` of the event is frame ``T-1-t`` of its reverse; motion-blurred like a video frame); those two captions are both
    right for both photos, so they share a positive group (named ``PLAIN_EVENT<i>``).
    ``groups[i] == groups[j]`` (or equal captions) marks positives for the loss.
    """
    images, captions, groups = [], [], []
    for i in range(start, start + n_twins):
        rng = stream_rng(seed, 7, i)
        scene = random_scene(rng, spec, video=False)
        twin = reverse_scene(scene)
        template, tail = choose_wording(rng, STILL_TEMPLATES, STILL_TAILS)
        texts = [caption(scene, template, tail), caption(twin, template, tail)]
        if rng.random() < plain_share:
            t = int(rng.integers(spec.frames))
            event = rng.random() >= 1 - event_share
            # a photo of the moment: blurred like a video frame when captioned by the event (the
            # blur is the same for the event and its reverse), sharp under a static caption
            frame = render_frame(scene, t, spec, blur=spec.blur_steps if event else 0)  # == twin's frame T-1-t
            if not event:
                texts = [static_caption(scene, rng, actor_state(scene, t, spec.frames))] * 2
            images += [frame, frame]
            captions += texts
            groups += [f"{PLAIN_EVENT if event else 'plain'}{i}"] * 2
            continue
        images += [render_still(scene, spec), render_still(twin, spec)]
        captions += texts
        groups += [f"cue{i}a", f"cue{i}b"]
    return np.stack(images), captions, groups
