"""The synthetic temporal benchmark: coloured shapes on textured backgrounds, with events.

Why it exists: nothing can be downloaded where vop is tested, yet VoP's claims are about
*temporal* understanding on top of a frame-level image-text model. This module builds a small
world where those claims can be checked by anyone on a CPU in minutes.

* A **scene** is plain JSON data: a background, an *actor* shape with one event, and at most
  one static distractor. :func:`render_clip` turns a scene into uint8 frames ``[T, H, W, 3]``.
* Events: ``move`` (left/right/up/down), ``size`` (grow/shrink), ``visibility``
  (appear/disappear), ``color`` (X -> Y). Every event has a **reverse** (:func:`reverse_scene`)
  whose frames are exactly the original frames in reverse order, so each clip comes with a
  partner that only temporal order separates: mean pooling of per-frame embeddings cannot tell
  the two apart, temporal prompts can.
* Captions come from several templates and synonyms; each is tagged ``static`` (true of every
  frame set, e.g. "a red circle and a blue square") or ``temporal`` (names the event).
* :func:`generate_dataset` writes real H.264 videos, per-split annotation files in the generic
  ``video,caption`` format (csv and jsonl) and ``metadata.json`` with every clip's scene, event,
  partner and tagged captions. Everything is a pure function of the seed.
* :func:`static_frames` draws single frames with static captions that also name size and
  position (no motion) for pretraining the bundled tiny CLIP (``vop.pretrain``).

Reverse-pair exactness: states are interpolated with integer frame weights
(``(a * (T-1-t) + b * t) / (T-1)``) and visibility / colour switch at ``T // 2`` with ``T``
even, so ``render_clip(reverse_scene(s)) == render_clip(s)[::-1]`` bit for bit.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass
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
BACKGROUNDS = ("stripes", "checker", "noise", "gradient")
EVENTS = ("move", "size", "visibility", "color")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
REVERSE_DIRECTION = {"left": "right", "right": "left", "up": "down", "down": "up",
                     "grow": "shrink", "shrink": "grow", "appear": "disappear", "disappear": "appear"}
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
# Caption kinds written to each split's annotation file. A static caption is equally true of a
# clip and of its reverse partner, so as a query with one correct video it would count a right
# answer (the partner) as wrong; val/test therefore list temporal captions only. The static ones
# stay in metadata.json, where the demo scores them with both clips of the pair as correct.
ANNOTATED_KINDS = {"train": ("temporal", "static"), "val": ("temporal",), "test": ("temporal",)}


@dataclass(frozen=True)
class SyntheticSpec:
    """The world's geometry. ``frames`` must be even (reverse pairs are exact only then)."""

    frames: int = 24
    size: int = 64
    fps: int = 8
    radius: tuple[int, int] = (7, 11)  # actor/distractor radius for events that keep the size
    size_event_radius: tuple[float, float] = (5.0, 13.0)  # grow: small -> large
    move_distance: tuple[int, int] = (24, 32)
    distractor_prob: float = 0.6
    crf: int = 16  # x264 quality: low values keep the reversed clip's frames near-identical

    def __post_init__(self):
        if self.frames % 2 or self.frames < 2:
            raise ValueError(f"SyntheticSpec.frames must be even and >= 2, got {self.frames}")
        if self.size % 2:
            raise ValueError(f"SyntheticSpec.size must be even (yuv420p video), got {self.size}")
        need = 2 * (self.radius[1] + 2) + self.move_distance[1]
        if self.size < max(need, 2 * (self.size_event_radius[1] + 2)):
            raise ValueError(f"SyntheticSpec.size {self.size} is too small for its shapes and moves "
                             f"(needs >= {need} px; shrink radius/move_distance too)")


@dataclass
class SplitSizes:
    """Number of reverse *pairs* per split (each pair is two clips)."""

    train: int = 300
    val: int = 30
    test: int = 100

    def items(self):
        return [("train", self.train), ("val", self.val), ("test", self.test)]


