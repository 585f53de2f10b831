"""Captions: two wordings of the same events, one for stills (pretraining) and one for videos (the
benchmark). Every word a video template uses also occurs in still captions: the frozen backbone
knows the words, prompts learn the new phrasing (tested: ``caption_vocabulary``)."""

from __future__ import annotations

import re

import numpy as np

from vop_demo.world.spec import COLORS, SHAPES, SIZE_WORDS

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


def choose_wording(rng: np.random.Generator, templates: list[str], tails: list[str]) -> tuple[str, str | None]:
    return str(rng.choice(templates)), (str(rng.choice(tails)) if rng.random() < 0.5 else None)



def static_caption(scene: dict, rng: np.random.Generator, state: dict) -> str:
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

