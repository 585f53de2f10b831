"""The world's fixed vocabulary and geometry: colours, shapes, events, :class:`WorldSpec` (sizes
in pixels at the backbone's input size), :class:`SplitPairs` (reverse pairs per split: the one
place the demo's split sizes are set), and the ``KEY=VALUE`` changes a probe may make to the spec.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 185, 60),
    "blue": (45, 85, 235),
    "yellow": (235, 215, 40),
    "purple": (155, 55, 205),
}
SHAPES = ("circle", "square", "triangle")
STILL_BACKGROUNDS = ("stripes", "gradient", "blotches")
VIDEO_BACKGROUNDS = ("checks", "dots")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
REVERSE = {"left": "right", "right": "left", "up": "down", "down": "up",
           "grow": "shrink", "shrink": "grow", "appear": "disappear", "disappear": "appear"}
EVENT_KINDS = ("move", "size", "visibility", "color")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
SIZE_WORDS = ("small", "big")  # a shape whose size does not change is one of these (WorldSpec.small/big)


@dataclass(frozen=True)
class WorldSpec:
    """Geometry of stills and clips (pixels at the model's input size)."""

    size: int = 32
    frames: int = 6  # frames per clip; the demo samples all of them (F = frames)
    fps: int = 8
    small: tuple[float, float] = (3.2, 3.9)  # radius of a shape named "small" (its size does not change)
    big: tuple[float, float] = (5.0, 5.8)  # ... and of one named "big"
    small_large: tuple[float, float] = (2.5, 6.5)  # grow: small -> large
    move_distance: tuple[int, int] = (12, 16)
    still_distractor_prob: float = 0.5  # pretraining stills: a second, still shape (named by a caption tail)
    video_distractor_prob: float = 0.0  # videos: one actor (with distractors, trained methods overfit: README)
    cast: float = 0.2  # videos: weight of the colour cast mixed into every pixel
    blur_steps: int = 3  # videos: each frame is exposed over t +- k/8 of a frame interval, k <= blur_steps (0: sharp)

    def __post_init__(self):
        if self.frames % 2 or self.frames < 2:
            raise ValueError(f"WorldSpec.frames must be even and >= 2 (events switch halfway), got {self.frames}")
        if not 0 <= self.blur_steps <= 3:
            raise ValueError(f"WorldSpec.blur_steps must be 0..3 (exposure within +-3/8 of a frame), got {self.blur_steps}")
        need = 2 * (self.big[1] + 1) + self.move_distance[1]
        if self.size < need:
            raise ValueError(f"WorldSpec.size {self.size} is too small for its shapes and moves (needs >= {need})")


FIXED_FIELDS = ("size", "frames")  # the bundled backbone's input size; the demo samples every frame


def parse_assignments(items: list[str], what: str) -> dict:
    """``["a=1", "b=[1,2]", "c=text"]`` -> ``{"a": 1, "b": [1, 2], "c": "text"}`` (a value is JSON,
    or else a plain string); ``ValueError`` names ``what`` and the bad item."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what}: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def as_tuples(value):
    """JSON lists as tuples, nested (the frozen dataclasses' field types)."""
    return tuple(as_tuples(v) for v in value) if isinstance(value, list) else value


def changed_spec(changes: dict) -> WorldSpec:
    """The demo's ``WorldSpec`` with ``changes`` (field -> value, lists for tuples); ``ValueError``
    names an unknown or fixed field or a value the spec refuses."""
    known = {f.name for f in fields(WorldSpec)} - set(FIXED_FIELDS)
    bad = sorted(set(changes) - known)
    if bad:
        raise ValueError(f"--world: unknown or fixed field(s) {bad}; can change: {sorted(known)}")
    try:
        return WorldSpec(**{k: as_tuples(v) for k, v in changes.items()})
    except (TypeError, ValueError) as err:
        raise ValueError(f"--world: {err}") from None


def stream_rng(seed: int, *stream: int) -> np.random.Generator:
    """The generator of one clip or still: everything in the world is a pure function of the seed."""
    return np.random.default_rng([seed, *stream])


@dataclass(frozen=True)
class SplitPairs:
    """Reverse *pairs* per split (each pair is two clips): the demo's split sizes, set here only."""

    train: int = 300
    val: int = 100
    test: int = 150