# --------------------------------------------------------------------------- scenes


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator per (seed, stream...): clips never share random draws."""
    return np.random.default_rng([seed, *stream])


def _background(rng: np.random.Generator) -> dict:
    base = rng.integers(70, 150, size=3)
    tint = rng.integers(-20, 21, size=3)
    return {
        "kind": str(rng.choice(BACKGROUNDS)),
        "color_a": [int(v) for v in np.clip(base + tint, 0, 255)],
        "color_b": [int(v) for v in np.clip(base - tint + rng.integers(-30, 31), 0, 255)],
        "period": int(rng.integers(6, 16)),
        "angle": float(rng.uniform(0, np.pi)),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def _positions_for(event: dict, spec: SyntheticSpec, rng: np.random.Generator) -> dict:
    """Fill the geometric part of an event (start/end) so the actor stays inside the frame."""
    s = spec.size
    if event["kind"] == "move":
        r = int(rng.integers(spec.radius[0], spec.radius[1] + 1))
        dist = int(rng.integers(spec.move_distance[0], spec.move_distance[1] + 1))
        dx, dy = DIRECTIONS[event["direction"]]
        lo, hi = r + 2, s - r - 2
        # choose start so that start + dist * direction stays inside [lo, hi]
        x0 = rng.uniform(lo + max(0, -dx) * dist, hi - max(0, dx) * dist)
        y0 = rng.uniform(lo + max(0, -dy) * dist, hi - max(0, dy) * dist)
        event.update(radius=r, start=[float(x0), float(y0)], end=[float(x0 + dx * dist), float(y0 + dy * dist)])
    else:
        r_max = spec.size_event_radius[1] if event["kind"] == "size" else spec.radius[1]
        lo, hi = r_max + 2, s - r_max - 2
        event["center"] = [float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))]
        if event["kind"] == "size":
            small, large = spec.size_event_radius
            event["start"], event["end"] = (small, large) if event["direction"] == "grow" else (large, small)
        else:
            event["radius"] = int(rng.integers(spec.radius[0], spec.radius[1] + 1))
    return event


def _random_event(rng: np.random.Generator, spec: SyntheticSpec) -> dict:
    kind = str(rng.choice(EVENTS))
    if kind == "move":
        event = {"kind": kind, "direction": str(rng.choice(list(DIRECTIONS)))}
    elif kind == "size":
        event = {"kind": kind, "direction": str(rng.choice(["grow", "shrink"]))}
    elif kind == "visibility":
        event = {"kind": kind, "direction": str(rng.choice(["appear", "disappear"]))}
    else:
        a, b = rng.choice(list(COLORS), size=2, replace=False)
        event = {"kind": kind, "start": str(a), "end": str(b)}
    return _positions_for(event, spec, rng)


def actor_state(scene: dict, t: int, frames: int) -> dict:
    """The actor at frame ``t``: ``x``, ``y``, ``r``, ``color`` name, ``visible``."""
    ev, actor = scene["event"], scene["actor"]
    w0, w1, den = frames - 1 - t, t, frames - 1  # integer weights: the reverse is exact

    def lerp(a, b):
        return (a * w0 + b * w1) / den

    second_half = t >= frames // 2
    state = {"color": actor.get("color"), "visible": True}
    if ev["kind"] == "move":
        state.update(x=lerp(ev["start"][0], ev["end"][0]), y=lerp(ev["start"][1], ev["end"][1]), r=ev["radius"])
    else:
        state.update(x=ev["center"][0], y=ev["center"][1], r=ev.get("radius"))
    if ev["kind"] == "size":
        state["r"] = lerp(ev["start"], ev["end"])
    elif ev["kind"] == "visibility":
        state["visible"] = second_half if ev["direction"] == "appear" else not second_half
    elif ev["kind"] == "color":
        state["color"] = ev["end"] if second_half else ev["start"]
    return state


def _states(scene: dict, frames: int) -> list[dict]:
    return [actor_state(scene, t, frames) for t in range(frames)]


def _place_distractor(scene: dict, spec: SyntheticSpec, rng: np.random.Generator) -> dict | None:
    """A static shape that never overlaps the actor and differs from it in shape or colour."""
    states = _states(scene, spec.frames)
    actor = scene["actor"]
    actor_colors = {s["color"] for s in states}
    for _ in range(50):
        shape, color = str(rng.choice(SHAPES)), str(rng.choice(list(COLORS)))
        if shape == actor["shape"] and color in actor_colors:
            continue  # captions must be able to tell the two objects apart
        r = int(rng.integers(spec.radius[0], spec.radius[1] + 1))
        x, y = rng.uniform(r + 2, spec.size - r - 2, size=2)
        if all(np.hypot(x - s["x"], y - s["y"]) > r + s["r"] + 4 for s in states):
            return {"shape": shape, "color": color, "x": float(x), "y": float(y), "r": r}
    return None


def random_scene(rng: np.random.Generator, spec: SyntheticSpec) -> dict:
    """One clip's scene: background, an actor with an event, and maybe a distractor."""
    event = _random_event(rng, spec)
    actor = {"shape": str(rng.choice(SHAPES))}
    if event["kind"] != "color":
        actor["color"] = str(rng.choice(list(COLORS)))
    scene = {"background": _background(rng), "actor": actor, "event": event, "distractor": None}
    if rng.random() < spec.distractor_prob:
        scene["distractor"] = _place_distractor(scene, spec, rng)
    return scene


