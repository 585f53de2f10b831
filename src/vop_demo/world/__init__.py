"""The demo's miniature world: stills for pretraining the bundled CLIP, and videos for the benchmark.

It plays out, in miniature, the setting of the VoP paper. Real CLIP has read every word a video
caption uses ("left", "grows", "turns blue") from photos, where a still cue shows the event
(motion blur, a before/after picture). Then video retrieval asks for the same events where only
the order of frames tells them apart, in a domain CLIP has not seen.

* **Stills** (:mod:`~vop_demo.world.stills`, pretraining only): 1–2 shapes on a *photo* background
  (stripes, gradient, blotches). The actor shows its event through a still cue: three fading
  copies on the side it came from ("moves left"), a faint outline of the earlier size ("grows" /
  "shrinks"), a half-faded body with a plus or a cross ("appears" / "disappears"), a ring of the
  old colour ("turns from red to blue"). Stills come in **twins**, the event and its reverse drawn
  on the same scene with the same caption template, so captions that differ only in direction
  or word order meet in one batch. Some stills are plain photos of one moment of the event (no
  cue; motion-blurred like a video frame when captioned by the event).
* **Videos** (:mod:`~vop_demo.world.files`, the benchmark): one shape and its event with **no still cue**,
  on *video* backgrounds the stills never use (checks, dots) under a colour cast, worded by
  caption templates the stills never use (made of the same words). Frames are exposed over part
  of the frame interval, so a moving or resizing shape is blurred along its path, the same
  either way in time. Direction exists only in the order of the frames: each clip's partner is
  exactly its frames reversed, stored losslessly (FFV1), so an order-free method cannot tell
  them apart.

Everything is a pure function of the seed: ``stream_rng(seed, stream...)`` gives each clip or still
its own generator.

One module per job: :mod:`~vop_demo.world.spec` (vocabulary, geometry, split sizes),
:mod:`~vop_demo.world.scene` (scenes as data), :mod:`~vop_demo.world.render` (drawing),
:mod:`~vop_demo.world.captions` (wordings), :mod:`~vop_demo.world.stills` (pretraining stills),
:mod:`~vop_demo.world.files` (the benchmark on disk). The names below are the world's public face.
"""

from vop_demo.world.captions import (
    EVENT_WORDS,
    STATIC_TEMPLATES,
    STILL_TAILS,
    STILL_TEMPLATES,
    VIDEO_TAILS,
    VIDEO_TEMPLATES,
    caption,
    event_phrases,
    still_words,
)
from vop_demo.world.files import (
    CAPTIONS_PER_CLIP,
    WORLD_VERSION,
    generate_world,
    load_metadata,
    make_split,
    world_key,
    write_video,
)
from vop_demo.world.render import render_clip, render_frame, render_still
from vop_demo.world.scene import actor_state, random_event, random_scene, reverse_event, reverse_scene
from vop_demo.world.spec import (
    COLORS,
    DIRECTIONS,
    EVENT_KINDS,
    FIXED_FIELDS,
    REVERSE,
    SHAPES,
    SIZE_WORDS,
    SPLIT_CODES,
    STILL_BACKGROUNDS,
    VIDEO_BACKGROUNDS,
    SplitPairs,
    WorldSpec,
    as_tuples,
    changed_spec,
    parse_assignments,
    stream_rng,
)
from vop_demo.world.stills import PLAIN_EVENT, still_batch

__all__ = [
    "CAPTIONS_PER_CLIP", "COLORS", "DIRECTIONS", "EVENT_KINDS", "EVENT_WORDS", "FIXED_FIELDS", "PLAIN_EVENT",
    "REVERSE", "SHAPES", "SIZE_WORDS", "SPLIT_CODES", "STATIC_TEMPLATES", "STILL_BACKGROUNDS", "STILL_TAILS",
    "STILL_TEMPLATES", "VIDEO_BACKGROUNDS", "VIDEO_TAILS", "VIDEO_TEMPLATES", "WORLD_VERSION", "SplitPairs",
    "WorldSpec", "actor_state", "as_tuples", "caption", "changed_spec", "event_phrases", "generate_world",
    "load_metadata", "make_split", "parse_assignments", "random_event", "random_scene", "render_clip",
    "render_frame", "render_still", "reverse_event", "reverse_scene", "still_batch", "still_words", "stream_rng",
    "world_key", "write_video",
]
