"""The demo's miniature world: stills for pretraining the bundled CLIP, and videos for the benchmark.

It plays out, in miniature, the setting of the VoP paper. Real CLIP has read every word a video
caption uses ("left", "grows", "turns blue") from photos, where a still cue shows the event
(motion blur, a before/after picture). Then video retrieval asks for the same events where only
the order of frames tells them apart, in a domain CLIP has not seen.

* **Stills** (:func:`still_batch`, pretraining only): 1–2 shapes on a *photo* background
  (stripes, gradient, blotches). The actor shows its event through a still cue: three fading
  copies on the side it came from ("moves left"), a faint outline of the earlier size ("grows" /
  "shrinks"), a half-faded body with a plus or a cross ("appears" / "disappears"), a ring of the
  old colour ("turns from red to blue"). Stills come in **twins**, the event and its reverse drawn
  on the same scene with the same caption template, so captions that differ only in direction
  or word order meet in one batch. Some stills are plain photos of one moment of the event (no
  cue; motion-blurred like a video frame when captioned by the event).
* **Videos** (:func:`make_split`, the benchmark): one shape and its event with **no still cue**,
  on *video* backgrounds the stills never use (checks, dots) under a colour cast, worded by
  caption templates the stills never use (made of the same words). Frames are exposed over part
  of the frame interval, so a moving or resizing shape is blurred along its path, the same
  either way in time. Direction exists only in the order of the frames: each clip's partner is
  exactly its frames reversed, stored losslessly (FFV1), so an order-free method cannot tell
  them apart.

Everything is a pure function of the seed: ``_rng(seed, stream...)`` gives each clip or still
its own generator.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

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
WORLD_VERSION = 7  # bump when a change alters generated data (cached worlds are made again)


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


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


# --------------------------------------------------------------------------- scenes (plain data)


def _background(rng: np.random.Generator, kinds: tuple[str, ...]) -> dict:
    base = rng.integers(70, 150, size=3)
    tint = rng.integers(-25, 26, size=3)
    return {"kind": str(rng.choice(kinds)),
            "color_a": [int(v) for v in np.clip(base + tint, 0, 255)],
            "color_b": [int(v) for v in np.clip(base - tint + rng.integers(-30, 31), 0, 255)],
            "period": int(rng.integers(3, 8)), "angle": float(rng.uniform(0, np.pi)),
            "seed": int(rng.integers(0, 2**31 - 1))}


def _sized(rng: np.random.Generator, spec: WorldSpec) -> tuple[str, float]:
    """A size word and a radius in its range."""
    word = str(rng.choice(SIZE_WORDS))
    return word, float(rng.uniform(*getattr(spec, word)))


def random_event(rng: np.random.Generator, spec: WorldSpec) -> dict:
    """An event with its geometry: the actor stays inside the frame from start to end."""
    kind = str(rng.choice(EVENT_KINDS))
    s = spec.size
    if kind == "move":
        d = str(rng.choice(list(DIRECTIONS)))
        size, r = _sized(rng, spec)
        dist = float(rng.integers(spec.move_distance[0], spec.move_distance[1] + 1))
        dx, dy = DIRECTIONS[d]
        lo, hi = r + 1, s - r - 1
        x0 = rng.uniform(lo + max(0, -dx) * dist, hi - max(0, dx) * dist)
        y0 = rng.uniform(lo + max(0, -dy) * dist, hi - max(0, dy) * dist)
        return {"kind": kind, "direction": d, "size": size, "radius": r, "start": [float(x0), float(y0)],
                "end": [float(x0 + dx * dist), float(y0 + dy * dist)]}
    r_max = spec.small_large[1] if kind == "size" else spec.big[1]
    center = [float(v) for v in rng.uniform(r_max + 1, s - r_max - 1, size=2)]
    if kind == "size":
        d = str(rng.choice(["grow", "shrink"]))
        small, large = spec.small_large
        return {"kind": kind, "direction": d, "center": center,
                "start": small if d == "grow" else large, "end": large if d == "grow" else small}
    size, r = _sized(rng, spec)
    if kind == "visibility":
        return {"kind": kind, "direction": str(rng.choice(["appear", "disappear"])), "size": size, "center": center,
                "radius": r}
    a, b = (str(c) for c in rng.choice(list(COLORS), size=2, replace=False))
    return {"kind": kind, "start": a, "end": b, "size": size, "center": center, "radius": r}


def reverse_event(event: dict) -> dict:
    """The event played backwards (left <-> right, grow <-> shrink, red->blue <-> blue->red)."""
    rev = json.loads(json.dumps(event))
    if "direction" in rev:
        rev["direction"] = REVERSE[rev["direction"]]
    if "start" in rev:
        rev["start"], rev["end"] = rev["end"], rev["start"]
    return rev


def actor_state(scene: dict, t: float, frames: int) -> dict:
    """The actor at frame ``t`` of ``frames`` (or between frames, for motion blur): ``x``, ``y``,
    ``r``, ``color``, ``visible``.

    Integer interpolation weights and a switch at ``frames // 2`` make the reversed event's
    frame ``frames-1-t`` equal this event's frame ``t``.
    """
    ev = scene["event"]
    w0, w1, den = frames - 1 - t, t, frames - 1
    late = 2 * t > frames - 1  # t >= frames // 2 for whole frames; also right for blur sub-times
    state = {"color": scene["actor"].get("color"), "visible": True}
    if ev["kind"] == "move":
        state.update(x=(ev["start"][0] * w0 + ev["end"][0] * w1) / den,
                     y=(ev["start"][1] * w0 + ev["end"][1] * w1) / den, r=ev["radius"])
        return state
    state.update(x=ev["center"][0], y=ev["center"][1], r=ev.get("radius"))
    if ev["kind"] == "size":
        state["r"] = (ev["start"] * w0 + ev["end"] * w1) / den
    elif ev["kind"] == "visibility":
        state["visible"] = late if ev["direction"] == "appear" else not late
    else:
        state["color"] = ev["end"] if late else ev["start"]
    return state


def _distractor(rng: np.random.Generator, spec: WorldSpec, actor: dict, event: dict) -> dict | None:
    """A still shape that never overlaps the actor's path and differs from it in shape or colour."""
    scene = {"actor": actor, "event": event}
    states = [actor_state(scene, t, spec.frames) for t in (0, spec.frames // 2, spec.frames - 1)]
    path = [(s["x"], s["y"], s["r"]) for s in states]
    colors = {s["color"] for s in states}
    for _ in range(60):
        shape, color = str(rng.choice(SHAPES)), str(rng.choice(list(COLORS)))
        if shape == actor["shape"] and color in colors:
            continue  # captions must tell the two objects apart
        size, r = _sized(rng, spec)
        x, y = (float(v) for v in rng.uniform(r + 1, spec.size - r - 1, size=2))
        # distance to the segment between the path's end points (moves are straight lines)
        (x0, y0, r0), (x1, y1, r1) = path[0], path[-1]
        seg = np.array([x1 - x0, y1 - y0])
        u = 0.0 if not seg.any() else float(np.clip(np.dot([x - x0, y - y0], seg) / np.dot(seg, seg), 0, 1))
        gap = np.hypot(x - (x0 + u * seg[0]), y - (y0 + u * seg[1]))
        if gap > r + max(r0, r1, states[1]["r"]) + 2:
            return {"shape": shape, "color": color, "size": size, "x": x, "y": y, "r": r}
    return None


def random_scene(rng: np.random.Generator, spec: WorldSpec, video: bool) -> dict:
    """One scene: background (video or still kinds), an actor with an event, maybe a distractor."""
    event = random_event(rng, spec)
    actor = {"shape": str(rng.choice(SHAPES))}
    if event["kind"] != "color":
        actor["color"] = str(rng.choice(list(COLORS)))
    scene = {"background": _background(rng, VIDEO_BACKGROUNDS if video else STILL_BACKGROUNDS),
             "actor": actor, "event": event, "distractor": None, "cast": None}
    if rng.random() < (spec.video_distractor_prob if video else spec.still_distractor_prob):
        scene["distractor"] = _distractor(rng, spec, actor, event)
    if video:
        scene["cast"] = [int(v) for v in rng.integers(0, 256, size=3)]
    return scene


def reverse_scene(scene: dict) -> dict:
    return {**scene, "event": reverse_event(scene["event"])}


# --------------------------------------------------------------------------- drawing


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return yy + 0.5, xx + 0.5  # pixel centres


def _render_background(bg: dict, size: int) -> np.ndarray:
    """``[H, W, 3]`` float 0..255."""
    yy, xx = _grid(size)
    a, b = np.array(bg["color_a"], float), np.array(bg["color_b"], float)
    period, kind = bg["period"], bg["kind"]
    u = xx * np.cos(bg["angle"]) + yy * np.sin(bg["angle"])
    if kind == "stripes":
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * u / (2 * period))
    elif kind == "gradient":
        mix = (u - u.min()) / max(u.max() - u.min(), 1e-6)
    elif kind == "blotches":
        coarse = np.random.default_rng(bg["seed"]).random((size // 8 + 2, size // 8 + 2))
        mix = np.kron(coarse, np.ones((8, 8)))[:size, :size]
    elif kind == "checks":
        mix = ((xx // period + yy // period) % 2).astype(float)
    else:  # dots
        mix = (np.hypot(xx % (2 * period) - period, yy % (2 * period) - period) < period * 0.35).astype(float)
    return a * (1 - mix[..., None]) + b * mix[..., None]


def _sdf(shape: str, x: float, y: float, r: float, size: int) -> np.ndarray:
    """Signed distance to the shape's edge (negative inside), ``[H, W]``."""
    yy, xx = _grid(size)
    dx, dy = xx - x, yy - y
    if shape == "circle":
        return np.hypot(dx, dy) - r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * r
    edges = [(0.0, 1.0), (np.sqrt(3) / 2, -0.5), (-np.sqrt(3) / 2, -0.5)]  # upward triangle
    return np.max([nx * dx + ny * dy for nx, ny in edges], axis=0) - 0.6 * r


def _blend(img: np.ndarray, alpha: np.ndarray, rgb) -> None:
    a = alpha[..., None]
    img *= 1 - a
    img += a * np.asarray(rgb, float)


def _coverage(shape: str, x: float, y: float, r: float, size: int) -> np.ndarray:
    """How much of each pixel the shape covers, ``[H, W]`` in 0..1 (a one-pixel soft edge)."""
    return np.clip(0.5 - _sdf(shape, x, y, r, size), 0, 1)


def _paint(img, shape, color, x, y, r, opacity: float = 1.0) -> None:
    _blend(img, opacity * _coverage(shape, x, y, r, img.shape[0]), COLORS[color])


def _outline(img, shape, rgb, x, y, r, width: float = 1.0, opacity: float = 1.0) -> None:
    _blend(img, opacity * np.clip(0.5 + width / 2 - np.abs(_sdf(shape, x, y, r, img.shape[0])), 0, 1), rgb)


def _mark(img, x, y, r, cross: bool, rgb) -> None:
    """A plus (appears) or a cross (disappears) over the shape's centre."""
    yy, xx = _grid(img.shape[0])
    dx, dy = xx - x, yy - y
    if cross:
        dx, dy = (dx + dy) / np.sqrt(2), (dx - dy) / np.sqrt(2)
    arm = 0.9 * r
    bar = ((np.abs(dx) < 0.7) & (np.abs(dy) < arm)) | ((np.abs(dy) < 0.7) & (np.abs(dx) < arm))
    _blend(img, bar.astype(float), rgb)


def _finish(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _exposure(scene: dict, t: int, frames: int, size: int, blur: int) -> np.ndarray:
    """The actor's coverage in frame ``t``, averaged over the exposure ``t +- k/8`` (k <= ``blur``,
    clamped to the clip): a moving or resizing shape leaves a blur along its path that is the
    same either way in time. Offsets are eighths and pairs are summed as ``a(t-d) + a(t+d)``, so
    the reversed clip's frames equal these bit for bit; no exposure reaches the switch at
    ``(frames-1)/2``, so colours and visibility stay sharp."""

    def cover(tau: float) -> np.ndarray:
        st = actor_state(scene, tau, frames)
        if not st["visible"]:
            return np.zeros((size, size))
        return _coverage(scene["actor"]["shape"], st["x"], st["y"], st["r"], size)

    total = cover(t)
    for k in range(1, blur + 1):
        d = k / 8
        total = total + (cover(max(t - d, 0)) + cover(min(t + d, frames - 1)))
    return total / (1 + 2 * blur)


def render_frame(scene: dict, t: int, spec: WorldSpec, blur: int | None = None) -> np.ndarray:
    """Frame ``t`` of a video scene, uint8 ``[H, W, 3]``: no still cue, motion blur of ``blur``
    steps (default ``spec.blur_steps``), colour cast applied."""
    img = _render_background(scene["background"], spec.size)
    d = scene.get("distractor")
    if d:
        _paint(img, d["shape"], d["color"], d["x"], d["y"], d["r"])
    st = actor_state(scene, t, spec.frames)
    blur = spec.blur_steps if blur is None else blur
    if st["visible"]:
        _blend(img, _exposure(scene, t, spec.frames, spec.size, blur), COLORS[st["color"]])
    if scene.get("cast") is not None:
        img = (1 - spec.cast) * img + spec.cast * np.array(scene["cast"], float)
    return _finish(img)


def render_clip(scene: dict, spec: WorldSpec) -> np.ndarray:
    """uint8 ``[T, H, W, 3]``."""
    return np.stack([render_frame(scene, t, spec) for t in range(spec.frames)])


def render_still(scene: dict, spec: WorldSpec) -> np.ndarray:
    """One photo of a scene's event, uint8 ``[H, W, 3]``: the actor at the event's end, with a cue."""
    img = _render_background(scene["background"], spec.size)
    d = scene.get("distractor")
    if d:
        _paint(img, d["shape"], d["color"], d["x"], d["y"], d["r"])
    ev, shape = scene["event"], scene["actor"]["shape"]
    end = actor_state(scene, spec.frames - 1, spec.frames)
    color = end["color"]
    if ev["kind"] == "move":  # fading copies on the side the shape came from
        (x0, y0), (x1, y1) = ev["start"], ev["end"]
        for k, opacity in ((3, 0.15), (2, 0.3), (1, 0.5)):
            f = 1 - 0.3 * k
            _paint(img, shape, color, x0 + f * (x1 - x0), y0 + f * (y1 - y0), ev["radius"], opacity)
        _paint(img, shape, color, x1, y1, ev["radius"])
    elif ev["kind"] == "size":  # a faint outline at the earlier size
        _paint(img, shape, color, end["x"], end["y"], ev["end"])
        _outline(img, shape, (255, 255, 255), end["x"], end["y"], ev["start"], opacity=0.8)
    elif ev["kind"] == "visibility":  # half faded, with a plus (appears) or a cross (disappears)
        _paint(img, shape, color, end["x"], end["y"], ev["radius"], opacity=0.5)
        _mark(img, end["x"], end["y"], ev["radius"], cross=ev["direction"] == "disappear",
              rgb=(255, 255, 255) if ev["direction"] == "appear" else (0, 0, 0))
    else:  # the new colour inside a ring of the old one
        _outline(img, shape, COLORS[ev["start"]], end["x"], end["y"], ev["radius"] + 1.5, width=1.6)
        _paint(img, shape, ev["end"], end["x"], end["y"], ev["radius"])
    return _finish(img)


# --------------------------------------------------------------------------- captions
# Two wordings of the same events. Stills (pretraining) and videos (the benchmark) use different
# templates, but every word a video template uses also occurs in still captions: the frozen
# backbone knows the words, prompts learn the new phrasing (tested: ``caption_vocabulary``).

EVENT_WORDS = {  # (finite phrase, -ing phrase) per direction
    "left": ("moves left", "moving left"), "right": ("moves right", "moving right"),
    "up": ("moves up", "moving up"), "down": ("moves down", "moving down"),
    "grow": ("grows", "growing"), "shrink": ("shrinks", "shrinking"),
    "appear": ("appears", "appearing"), "disappear": ("disappears", "disappearing"),
}
STILL_TEMPLATES = ["a {obj} {ev}", "a photo of a {obj} {ing}", "the {obj} {ev}", "there is a {obj} and it {ev}",
                   "in this photo a {obj} is {ing}", "a video frame of a {obj} {ing}"]
VIDEO_TEMPLATES = ["in this video the {obj} {ev}", "a {obj} is {ing}", "it is a {obj} and it {ev}",
                   "there is a {obj} {ing}"]
STILL_TAILS = [" beside a {obj}", " and a {obj}"]
VIDEO_TAILS = [" and there is a {obj}", " with a {obj} beside it"]
STATIC_TEMPLATES = ["a {obj}", "a photo of a {obj}", "it is a {obj}", "a {obj} with a {other}"]


def _obj(color: str | None, shape: str, size: str | None = None) -> str:
    """``"small red circle"``: the words that are known, in that order."""
    return " ".join(w for w in (size, color, shape) if w)


def event_phrases(scene: dict) -> tuple[str, str, str]:
    """``(object, finite phrase, -ing phrase)`` naming the scene's actor and event."""
    ev, actor = scene["event"], scene["actor"]
    if ev["kind"] == "color":
        change = f"from {ev['start']} to {ev['end']}"
        return _obj(None, actor["shape"], ev["size"]), f"turns {change}", f"turning {change}"
    finite, ing = EVENT_WORDS[ev["direction"]]
    return _obj(actor["color"], actor["shape"], ev.get("size")), finite, ing


def caption(scene: dict, template: str, tail: str | None) -> str:
    """Fill ``template`` (and a distractor ``tail``) for the scene: the same template on the
    reversed scene gives the caption's direction-reversed twin."""
    obj, finite, ing = event_phrases(scene)
    text = template.format(obj=obj, ev=finite, ing=ing)
    d = scene.get("distractor")
    if tail and d:
        text += tail.format(obj=_obj(d["color"], d["shape"], d["size"]))
    return text


def _choose_wording(rng: np.random.Generator, templates: list[str], tails: list[str]) -> tuple[str, str | None]:
    return str(rng.choice(templates)), (str(rng.choice(tails)) if rng.random() < 0.5 else None)


# --------------------------------------------------------------------------- pretraining stills


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
        rng = _rng(seed, 7, i)
        scene = random_scene(rng, spec, video=False)
        twin = reverse_scene(scene)
        template, tail = _choose_wording(rng, STILL_TEMPLATES, STILL_TAILS)
        texts = [caption(scene, template, tail), caption(twin, template, tail)]
        if rng.random() < plain_share:
            t = int(rng.integers(spec.frames))
            event = rng.random() >= 1 - event_share
            # a photo of the moment: blurred like a video frame when captioned by the event (the
            # blur is the same for the event and its reverse), sharp under a static caption
            frame = render_frame(scene, t, spec, blur=spec.blur_steps if event else 0)  # == twin's frame T-1-t
            if not event:
                texts = [_static_caption(scene, rng, actor_state(scene, t, spec.frames))] * 2
            images += [frame, frame]
            captions += texts
            groups += [f"{PLAIN_EVENT if event else 'plain'}{i}"] * 2
            continue
        images += [render_still(scene, spec), render_still(twin, spec)]
        captions += texts
        groups += [f"cue{i}a", f"cue{i}b"]
    return np.stack(images), captions, groups


def _static_caption(scene: dict, rng: np.random.Generator, state: dict) -> str:
    """What a plain photo of the scene at ``state`` shows (both twins show the same objects)."""
    actor, d = scene["actor"], scene.get("distractor")
    color = state["color"] or scene["event"]["end"]
    objs = [_obj(color, actor["shape"], scene["event"].get("size"))] if state["visible"] else []
    objs += [_obj(d["color"], d["shape"], d["size"])] if d else []
    if not objs:
        return "a photo"
    template = str(rng.choice(STATIC_TEMPLATES if len(objs) == 2 else STATIC_TEMPLATES[:3]))
    return template.format(obj=objs[0], other=objs[-1])


def still_words() -> set[str]:
    """Every word a still caption can contain (for the vocabulary check G1): the templates'
    words, every object, every event phrase."""
    texts = STILL_TEMPLATES + STILL_TAILS + STATIC_TEMPLATES + list(COLORS) + list(SHAPES) + list(SIZE_WORDS)
    texts += [p for pair in EVENT_WORDS.values() for p in pair] + ["turns turning from to"]
    return {w for t in texts for w in re.sub(r"\{\w+\}", " ", t).split()}


# --------------------------------------------------------------------------- the video benchmark


@dataclass(frozen=True)
class SplitPairs:
    """Reverse *pairs* per split (each pair is two clips)."""

    train: int = 300
    val: int = 100
    test: int = 150


def make_split(seed: int, split: str, n_pairs: int, spec: WorldSpec, captions_per_clip: int) -> list[dict]:
    """``2 * n_pairs`` clip records: a clip (``...a``) then its reverse partner (``...b``). Partner
    captions use the same templates on the reversed event, so every caption has its twin."""
    clips = []
    for i in range(n_pairs):
        rng = _rng(seed, SPLIT_CODES[split], i)
        scene = random_scene(rng, spec, video=True)
        wordings = [_choose_wording(rng, VIDEO_TEMPLATES, VIDEO_TAILS) for _ in range(captions_per_clip)]
        pair = f"{split}{i:05d}"
        for half, sc in (("a", scene), ("b", reverse_scene(scene))):
            # (caption, its twin) with duplicates dropped, in order
            texts = dict.fromkeys((caption(sc, t, tail), caption(reverse_scene(sc), t, tail)) for t, tail in wordings)
            clips.append({"id": pair + half, "pair": pair, "partner": pair + ("b" if half == "a" else "a"),
                          "split": split, "scene": sc, "captions": [c for c, _ in texts],
                          "twins": [t for _, t in texts]})
    return clips


def write_video(path: Path, frames: np.ndarray, fps: int, codec: str = "ffv1", pix_fmt: str = "bgr0") -> None:
    """Encode uint8 ``[T, H, W, 3]`` frames. The default, FFV1 in Matroska, is lossless: decoding
    gives back exactly ``frames``."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = pix_fmt
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def world_key(seed: int, sizes: SplitPairs, spec: WorldSpec) -> str:
    blob = json.dumps({"seed": seed, "sizes": asdict(sizes), "spec": asdict(spec), "version": WORLD_VERSION},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


CAPTIONS_PER_CLIP = {"train": 3, "val": 1, "test": 2}


def generate_world(out_dir, seed: int = 0, sizes: SplitPairs | None = None, spec: WorldSpec | None = None,
                   progress: bool = True) -> Path:
    """Write (or reuse) a world under ``out_dir``: ``videos/<id>.mkv``, ``{train,val,test}.csv``
    (generic ``video,caption,group`` format; group = the reverse pair) and ``metadata.json``
    (every clip's scene, partner, captions and their twins). Partners are written as the clip's
    frames reversed, so the pair is exact by construction."""
    from tqdm.auto import tqdm

    sizes, spec = sizes or SplitPairs(), spec or WorldSpec()
    out = Path(out_dir)
    key = world_key(seed, sizes, spec)
    meta_path = out / "metadata.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("key") == key:
        return out
    (out / "videos").mkdir(parents=True, exist_ok=True)
    all_clips = []
    for split in ("train", "val", "test"):
        clips = make_split(seed, split, getattr(sizes, split), spec, CAPTIONS_PER_CLIP[split])
        for a in tqdm(clips[::2], desc=f"world {split}", disable=not progress, leave=False):
            frames = render_clip(a["scene"], spec)
            write_video(out / "videos" / f"{a['id']}.mkv", frames, spec.fps)
            write_video(out / "videos" / f"{a['partner']}.mkv", frames[::-1], spec.fps)
        with open(out / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["video", "caption", "group"])
            writer.writerows((f"videos/{c['id']}.mkv", text, c["pair"]) for c in clips for text in c["captions"])
        all_clips += clips
    meta = {"key": key, "seed": seed, "sizes": asdict(sizes), "spec": asdict(spec), "clips": all_clips}
    meta_path.write_text(json.dumps(meta, indent=1))  # written last: marks a complete world
    return out


def load_metadata(world_dir) -> dict:
    """``metadata.json`` of a generated world, with ``by_id`` (clip id -> clip)."""
    path = Path(world_dir) / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no demo world here (vop.demo.world.generate_world makes one)")
    meta = json.loads(path.read_text())
    meta["by_id"] = {c["id"]: c for c in meta["clips"]}
    return meta