def reverse_scene(scene: dict) -> dict:
    """The scene whose clip is this clip's frames in reverse order (left <-> right, X->Y <-> Y->X ...)."""
    rev = json.loads(json.dumps(scene))  # deep copy of plain data
    ev = rev["event"]
    if "direction" in ev:
        ev["direction"] = REVERSE_DIRECTION[ev["direction"]]
    if "start" in ev:
        ev["start"], ev["end"] = ev["end"], ev["start"]
    return rev


# --------------------------------------------------------------------------- rendering


def _render_background(bg: dict, size: int) -> np.ndarray:
    """Textured background ``[H, W, 3]`` float in 0..255."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    a, b = np.array(bg["color_a"], float), np.array(bg["color_b"], float)
    kind, period = bg["kind"], bg["period"]
    if kind == "stripes":
        u = xx * np.cos(bg["angle"]) + yy * np.sin(bg["angle"])
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
    elif kind == "checker":
        mix = ((xx // period + yy // period) % 2).astype(float)
    elif kind == "noise":
        noise_rng = np.random.default_rng(bg["seed"])
        coarse = noise_rng.random((size // 4 + 1, size // 4 + 1))
        mix = np.kron(coarse, np.ones((4, 4)))[:size, :size]  # blocky low-frequency noise
    else:  # gradient
        u = xx * np.cos(bg["angle"]) + yy * np.sin(bg["angle"])
        mix = (u - u.min()) / max(u.max() - u.min(), 1e-6)
    return a * (1 - mix[..., None]) + b * mix[..., None]  # [H, W, 3]


def _shape_alpha(shape: str, x: float, y: float, r: float, size: int) -> np.ndarray:
    """Anti-aliased coverage ``[H, W]`` in 0..1 from a signed distance (pixel centres)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = xx - x, yy - y
    if shape == "circle":
        sdf = np.hypot(dx, dy) - r
    elif shape == "square":
        sdf = np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * r  # same area scale as the circle
    else:  # upward triangle: intersection of three half planes
        edges = [(0.0, 1.0), (np.sqrt(3) / 2, -0.5), (-np.sqrt(3) / 2, -0.5)]
        sdf = np.max([nx * dx + ny * dy for nx, ny in edges], axis=0) - 0.6 * r
    return np.clip(0.5 - sdf, 0.0, 1.0)


def _paint(img: np.ndarray, shape: str, color: str, x: float, y: float, r: float) -> None:
    alpha = _shape_alpha(shape, x, y, r, img.shape[0])[..., None]  # [H, W, 1]
    img *= 1 - alpha
    img += alpha * np.array(COLORS[color], float)


