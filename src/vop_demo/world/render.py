"""Drawing: backgrounds, shapes with soft edges, the still cues of pretraining photos, and video
frames exposed over part of a frame interval (motion blur that is the same either way in time)."""

from __future__ import annotations

import numpy as np

from vop_demo.world.scene import actor_state
from vop_demo.world.spec import COLORS, WorldSpec


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

