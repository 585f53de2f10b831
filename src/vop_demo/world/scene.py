"""Scenes as plain data: a background, an actor with its event (and its geometry), maybe a still
distractor; an event and a scene played backwards; where the actor is at any (sub-)frame."""

from __future__ import annotations

import json

import numpy as np

from vop_demo.world.spec import (
    COLORS,
    DIRECTIONS,
    EVENT_KINDS,
    REVERSE,
    SHAPES,
    SIZE_WORDS,
    STILL_BACKGROUNDS,
    VIDEO_BACKGROUNDS,
    WorldSpec,
)


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