def render_frame(scene: dict, t: int, spec: SyntheticSpec) -> np.ndarray:
    """Frame ``t`` of a scene, uint8 ``[H, W, 3]``."""
    img = _render_background(scene["background"], spec.size)
    d = scene.get("distractor")
    if d:
        _paint(img, d["shape"], d["color"], d["x"], d["y"], d["r"])
    st = actor_state(scene, t, spec.frames)
    if st["visible"]:
        _paint(img, scene["actor"]["shape"], st["color"], st["x"], st["y"], st["r"])
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_clip(scene: dict, spec: SyntheticSpec) -> np.ndarray:
    """All frames of a scene, uint8 ``[T, H, W, 3]``."""
    return np.stack([render_frame(scene, t, spec) for t in range(spec.frames)])


# --------------------------------------------------------------------------- captions

_MOVE_VERBS = {
    "left": ["moves left", "moves to the left", "slides left", "travels from right to left", "goes left"],
    "right": ["moves right", "moves to the right", "slides right", "travels from left to right", "goes right"],
    "up": ["moves up", "moves upwards", "slides up", "rises", "travels from bottom to top"],
    "down": ["moves down", "moves downwards", "slides down", "falls", "travels from top to bottom"],
}
_SIZE_VERBS = {
    "grow": ["grows", "gets bigger", "becomes larger", "expands", "grows from small to large"],
    "shrink": ["shrinks", "gets smaller", "becomes smaller", "contracts", "shrinks from large to small"],
}
_VIS_VERBS = {
    "appear": ["appears", "shows up", "pops into view", "comes into view"],
    "disappear": ["disappears", "vanishes", "goes out of view", "disappears from view"],
}
_COLOR_TEMPLATES = [
    "the {shape} turns from {a} to {b}",
    "the {shape} changes colour from {a} to {b}",
    "a {a} {shape} turns {b}",
    "a {a} {shape} becomes {b}",
    "the {shape} switches from {a} to {b}",
]
_STATIC_TEMPLATES_ONE = ["a {o1}", "there is a {o1}", "a {o1} on a textured background"]
_STATIC_TEMPLATES_TWO = ["a {o1} and a {o2}", "a {o1} next to a {o2}", "there is a {o1} and a {o2}"]
_DISTRACTOR_TAILS = [" while a {o} stays still", " next to a {o}", " beside a {o}"]


def _obj(color: str | None, shape: str) -> str:
    return f"{color} {shape}" if color else shape


def _static_captions(scene: dict, rng: np.random.Generator, n: int) -> list[str]:
    """Captions true of every frame set of the clip and of its reverse partner."""
    actor, d = scene["actor"], scene.get("distractor")
    objs = [_obj(actor.get("color"), actor["shape"])] + ([_obj(d["color"], d["shape"])] if d else [])
    out = []
    for _ in range(n):
        order = list(rng.permutation(len(objs)))
        names = [objs[i] for i in order]
        templates = _STATIC_TEMPLATES_TWO if len(names) == 2 else _STATIC_TEMPLATES_ONE
        out.append(str(rng.choice(templates)).format(o1=names[0], o2=names[-1]))
    return out


def _temporal_caption(scene: dict, rng: np.random.Generator) -> str:
    ev, actor = scene["event"], scene["actor"]
    if ev["kind"] == "color":
        text = str(rng.choice(_COLOR_TEMPLATES)).format(shape=actor["shape"], a=ev["start"], b=ev["end"])
    else:
        verbs = {"move": _MOVE_VERBS, "size": _SIZE_VERBS, "visibility": _VIS_VERBS}[ev["kind"]]
        article = str(rng.choice(["a", "the"]))
        text = f"{article} {_obj(actor['color'], actor['shape'])} {rng.choice(verbs[ev['direction']])}"
    d = scene.get("distractor")
    if d and rng.random() < 0.4:
        text += str(rng.choice(_DISTRACTOR_TAILS)).format(o=_obj(d["color"], d["shape"]))
    return text


def clip_captions(scene: dict, rng: np.random.Generator, n_temporal: int = 3, n_static: int = 1) -> list[dict]:
    """Tagged captions ``[{"text", "kind": "temporal"|"static"}]``, temporal first, no duplicates."""
    seen, out = set(), []
    for kind, make, n in (("temporal", lambda: _temporal_caption(scene, rng), n_temporal),
                          ("static", lambda: _static_captions(scene, rng, 1)[0], n_static)):
        for _ in range(n * 10):  # a few redraws to avoid duplicate captions
            if sum(c["kind"] == kind for c in out) == n:
                break
            text = make()
            if text not in seen:
                seen.add(text)
                out.append({"text": text, "kind": kind})
    return out


def event_phrase(event: dict) -> str:
    """Short human label of an event, e.g. ``move left`` or ``color red->blue``."""
    if event["kind"] == "color":
        return f"color {event['start']}->{event['end']}"
    return f"{event['kind']} {event['direction']}"


# --------------------------------------------------------------------------- dataset


def make_pairs(seed: int, split: str, n_pairs: int, spec: SyntheticSpec,
               n_temporal: int = 3, n_static: int = 1) -> list[dict]:
    """``2 * n_pairs`` clip records of one split: each scene followed by its reverse partner."""
    clips = []
    for i in range(n_pairs):
        rng = _rng(seed, SPLIT_CODES[split], i)
        scene = random_scene(rng, spec)
        for half, sc in (("a", scene), ("b", reverse_scene(scene))):
            pair_id = f"{split}{i:05d}"
            clips.append({
                "id": f"{pair_id}{half}",
                "pair": pair_id,
                "partner": f"{pair_id}{'b' if half == 'a' else 'a'}",
                "split": split,
                "scene": sc,
                "event": event_phrase(sc["event"]),
                "captions": clip_captions(sc, rng, n_temporal, n_static),
            })
    return clips


def _write_video(path: Path, frames: np.ndarray, fps: int, crf: int) -> None:
    import av  # lazy: only writing needs PyAV

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        # one encoder thread: threaded x264 adds run-to-run variation. Even so, bytes can differ
        # in rare rounding (about 0.02 grey levels on average); scenes and rendered frames are exact.
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        stream.codec_context.thread_count = 1
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_annotations(out: Path, split: str, clips: list[dict], kinds: tuple[str, ...]) -> None:
    """``<split>.csv`` and ``<split>.jsonl``: one row per (video, caption of ``kinds``), generic format,
    with the reverse pair's id as ``group`` (used only by training with ``data.group_batches``)."""
    rows = [(f"videos/{c['id']}.mp4", cap["text"], c["pair"])
            for c in clips for cap in c["captions"] if cap["kind"] in kinds]
    with open(out / f"{split}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "caption", "group"])
        writer.writerows(rows)
    with open(out / f"{split}.jsonl", "w") as f:
        f.writelines(json.dumps({"video": video, "caption": caption, "group": group}) + "\n"
                     for video, caption, group in rows)


def dataset_key(seed: int, sizes: SplitSizes, spec: SyntheticSpec) -> str:
    """Identity of a generated dataset: reuse a folder only if it was made with the same values."""
    blob = json.dumps({"seed": seed, "sizes": asdict(sizes), "spec": asdict(spec), "version": 3}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def generate_dataset(out_dir, seed: int = 0, sizes: SplitSizes | None = None,
                     spec: SyntheticSpec | None = None, progress: bool = True) -> Path:
    """Write (or reuse) the dataset under ``out_dir``; returns the folder.

    Layout: ``videos/<id>.mp4``, ``{train,val,test}.{csv,jsonl}`` (``video,caption,group``; video paths
    relative to the folder; see ``ANNOTATED_KINDS`` for which captions each split lists) and ``metadata.json`` (seed, spec, every clip with scene, event,
    partner and tagged captions). A folder made with the same seed/sizes/spec is reused as is.
    """
    from tqdm.auto import tqdm

    sizes, spec = sizes or SplitSizes(), spec or SyntheticSpec()
    out = Path(out_dir)
    key = dataset_key(seed, sizes, spec)
    meta_path = out / "metadata.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("key") == key:
        return out
    (out / "videos").mkdir(parents=True, exist_ok=True)
    all_clips = []
    for split, n in sizes.items():
        clips = make_pairs(seed, split, n, spec)
        for c in tqdm(clips, desc=f"synthetic {split}", disable=not progress, leave=False):
            _write_video(out / "videos" / f"{c['id']}.mp4", render_clip(c["scene"], spec), spec.fps, spec.crf)
        _write_annotations(out, split, clips, ANNOTATED_KINDS[split])
        all_clips += clips
    meta = {"key": key, "seed": seed, "sizes": asdict(sizes), "spec": asdict(spec), "clips": all_clips}
    meta_path.write_text(json.dumps(meta, indent=1))  # written last: its presence marks a complete dataset
    return out


def load_metadata(dataset_dir) -> dict:
    """``metadata.json`` of a generated dataset, with ``by_id`` (clip id -> clip) added."""
    path = Path(dataset_dir) / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no synthetic dataset here (run vop.data.synthetic.generate_dataset)")
    meta = json.loads(path.read_text())
    meta["by_id"] = {c["id"]: c for c in meta["clips"]}
    return meta


# --------------------------------------------------------------------------- pretraining frames

_POS_WORDS = {
    (0, 0): "in the top left", (1, 0): "at the top", (2, 0): "in the top right",
    (0, 1): "on the left", (1, 1): "in the centre", (2, 1): "on the right",
    (0, 2): "in the bottom left", (1, 2): "at the bottom", (2, 2): "in the bottom right",
}


def _describe_object(obj: dict, size: int, rng: np.random.Generator) -> str:
    cell = (min(int(obj["x"] * 3 // size), 2), min(int(obj["y"] * 3 // size), 2))
    size_word = "small " if obj["r"] <= 7 else "large " if obj["r"] >= 11 else ""
    words = (size_word if rng.random() < 0.7 else "") + f"{obj['color']} {obj['shape']}"
    if rng.random() < 0.7:
        words += " " + _POS_WORDS[cell]
    return words


def static_frames(n: int, seed: int, spec: SyntheticSpec | None = None) -> tuple[np.ndarray, list[str]]:
    """``n`` single frames ``[n, H, W, 3]`` uint8 with static captions (shape, colour, size, position).

    Drawn from the same world as the videos but as independent still scenes: no motion words
    ever appear, so a model pretrained on them knows images, not events.
    """
    spec = spec or SyntheticSpec()
    images, captions = [], []
    for i in range(n):
        rng = _rng(seed, 7, i)
        objs = []
        for _ in range(int(rng.integers(1, 3))):
            for _try in range(50):
                r = float(rng.uniform(spec.size_event_radius[0], spec.size_event_radius[1]))
                x, y = rng.uniform(r + 2, spec.size - r - 2, size=2)
                o = {"shape": str(rng.choice(SHAPES)), "color": str(rng.choice(list(COLORS))),
                     "x": float(x), "y": float(y), "r": r}
                if all(np.hypot(x - p["x"], y - p["y"]) > r + p["r"] + 3 for p in objs) and not any(
                        (p["shape"], p["color"]) == (o["shape"], o["color"]) for p in objs):
                    objs.append(o)
                    break
        img = _render_background(_background(rng), spec.size)
        for o in objs:
            _paint(img, o["shape"], o["color"], o["x"], o["y"], o["r"])
        images.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
        names = [_describe_object(o, spec.size, rng) for o in rng.permutation(objs)]
        prefix = str(rng.choice(["", "a photo of ", "an image of "]))
        captions.append(prefix + "a " + " and a ".join(names))
    return np.stack(images), captions


__all__ = [
    "COLORS",
    "SHAPES",
    "SplitSizes",
    "SyntheticSpec",
    "actor_state",
    "clip_captions",
    "event_phrase",
    "generate_dataset",
    "load_metadata",
    "make_pairs",
    "random_scene",
    "render_clip",
    "render_frame",
    "reverse_scene",
    "static_frames",
]
